"""Blast radius: send traffic, break one part of the lab, send traffic again, restore, and say
which calls stopped working, from which pods and nodes.

Calls are read from the traces (docs/internals.md): in each chain, an app hop followed by
another app hop is a call that reached its callee; an error hop ends a call that failed, and it
is charged to the call that failed first (the deepest one), so a caller whose callee failed
further down still counts as connected. Each call is counted once per chain it appears in,
which is once per request for the shop's shape (no service fans out below the frontend).

Who lost connectivity (`lost_pods`) is read from the same traces, and the summary lines, the
verdict and the labs' checks all use it: a pod is lost when every call it made after the kill
failed, or when callers that still worked kept calling its service and never reached it. A pod
that nobody could call any more, because its callers were cut off, is `unseen`: the run cannot tell.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from .backends.base import MeshlabError
from .tables import text_table
from .traffic import TrafficResult

KILL_KEYS = ("proxy", "node", "pod")


@dataclass
class Row:
    """Calls from one caller pod to one callee service, before and after the kill."""

    caller: str
    pod: str
    node: str
    callee: str
    before_calls: int = 0
    before_failed: int = 0
    after_calls: int = 0
    after_failed: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def chain_calls(hops: list[dict]) -> list[tuple[dict, str, bool]]:
    """(caller app hop, callee service, ok) for every call in one trace chain."""
    calls: list[list] = []
    last_app = None
    for hop in hops:
        kind = hop.get("kind")
        if kind == "app":
            if last_app is not None:
                calls.append([last_app, hop.get("service", "?"), True])
            last_app = hop
        elif kind == "error" and last_app is not None:
            target = hop.get("target") or hop.get("name") or "?"
            if calls and calls[-1][1] == target and last_app.get("service") == target:
                calls[-1][2] = False  # the callee answered, with an error of its own
            else:
                calls.append([last_app, target, False])
    return [tuple(c) for c in calls]


def app_hops(result: TrafficResult) -> dict[str, dict]:
    """pod -> its app hop, for every app pod that answered some part of some request of a traffic result."""
    return {hop.get("pod") or hop.get("name"): hop for path in getattr(result, "paths", None) or []
            for hop in path["hops"] if hop.get("kind") == "app" and (hop.get("pod") or hop.get("name"))}


def tally(result: TrafficResult) -> dict[tuple, list[int]]:
    """(caller, pod, node, callee) -> [calls, failed] over every chain of a traffic result."""
    out: dict[tuple, list[int]] = {}
    for path in result.paths:
        for caller, callee, ok in chain_calls(path["hops"]):
            key = (caller.get("service", "?"), caller.get("pod") or caller.get("name", "?"), caller.get("node", "?"), callee)
            entry = out.setdefault(key, [0, 0])
            entry[0] += path["count"]
            entry[1] += 0 if ok else path["count"]
    return out


def rows_of(before: TrafficResult, after: TrafficResult) -> list[Row]:
    """One row per caller pod and callee service seen in either run."""
    b, a = tally(before), tally(after)
    rows = []
    for key in sorted(set(b) | set(a), key=lambda k: (k[2], k[0], k[1], k[3])):
        rows.append(Row(*key, *b.get(key, [0, 0]), *a.get(key, [0, 0])))
    return rows


@dataclass(repr=False)
class BlastRadius:
    """What one failure broke: a table of calls before/after, who lost connectivity, and a verdict."""

    kill: dict
    killed: list[str]
    scope: str  # node | pod | layer: what kind of part was killed
    killed_pods: dict[str, str]  # pod -> node, of the parts killed
    killed_services: list[str]
    before: TrafficResult
    after: TrafficResult
    rows: list[Row] = field(default_factory=list)

    def __post_init__(self):
        if not self.rows:
            self.rows = rows_of(self.before, self.after)

    # ---- findings ------------------------------------------------------------------------
    @property
    def calls_after(self) -> int:
        return sum(r.after_calls for r in self.rows)

    @property
    def failed_after(self) -> int:
        return sum(r.after_failed for r in self.rows)

    @property
    def failing_callers(self) -> list[str]:
        """Caller pods that made calls after the kill and had every one of them fail."""
        calls: dict[str, list[int]] = {}
        for r in self.rows:
            entry = calls.setdefault(r.pod, [0, 0])
            entry[0] += r.after_calls
            entry[1] += r.after_failed
        return sorted(p for p, (n, failed) in calls.items() if n and failed == n)

    def _pods_seen(self) -> dict[str, tuple[str, str]]:
        """pod -> (service, node) of every app pod in the traces before the kill."""
        return {pod: (hop.get("service", "?"), hop.get("node", "?")) for pod, hop in app_hops(self.before).items()}

    @property
    def unreachable(self) -> list[str]:
        """Pods reached before the kill and not after, though callers that still worked (some call of theirs
        succeeded) kept calling their service: those calls went to other pods, or failed."""
        working = {r.pod for r in self.rows if r.after_calls > r.after_failed}
        called = {r.callee for r in self.rows if r.pod in working and r.after_calls}
        reached = set(app_hops(self.after))
        return sorted(p for p, (service, _) in self._pods_seen().items()
                      if p not in reached and (service in called or p in self.killed_pods))

    @property
    def lost_pods(self) -> list[str]:
        """Pods that lost connectivity: every call they made failed, or they could no longer be reached."""
        return sorted(set(self.failing_callers) | set(self.unreachable))

    @property
    def unseen(self) -> list[str]:
        """Pods reached before and not after whose callers were all cut off: this run cannot tell about them."""
        reached, lost = set(app_hops(self.after)), set(self.lost_pods)
        return sorted(p for p in self._pods_seen() if p not in reached and p not in lost)

    @property
    def out_of_reach(self) -> list[str]:
        """Pods that no longer worked after the kill: lost, or no longer reached at all (lost + unseen)."""
        return sorted(set(self.lost_pods) | set(self.unseen))

    @property
    def lost_nodes(self) -> list[str]:
        """Nodes where every pod seen before the kill is lost or unseen: none of them still worked."""
        lost, unseen = set(self.lost_pods), set(self.unseen)
        nodes: dict[str, list[str]] = {}
        for pod, (_, node) in self._pods_seen().items():
            nodes.setdefault(node, []).append(pod)
        return sorted(n for n, pods in nodes.items() if set(pods) <= lost | unseen)

    @property
    def verdict(self) -> str:
        """One line: how far the failure reached."""
        total, failed = self.calls_after, self.failed_after
        if not total and self.after.requests and not self.after.ok:
            return f"every request failed at the entry ({self.after.failed} of {self.after.requests}): " \
                   "no east-west call was even made"
        if not failed:
            extra = f"; {self.after.failed} requests failed" if self.after.failed else ""
            return f"nothing broke: all {total} east-west calls still succeeded{extra}"
        failing = [r for r in self.rows if r.after_failed]
        node_verdict = self._node_verdict(failing) if self.scope == "node" else None
        if node_verdict:
            return node_verdict
        if self.scope == "pod" and all(r.callee in self.killed_services or r.pod in self.killed_pods for r in failing):
            pods = ", ".join(self.killed_pods)
            targets = ", ".join(sorted({r.callee for r in failing}))
            return f"only calls to {targets} that were routed to {pods} failed ({failed} of {total}); " \
                   f"everything else was unaffected: blast radius = {'one pod' if len(self.killed_pods) == 1 else 'those pods'}"
        if failed == total:
            return f"every east-west call failed ({failed} of {total}): blast radius = the whole mesh"
        callers = ", ".join(sorted({r.caller for r in failing}))
        callees = ", ".join(sorted({r.callee for r in failing}))
        return f"{failed} of {total} east-west calls failed, from {callers} to {callees}"

    def _node_verdict(self, failing: list[Row]) -> str | None:
        """The verdict of a node (or node-proxy) kill whose every failure is explained by the killed nodes'
        pods: they were cut off, or they were the callers whose calls failed. None otherwise."""
        killed_nodes, seen, lost = set(self.killed_pods.values()), self._pods_seen(), self.lost_pods
        on_killed = [p for p in lost if seen.get(p, ("", ""))[1] in killed_nodes]
        if not lost or len(on_killed) != len(lost):
            return None
        services = {seen[p][0] for p in on_killed}
        if not all(r.node in killed_nodes or r.callee in services for r in failing):
            return None
        nodes = sorted(killed_nodes & {seen[p][1] for p in on_killed})
        where = ", ".join(nodes)
        radius = "one node" if len(nodes) == 1 else f"{len(nodes)} nodes"
        reached_elsewhere = [p for p in app_hops(self.after) if seen.get(p, ("", ""))[1] not in killed_nodes]
        tail = ("pods on other nodes kept working" if reached_elsewhere else
                f"no pod on another node was reached either, since every request starts on {where}")
        return (f"the pods on {where} were cut off ({', '.join(on_killed)}): {self.failed_after} of "
                f"{self.calls_after} east-west calls failed, every one to or from them; {tail}: blast radius = {radius}")

    # ---- output --------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"<BlastRadius kill={self.kill}: {self.verdict}>"

    def to_dict(self) -> dict:
        """A JSON-ready summary."""
        def run(r: TrafficResult) -> dict:
            return {"requests": r.requests, "ok": r.ok, "failed": r.failed, "success_rate": r.success_rate,
                    "latency_ms": dict(r.latency_ms), "calls": r.calls}
        return {"kill": dict(self.kill), "killed": list(self.killed), "scope": self.scope, "verdict": self.verdict,
                "lost_pods": self.lost_pods, "lost_nodes": self.lost_nodes,
                "failing_callers": self.failing_callers, "unreachable": self.unreachable, "unseen": self.unseen,
                "out_of_reach": self.out_of_reach, "rows": [r.to_dict() for r in self.rows],
                "before": run(self.before), "after": run(self.after)}

    def _header(self) -> list[str]:
        lines = [f"killed: {', '.join(self.killed) or 'nothing'}",
                 f"requests ok: before {self.before.ok}/{self.before.requests}, after {self.after.ok}/{self.after.requests}",
                 f"lost connectivity: pods {', '.join(self.lost_pods) or 'none'}; nodes {', '.join(self.lost_nodes) or 'none'}"]
        if self.unseen:
            lines.append(f"not reached after the kill, but only their callers were cut off (this run cannot tell): "
                         f"{', '.join(self.unseen)}")
        return lines

    def __str__(self) -> str:
        head = ("caller", "pod", "node", "callee", "failed before", "failed after")
        body = [(r.caller, r.pod, r.node, r.callee, f"{r.before_failed}/{r.before_calls}",
                 f"{r.after_failed}/{r.after_calls}") for r in self.rows]
        return "\n".join([self.verdict] + self._header() + text_table(head, body))

    def _repr_html_(self) -> str:
        esc = html.escape
        cells = "".join(
            f"<tr style='{'background:#fde2e1' if r.after_failed else ''}'><td>{esc(r.caller)}</td>"
            f"<td>{esc(r.pod)}</td><td>{esc(r.node)}</td><td>{esc(r.callee)}</td>"
            f"<td style='text-align:right'>{r.before_failed}/{r.before_calls}</td>"
            f"<td style='text-align:right'>{r.after_failed}/{r.after_calls}</td></tr>" for r in self.rows)
        return (f"<p><b>{esc(self.verdict)}</b><br>" + "<br>".join(esc(x) for x in self._header()) + "</p>"
                "<table><tr><th>caller</th><th>pod</th><th>node</th><th>callee</th>"
                f"<th>failed before</th><th>failed after</th></tr>{cells}</table>")


def kill_targets(lab, kill: dict) -> list[dict]:
    """The lab.kill() calls that carry out `kill`: a pod, a node, or proxies (by name or role,
    optionally only on one node or in one pod: dict(proxy='node', node='node-2'))."""
    unknown = set(kill) - set(KILL_KEYS)
    if unknown or not kill:
        raise MeshlabError(f"blast_radius cannot kill {kill!r}",
                           "use kill=dict(proxy='router'), dict(node='node-2'), dict(pod='reviews-v2') "
                           "or dict(proxy='node', node='node-2')")
    proxy, node, pod = kill.get("proxy"), kill.get("node"), kill.get("pod")
    if not proxy:
        if node and pod:
            raise MeshlabError("kill one of node= or pod=, not both", "e.g. kill=dict(pod='reviews-v2')")
        return [{"node": node}] if node else [{"pod": pod}]
    proxies = [p for p in lab.proxies() if proxy in (p.name, p.role)]
    if node:
        proxies = [p for p in proxies if p.node == node]
    if pod:
        proxies = [p for p in proxies if p.pod == pod or p.pod.startswith(f"{pod}-")][:1]
    if not proxies:
        where = f" on {node}" if node else f" in pod {pod}" if pod else ""
        raise MeshlabError(f"no proxy {proxy}{where}", "see lab.proxies() for names, roles and nodes")
    return [{"proxy": p.name} for p in proxies]


def measure(lab, kill: dict, n: int = 200, concurrency: int = 4, wait: float = 60.0) -> BlastRadius:
    """Traffic before, kill, traffic after, restore (always, until the lab serves again); return what broke."""
    targets = kill_targets(lab, kill)
    pods = {p.name: p for p in lab.pods()}
    roles = {p.name: p.role for p in lab.proxies()}
    before = lab.traffic(n=n, concurrency=concurrency)
    killed: list[str] = []
    try:
        for target in targets:
            killed += lab.kill(**target)
        after = lab.traffic(n=n, concurrency=concurrency)
    finally:
        lab.restore(wait=wait)
    killed_pods = {k.split("/")[0]: pods[k.split("/")[0]].node for k in killed if k.split("/")[0] in pods}
    services = sorted({pods[p].service for p in killed_pods if pods[p].service and pods[p].labels.get("version")})
    return BlastRadius(dict(kill), killed, _scope(kill, targets, roles), killed_pods, services, before, after)


def _scope(kill: dict, targets: list[dict], roles: dict[str, str]) -> str:
    """What kind of part was killed: a node (or node proxies), a pod (or sidecars), or a layer."""
    if kill.get("node") and not kill.get("proxy"):
        return "node"
    if kill.get("pod") and not kill.get("proxy"):
        return "pod"
    killed_roles = {roles.get(t["proxy"]) for t in targets}
    if killed_roles == {"node"}:
        return "node"
    if killed_roles == {"sidecar"}:
        return "pod"
    return "layer"
