"""Checks of lab 03 (proxy per node): predict which pods a dead node proxy cuts off (a call passes the
caller's node proxy and the callee's, so all of that node's pods), count proxies against pods as the shop
grows, and a quiz on the seed's trade-offs (Linkerd 1, the JVM, granularity).

The blast-radius check judges a `BlastRadius` the learner measured with `lab.blast_radius()`; the
counting check reads the running lab. Both are split into a probe and a pure `judge_*` function.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from .base import CheckResult, exercise
from .lab02 import judge_quiz

LAB = "03-proxy-per-node-lab"
SCALED_RATINGS = 4  # exercise 2 scales ratings from 2 to this many replicas


# ---- who lost connectivity: shared with lab 04 -------------------------------------------------------

def pod_nodes(*results) -> dict[str, str]:
    """pod -> node of every app pod seen in the traces of some traffic results."""
    return {hop.get("pod") or hop.get("name"): hop.get("node", "?") for result in results
            for path in getattr(result, "paths", None) or [] for hop in path["hops"] if hop.get("kind") == "app"}


def cut_off(radius) -> set[str]:
    """App pods that lost connectivity in a blast radius, exactly as its summary line reports them
    (`radius.lost_pods`): every call they made failed after the kill, or callers that still worked kept
    calling their service and never reached them."""
    return set(radius.lost_pods)


def cannot_tell(radius) -> set[str]:
    """Pods no request reached after the kill only because all their callers were cut off (`radius.unseen`):
    the measurement says nothing about them, so a prediction may name them or not."""
    return set(getattr(radius, "unseen", ()) or ())


def match_pods(answer: Any, pods: Iterable[str]) -> tuple[set[str], list[str]]:
    """(pod names the answer names, items that name no pod). An item is a pod name or a unique
    prefix such as 'reviews-v2'; a PodInfo works too."""
    pods = sorted(set(pods))
    if answer is None or isinstance(answer, (str, bytes)) or not isinstance(answer, Iterable):
        answer = [answer] if isinstance(answer, str) else []
    named, unknown = set(), []
    for item in answer:
        text = str(getattr(item, "name", item) or "").strip()
        hits = [p for p in pods if p == text] or [p for p in pods if text and p.startswith(text.rstrip("-") + "-")]
        if len(hits) == 1:
            named.add(hits[0])
        elif len(hits) > 1:
            named.update(hits)  # 'ratings-v1' names every ratings pod: take it at its word
        else:
            unknown.append(text or repr(item))
    return named, unknown


def _pod_list(names: Iterable[str], where: Mapping[str, str]) -> str:
    return ", ".join(f"{n} ({where.get(n, '?')})" for n in sorted(names)) or "none"


def judge_lost(answer: Any, radius) -> CheckResult:
    """Compare the learner's set of cut-off pods with what the blast radius measured."""
    expected = "the set of app pods that lost connectivity, as the measured blast radius shows"
    if radius is None or not hasattr(radius, "lost_pods"):
        return CheckResult(False, expected, "no blast radius measured yet: run the cell with lab.blast_radius(...)")
    pods = pod_nodes(radius.before, radius.after)
    if isinstance(answer, Mapping) or answer is None or (not isinstance(answer, str) and not answer):
        return CheckResult(False, expected, "no prediction yet: put pod names in the set `lost`")
    truth = cut_off(radius) & set(pods)
    either = cannot_tell(radius) & set(pods)
    named, unknown = match_pods(answer, list(pods) + list(radius.killed_pods))
    proxies = sorted(n for n in named if n not in pods)
    named -= set(proxies)
    table = f"\n{radius}"
    if unknown:
        return CheckResult(False, expected, f"these name no pod of the lab: {', '.join(unknown)} "
                           "(see lab.pods() for names)" + table)
    if proxies:
        return CheckResult(False, expected, f"{', '.join(proxies)} is the proxy that was killed: list the app "
                           "pods it cut off" + table)
    note = (f"\n(this run cannot tell about {_pod_list(either, pods)}: only their callers were cut off, "
            "so naming them or not is fine)" if either else "")
    if truth <= named <= truth | either:
        return CheckResult(True, expected, f"you: {_pod_list(named, pods)}\nmeasured: {_pod_list(truth, pods)}"
                           f"\n{radius.verdict}{note}")
    extra, missing = sorted(named - truth - either), sorted(truth - named)
    lines = [f"you: {_pod_list(named, pods)}", f"measured: {_pod_list(truth, pods)}"]
    if extra:
        lines.append(f"not cut off: {_pod_list(extra, pods)} (still reached, and its calls, if any, succeeded)")
    if missing:
        lines.append(f"also cut off: {_pod_list(missing, pods)}")
    return CheckResult(False, expected, "\n".join(lines) + note + table)


@exercise(LAB, "node-proxy-blast", hints=[
    "A call leaves through the caller's node proxy (outgoing) and enters through the callee's node proxy "
    "(incoming). Which calls need NODE's proxy?",
    "Every call a pod on NODE makes leaves through NODE's proxy, and every call to a pod on NODE enters "
    "through it: the seed says 该节点上的所有服务就都会无法访问 (every service on that node becomes unreachable).",
    "lost = every app pod on NODE: {p.name for p in lab.pods() if p.node == NODE and p.labels.get('version')}; "
    "then compare with the radius's summary line `lost connectivity: pods ...`.",
])
def node_proxy_blast(radius, lost) -> CheckResult:
    """The learner's prediction against the blast radius measured in the notebook."""
    if radius is not None and getattr(radius, "scope", "node") != "node":
        return CheckResult(False, "a blast radius of one node's proxy (kill=dict(proxy='node', node=NODE))",
                           f"radius killed {', '.join(radius.killed)} (scope {radius.scope})")
    return judge_lost(lost, radius)


# ---- exercise 2: proxies against pods ---------------------------------------------------------------------

COUNT_FIELDS = {
    "app_pods": "app pods running now (pods with a `version` label)",
    "node_proxies": "node proxies running now",
    "sidecars_needed": "proxies stage 4 would run for the same pods (one sidecar per app pod)",
}


def truth_counts(pods, proxies) -> dict[str, int]:
    """What the running lab really has."""
    apps = [p for p in pods if p.labels.get("version")]
    return {"app_pods": len(apps), "node_proxies": sum(1 for p in proxies if p.role == "node"),
            "sidecars_needed": len(apps), "nodes": len({p.node for p in pods}),
            "ratings": sum(1 for p in apps if p.service == "ratings" and p.ready)}


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        return None
    return int(value)


def judge_counts(answers: Any, truth: Mapping[str, int]) -> CheckResult:
    """Pass when ratings runs SCALED_RATINGS ready pods and the counts match the lab. A wrong count is
    named with what to count, never with the lab's figure."""
    expected = (f"ratings scaled to {SCALED_RATINGS} ready pods, and your counts equal the lab's: "
                + ", ".join(COUNT_FIELDS))
    if not isinstance(answers, Mapping):
        return CheckResult(False, expected, f"answers is a {type(answers).__name__}, not a dict")
    if truth["ratings"] != SCALED_RATINGS:
        return CheckResult(False, expected, f"ratings runs {truth['ratings']} ready pods",
                           hints=[f"Set spec.replicas of the ratings-v1 Deployment to {SCALED_RATINGS} and apply it."])
    if all(answers.get(k) is None for k in COUNT_FIELDS):
        return CheckResult(False, expected, "nothing filled in yet")
    for key, meaning in COUNT_FIELDS.items():
        got = answers.get(key)
        if got is None:
            return CheckResult(False, f"{key}: {meaning}", f"{key} = None  (not filled in yet)")
        if _int(got) is None:
            return CheckResult(False, f"{key}: {meaning}", f"{key} = {got!r}: give a whole number")
        if _int(got) != truth[key]:
            side = "more" if _int(got) > truth[key] else "fewer"
            return CheckResult(False, f"{key}: {meaning}", f"{key} = {got!r}: {side} than the lab runs")
    return CheckResult(True, expected, f"{truth['app_pods']} app pods on {truth['nodes']} nodes: "
                       f"{truth['node_proxies']} node proxies, where stage 4 would run {truth['sidecars_needed']} "
                       f"sidecars. Scaling ratings added pods, not proxies.")


@exercise(LAB, "count-proxies", hints=[
    "First scale: set `replicas` of the ratings-v1 Deployment and lab.apply() it; then count with lab.pods() "
    "and lab.proxies().",
    "App pods carry a `version` label (p.labels.get('version')); node proxies have p.role == 'node'.",
    "app_pods = len([p for p in lab.pods() if p.labels.get('version')]); node_proxies = len([p for p in "
    "lab.proxies() if p.role == 'node']); a sidecar mesh runs one proxy per app pod.",
])
def count_proxies(lab, answers) -> CheckResult:
    """The learner's counts against the running lab's pods and proxies."""
    return judge_counts(answers, truth_counts(lab.pods(), lab.proxies()))


# ---- exercise 3: a quiz on the seed's trade-offs ----------------------------------------------------------

QUIZ = {  # question -> (right letter, {letter: why it is wrong})
    "q1": ("a", {"b": "a JVM runs in a container like anything else; Linkerd 1 could run in a pod",
                 "c": "a DaemonSet pod gets no faster network than any other pod",
                 "d": "per node is coarser, not finer: one proxy serves every pod on the node"}),
    "q2": ("d", {"a": "pods on the other nodes keep calling each other through their own nodes' proxies",
                 "b": "pods on node-2 lose their outgoing calls too: each one leaves through node-2's proxy",
                 "c": "nothing reroutes: the pods' HTTP_PROXY points at their own node's IP, and calls to them "
                      "enter through their node's proxy"}),
    "q3": ("b", {"a": "a node's proxy serves every pod on the node, whichever team owns it",
                 "c": "a hostPort picks the port the proxy listens on, not whom it serves",
                 "d": "one DaemonSet reads one config for all its proxies; a ConfigMap per team would need a "
                      "DaemonSet per team, each on every node"}),
    "q4": ("c", {"a": "intercepting traffic (iptables) is how Istio's sidecars work; here each app is pointed "
                      "at its node's proxy",
                 "b": "the node proxy finds the callee's pods (headless Services); the app only needs its proxy",
                 "d": "the router's name was stage 2"}),
}


@exercise(LAB, "per-node-quiz", hints=[
    "Reread the seed's paragraph on Proxy per Node in lesson 03, and your measurements: memory per proxy, "
    "the blast radius of one node's proxy.",
    "Linkerd 1 was written in Scala on the JVM (基于JVM比较消耗资源: resource-hungry); the seed says per node is "
    "粒度还是不够细 (still not fine-grained) and 对于服务来说不是完全透明的 (not fully transparent).",
    "Ask of each option: which calls pass one node's proxy (those leaving its pods and those entering them), "
    "and how does an app find its proxy (status.hostIP, HTTP_PROXY)?",
])
def per_node_quiz(answers) -> CheckResult:
    """A multiple-choice quiz, checked with feedback on each wrong choice."""
    return judge_quiz(answers, QUIZ)
