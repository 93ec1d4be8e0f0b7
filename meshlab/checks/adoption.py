"""The check of lesson 07: which stage, and which adoption path, fits which organisation.

The seed's decision thread: 全盘采纳 (greenfield: a new system, meshed from the start) or 渐进式采纳
(brownfield: an old system, moved in bit by bit, non-core systems first). Each wrong choice is answered
with the learner's own measurements from the lesson's table where one makes the point.
"""

from __future__ import annotations

from typing import Any, Mapping

from . import quiz
from .base import CheckResult, exercise

LESSON = "07-compare"


def _rows(table: Any) -> dict[int, Any]:
    """stage -> row, from the lesson's list of StageRow (or dicts); {} when there is none."""
    out = {}
    for row in table or []:
        stage = row.get("stage") if isinstance(row, Mapping) else getattr(row, "stage", None)
        if isinstance(stage, int):
            out[stage] = row
    return out


def _get(row: Any, field: str, default: Any = "?") -> Any:
    value = row.get(field) if isinstance(row, Mapping) else getattr(row, field, None)
    return default if value is None else value


def measured(table: Any) -> dict[str, str]:
    """Sentences from the measured table, to make the quiz's points with the learner's own numbers."""
    rows = _rows(table)

    def of(stage: int, field: str, fmt: str = "{}") -> str:
        return fmt.format(_get(rows[stage], field)) if stage in rows else "?"

    def change(stage: int) -> str:
        if stage not in rows or _get(rows[stage], "change_objects", None) is None:
            return "?"
        return f"{_get(rows[stage], 'change_objects')} object(s), {_get(rows[stage], 'change_seconds', 0.0):.1f} s"

    return {
        "failover6": failover(rows),
        "proxies3": of(3, "proxies"), "proxies4": of(4, "proxies"), "proxies5": of(5, "proxies"),
        "memory3": of(3, "proxy_memory_mb", "{:.0f} MiB"), "memory4": of(4, "proxy_memory_mb", "{:.0f} MiB"),
        "change2": change(2), "change4": change(4), "change5": change(5),
        "lost2": of(2, "out_of_reach"), "pods": of(2, "app_pods"),
    }


def failover(rows: dict[int, Any]) -> str:
    """What losing cluster-1's copy of a service cost in the measured stage-6 run, or '' when it was not measured."""
    cross = next((_get(r, "cross", None) for r in rows.values() if _get(r, "cross", None) is not None), None)
    if cross is None or not _get(cross, "failover_requests", 0):
        return ""
    seconds = _get(cross, "failover_s", None)
    switch = f"a {seconds:.1f} s switch" if isinstance(seconds, (int, float)) else "no switch at all"
    return (f"losing cluster-1's copy of a service cost {_get(cross, 'failover_failed', 0)} of "
            f"{_get(cross, 'failover_requests')} requests and {switch} in your run")


def quiz_for(table: Any) -> dict:
    """The quiz, its explanations filled with the measured table (question -> (right letter, {letter: why}))."""
    m = measured(table)
    return {
        "q1": ("b", {"a": "the edge only sees requests entering the cluster: the monolith's calls to the new services "
                          "pass no proxy",
                     "c": f"a VM has no pods to put sidecars in, and a sidecar per pod is the dear option: stage 4 ran "
                          f"{m['proxies4']} proxies ({m['memory4']}) where stage 3 ran {m['proxies3']} ({m['memory3']})",
                     "d": "one cluster with a monolith beside it: nothing here spans two clusters"}),
        "q2": ("b", {"a": "the monolith runs and serves: rebuilding it to adopt a mesh all at once is the risk the seed "
                          "warns about (没有人会一下子采纳...)"}),
        "q3": ("c", {"a": f"one router layer for fifty services: its failure left {m['lost2']} of {m['pods']} pods out of "
                          "reach in your run, and every team's routes would share its one ConfigMap "
                          "(当服务多了管理起来就很麻烦)",
                     "b": f"static sidecar configs, kept by hand: one change took {m['change4']} in your run, against "
                          f"{m['change5']} with a control plane, and fifty services multiply that",
                     "d": "policy per node, not per service: one team cannot have its own retries or canaries "
                          "(粒度还是不够细)"}),
        "q4": ("a", {"b": "nothing runs yet: new services can be born in the mesh (全盘采纳, a greenfield project)"}),
        "q5": ("b", {"a": "one data centre's cluster is one failure domain: losing it loses the mesh"
                          + (f"; with two clusters, {m['failover6']}, and the service stayed up" if m["failover6"] else ""),
                     "c": "a router layer per data centre knows nothing of the other one, and is a single point of "
                          "failure inside each",
                     "d": "an edge proxy routes what enters a cluster; it cannot fail services over between clusters"
                          + (f" (with stage 6, {m['failover6']})" if m["failover6"] else "")}),
        "q6": ("b", {"a": "a bank's core systems cannot all move at once: migrate one service at a time, non-core "
                          "systems first (从非核心系统开始改造), with zero failed requests (lab 05)"}),
    }


def judge(answers: Any, table: Any = None) -> CheckResult:
    """The quiz, judged by the shared quiz judge, its explanations drawn from the measured table."""
    return quiz.judge(answers, quiz_for(table))


@exercise(LESSON, "which-stage-for-whom", hints=[
    "Start from each organisation's constraint: where its code runs (pods or VMs), how many services change how "
    "often, and what it must survive (a node, a cluster, a data centre).",
    "Read the table you measured: proxies and memory per stage, objects to edit for one change and how long it "
    "took, and the pods one failure cut off.",
    "The seed: a proxy per node suits big monoliths on VMs (更适合基于物理机/虚拟机的大型单体应用); new systems adopt "
    "whole (全盘采纳), old ones bit by bit from the non-core systems (渐进式采纳, 从非核心系统开始改造); several "
    "clusters need multi-cluster (多集群部署和扩展).",
])
def which_stage_for_whom(answers, table=None) -> CheckResult:
    """A multiple-choice quiz, checked with feedback on each wrong choice, backed by the measured table."""
    return judge(answers, table)
