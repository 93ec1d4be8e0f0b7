"""Turn a traffic run (TrafficResult.to_dict()) into call edges: counts, errors, p50."""

from __future__ import annotations

import functools
from collections import defaultdict
from typing import NamedTuple

from meshlab.diagrams.crossings import route_crossings
from meshlab.diagrams.hops import Resolver, parse_hop, service_of
from meshlab.diagrams.model import CLIENT, Topology


def as_dict(result) -> dict:
    """A traffic result as a dict: anything with to_dict(), a mapping, or None."""
    if result is None:
        return {}
    if hasattr(result, "to_dict"):
        return result.to_dict()
    return dict(result)


def number(d: dict, *keys: str):
    """The first present numeric value among keys; 'a.b' looks inside nested dicts."""
    for key in keys:
        value = d
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    return None


def calls(data: dict) -> list[dict]:
    """The caller -> callee totals as a list, from either [{"from", "to", ...}] or {"a->b": {...}}."""
    raw = data.get("calls") or []
    if isinstance(raw, dict):
        return [{"from": k.split("->", 1)[0], "to": k.split("->", 1)[-1], **v} for k, v in raw.items()]
    return [c for c in raw if isinstance(c, dict)]


def _p50(d: dict):
    """The median latency (ms) a summary states, under any of its usual names."""
    return number(d, "p50_ms", "p50", "latency_ms.p50", "latency.p50", "latency.p50_ms", "ms")


class Chain(NamedTuple):
    """One traced path: element ids from the client on, its hops, how often, and whether it failed."""

    ids: list[str]
    hops: list[dict]
    count: int
    path: dict
    failed: bool


def _chain(path: dict, resolve: Resolver) -> Chain | None:
    """A path as a Chain. An error naming the service of the hop before it (that pod answered
    with an error itself) marks the call into that pod as failed rather than adding a hop."""
    hops = [parse_hop(h) for h in path.get("hops", [])]
    if not hops:
        return None
    failed = hops[-1].get("kind") == "error"
    if failed and len(hops) > 1 and service_of(hops[-2]) == service_of(hops[-1]) \
            and hops[-2].get("kind", "app") == "app":
        hops = hops[:-1]
    return Chain([CLIENT] + [resolve(h) for h in hops], [{}] + hops, int(path.get("count", 1)), path, failed)


def add_traffic(topo: Topology, result) -> Topology:
    """Add the edges observed in one traffic run to topo (in place) and return it."""
    data = as_dict(result)
    resolve = Resolver(topo)
    chains = [c for c in (_chain(p, resolve) for p in data.get("paths", [])) if c is not None]
    for prefix, (n, failed) in _prefix_counts(chains).items():
        edge = topo.edge(prefix[-2], prefix[-1])
        edge.count = (edge.count or 0) + n
        edge.failed += failed
    _call_latency(topo, data, chains)
    _client_side(topo, data, chains)
    if not chains:
        _calls_only(topo, data, resolve)
    return route_crossings(topo)  # a call into another cluster went through that cluster's east-west gateway


def _prefix_counts(chains: list[Chain]) -> dict[tuple, tuple[int, int]]:
    """Requests through each distinct chain prefix, and how many of them failed right there.

    Chains form a tree. At a fork, branches that next reach the same services are alternatives
    (their counts add up); branches that reach different services are parallel calls of the
    same requests (take the largest), so a fan-out is not counted twice.
    """
    children: dict[tuple, list] = defaultdict(list)
    ends: dict[tuple, int] = defaultdict(int)
    failed: dict[tuple, int] = defaultdict(int)
    service: dict[tuple, str | None] = {}
    for chain in chains:
        for i in range(1, len(chain.ids)):
            prefix = tuple(chain.ids[: i + 1])
            if prefix not in service:
                children[prefix[:-1]].append(prefix)
                service[prefix] = service_of(chain.hops[i])
        ends[tuple(chain.ids)] += chain.count
        failed[tuple(chain.ids)] += chain.count if chain.failed else 0

    @functools.lru_cache(maxsize=None)
    def reaches(prefix: tuple) -> frozenset:
        if service[prefix] is not None:
            return frozenset([service[prefix]])
        return frozenset().union(*(reaches(c) for c in children[prefix]))

    @functools.lru_cache(maxsize=None)
    def requests(prefix: tuple) -> int:
        groups: dict[frozenset, int] = defaultdict(int)
        for child in children[prefix]:
            groups[reaches(child)] += requests(child)
        return ends[prefix] + max(groups.values(), default=0)

    return {prefix: (requests(prefix), failed[prefix]) for prefix in service}


def _call_latency(topo: Topology, data: dict, chains) -> None:
    """p50 of each caller -> callee call (from `calls`) on the edge that reaches the callee."""
    call_p50 = {(c.get("from"), c.get("to")): _p50(c) for c in calls(data)}
    for ids, hops, *_ in chains:
        caller = None
        for i in range(1, len(ids)):
            callee = service_of(hops[i])
            if callee is None:
                continue
            if call_p50.get((caller, callee)) is not None:
                topo.edge(ids[i - 1], ids[i]).p50_ms = call_p50[(caller, callee)]
            caller = callee


def _client_side(topo: Topology, data: dict, chains) -> None:
    """Latency on the entry edge, and requests that never came back with a trace."""
    first = {}
    for e in topo.edges:
        if e.src == CLIENT and e.count:
            first[e.dst] = e
    p50 = _p50(data)
    if p50 is None and chains:
        p50 = _p50(max(chains, key=lambda c: c.count).path)
    if p50 is not None and len(first) == 1:
        next(iter(first.values())).p50_ms = p50
    total = number(data, "total", "requests", "sent")
    reached = sum(e.count for e in first.values())
    if total is None or total <= reached:
        return
    lost = int(total - reached)
    entry = max(first.values(), key=lambda e: e.count).dst if first else _entry(topo)
    if entry is None:
        topo.notes.append(f"{lost} of {int(total)} requests got no answer from the entry")
        return
    edge = topo.edge(CLIENT, entry)
    edge.count = (edge.count or 0) + lost
    edge.failed += lost


def _entry(topo: Topology) -> str | None:
    """Where outside traffic enters: the edge proxy, else the frontend."""
    for p in topo.proxies:
        if p.role == "edge":
            return p.id
    for p in topo.pods:
        if p.service == "frontend":
            return p.id
    return None


def _calls_only(topo: Topology, data: dict, resolve: Resolver) -> None:
    """With no paths, draw service-to-service calls from the `calls` totals."""
    for call in calls(data):
        src, dst = call.get("from"), call.get("to")
        if not src or not dst:
            continue
        edge = topo.edge(resolve.service(src), resolve.service(dst))
        edge.count = (edge.count or 0) + int(number(call, "total", "count") or 0)
        edge.failed += int(number(call, "failed", "errors") or 0)
        edge.p50_ms = _p50(call)
