"""Calls that crossed from one cluster to another are drawn through the callee cluster's east-west gateway.

The gateway passes TLS through, so it adds no trace hop: a crossing shows as a caller-side hop and a callee-side
hop of different clusters (docs/multicluster.md). Only such observed edges are rerouted, so a gateway arrow means
traffic really crossed.
"""

from __future__ import annotations

from meshlab.diagrams.model import Proxy, Topology

GATEWAY_ROLE = "gateway"
GATEWAY_NAME = "eastwest-gateway"  # drawn when the facts do not list the gateway (a diagram of traces alone)


def _clusters_of(topo: Topology) -> dict[str, str]:
    """Element id -> the cluster it runs in ('' when unknown or outside every cluster)."""
    return {**{p.id: p.cluster for p in topo.pods}, **{p.id: p.cluster for p in topo.proxies}}


def gateway_of(topo: Topology, cluster: str) -> Proxy:
    """The east-west gateway of a cluster, added to the topology if the facts did not name one."""
    for proxy in topo.proxies:
        if proxy.role == GATEWAY_ROLE and proxy.cluster == cluster:
            return proxy
    proxy = Proxy(GATEWAY_NAME, GATEWAY_ROLE, GATEWAY_NAME, "", cluster)
    topo.proxies.append(proxy)
    return proxy


def crossings(topo: Topology) -> list:
    """Observed call edges whose two ends run in different (named) clusters."""
    where = _clusters_of(topo)
    return [e for e in topo.edges if e.kind == "call" and e.count and where.get(e.src) and where.get(e.dst)
            and where[e.src] != where[e.dst]]


def route_crossings(topo: Topology) -> Topology:
    """Replace each crossing a -> b with a -> gateway of b's cluster -> b, carrying counts and failures."""
    where = _clusters_of(topo)
    for edge in crossings(topo):
        gateway = gateway_of(topo, where[edge.dst])
        topo.edges.remove(edge)
        into = topo.edge(edge.src, gateway.id)
        into.count = (into.count or 0) + edge.count
        into.failed += edge.failed
        into.label = into.label or "mTLS, SNI passthrough"
        out = topo.edge(gateway.id, edge.dst)
        out.count = (out.count or 0) + edge.count
        out.failed += edge.failed
        out.p50_ms = edge.p50_ms if out.p50_ms is None else out.p50_ms
    return topo
