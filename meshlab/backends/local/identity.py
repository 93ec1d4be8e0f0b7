"""Who a local runtime is in a fleet: its cluster, network and region, and its nodes with their topology labels."""

from __future__ import annotations

from dataclasses import dataclass, field

REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
NETWORK_LABEL = "topology.istio.io/network"


@dataclass(frozen=True)
class ClusterIdentity:
    """A runtime's place in a multi-cluster lab; all empty for a lab of one cluster."""

    name: str = ""
    network: str = ""
    region: str = ""

    @property
    def multicluster(self) -> bool:
        """True when the runtime is one cluster of several."""
        return bool(self.name)

    def zone(self, index: int) -> str:
        """Node index 1, 2, 3 -> zone `zone-1a`, `zone-1b`, ... of region `region-1`."""
        suffix = self.region.rsplit("-", 1)[-1] if self.region else ""
        return f"zone-{suffix}{chr(ord('a') + index - 1)}"

    def argv(self) -> list[str]:
        """The supervisor's command-line flags for this identity."""
        if not self.multicluster:
            return []
        return ["--cluster", self.name, "--network", self.network, "--region", self.region]

    def to_dict(self) -> dict:
        """As status and the watch API report it."""
        return {"cluster": self.name, "network": self.network, "region": self.region}


@dataclass
class Node:
    """A named node: a host IP and a pool of pod IPs in 127.L.N.0/24, with its topology labels."""

    name: str
    index: int
    ip: str
    ready: bool = True
    next_pod: int = 10
    labels: dict = field(default_factory=dict)


def make_nodes(octet: int, count: int, identity: ClusterIdentity) -> dict[str, Node]:
    """node-1..node-N of a runtime; in a multi-cluster lab each carries its region and zone labels."""
    nodes = {}
    for i in range(1, count + 1):
        labels = {REGION_LABEL: identity.region, ZONE_LABEL: identity.zone(i)} if identity.multicluster else {}
        nodes[f"node-{i}"] = Node(f"node-{i}", i, f"127.{octet}.{i}.1", labels=labels)
    return nodes
