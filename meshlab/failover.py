"""Locality failover between two clusters, measured under load: kill a service's pods in one cluster while a
background load runs, and read the traces until the other cluster answers (stage 6; lab 06's check and lesson
07's comparison both measure it this way)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from . import traffic

OUTSIDE = "outside"  # where a hop without cluster= ran: the legacy payments service, outside both clusters


def app_hops(hops: Iterable[Mapping]) -> list[Mapping]:
    """The app hops of one traced path, in order (proxies stamp hops too, but only apps make calls)."""
    return [h for h in hops or [] if isinstance(h, Mapping) and h.get("kind") == "app"]


def cluster_counts(result, service: str = "reviews") -> Counter:
    """How many requests of a traffic result had `service` answered by each cluster (from the traces)."""
    counts: Counter = Counter()
    for path in getattr(result, "paths", None) or []:
        seen = {h.get("cluster") or OUTSIDE for h in app_hops(path.get("hops")) if h.get("service") == service}
        for cluster in seen:
            counts[cluster] += int(path.get("count") or 1)
    return counts


@dataclass
class Failover:
    """What a failover measurement saw: the load across the kill, and when the other cluster started to answer."""

    killed: list[str] = field(default_factory=list)
    requests: int = 0
    failed: int = 0
    switch_s: float | None = None  # from the first kill to the first answer of `service` from the other cluster
    last_failure_s: float | None = None
    errors: list[str] = field(default_factory=list)


def measure(lab, service: str = "reviews", home: str = "cluster-1", other: str = "cluster-2", *,
            concurrency: int = 2, warmup_s: float = 1.0, poll_s: float = 0.1, timeout_s: float = 15.0,
            settle_s: float = 1.5, background=traffic.background) -> Failover:
    """Kill every running pod of `service` in `home` while `concurrency` requests at a time run through the edge;
    watch the traces until `other` answers `service` (and `settle_s` longer, to count late failures), or give up
    after `timeout_s`. The pods stay down until restore()."""
    local = [p.name for p in lab.pods() if p.service == service and getattr(p, "cluster", "") == home
             and getattr(p, "phase", "Running") == "Running"]
    out = Failover(killed=local)
    with background(lab.url, concurrency=concurrency) as load:
        time.sleep(warmup_s)  # the load runs, everything local
        start = load.snapshot()
        begin = time.monotonic()
        for name in local:
            lab.kill(pod=name)
        failed = start.failed
        while True:
            now = time.monotonic() - begin
            seen = load.snapshot()
            if seen.failed > failed:
                failed, out.last_failure_s = seen.failed, now
            if out.switch_s is None and (cluster_counts(seen, service).get(other, 0)
                                         > cluster_counts(start, service).get(other, 0)):
                out.switch_s = now
            if (out.switch_s is not None and now >= out.switch_s + settle_s) or now >= timeout_s:
                break
            time.sleep(poll_s)
    final = load.result()
    out.requests, out.failed, out.errors = final.requests - start.requests, final.failed - start.failed, final.errors
    return out
