"""What every fleet shares (stage 6): member backends, one per cluster, composed into one lab's backend.

A fleet is built from single-cluster backends (local runtimes in meshlab/fleet.py, kind clusters in
meshlab/kindfleet.py): two clusters are two backends composed, not one runtime taught about two. This part
knows nothing of how a member or the legacy service outside the clusters runs; the subclasses do.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .backends.base import Backend, MeshlabError, NodeInfo, PodInfo, ProxyInfo
from .fleet_mesh import FleetMesh

LEGACY_SERVICE = "payments"  # the service outside both clusters, reached through a ServiceEntry


class FleetBase(FleetMesh, Backend):
    """Several member backends by cluster name (the first one has the edge), and a legacy service outside them."""

    parallel = True  # members start and settle at once; kind does one cluster after the other (see KindFleet)

    def __init__(self, lab: str, members: dict[str, Backend]):
        self.lab = lab
        self.members = members

    # ---- members -------------------------------------------------------------------------
    def clusters(self) -> list[str]:
        """The clusters' names, in order (the first one has the edge)."""
        return list(self.members)

    def member(self, cluster: str) -> Backend:
        """The backend of one cluster by name."""
        if cluster not in self.members:
            raise MeshlabError(f"no cluster {cluster!r} in lab {self.lab}", f"clusters are {', '.join(self.members)}")
        return self.members[cluster]

    def _targets(self, cluster: str | None) -> list[Backend]:
        return [self.member(cluster)] if cluster else list(self.members.values())

    def _each(self, action) -> list:
        """Run action on every cluster: at once (the first failure is raised once all are done), or when not
        `parallel` one after the other, stopping at the first failure."""
        if not self.parallel:
            return [action(member) for member in self.members.values()]
        with ThreadPoolExecutor(len(self.members)) as pool:
            futures = [pool.submit(action, member) for member in self.members.values()]
        return [future.result() for future in futures]

    def install_mesh(self) -> None:
        """A control plane and an east-west gateway per cluster, then each linked to every peer."""
        self._each(lambda member: member.install_mesh())
        self.link_members()

    def link_members(self) -> None:
        """Give every member a remote secret for every other one (Istio's "Enable Endpoint Discovery"): needs the
        peer's control plane installed first."""
        for member in self.members.values():
            for peer in self.members.values():
                if peer is not member:
                    member.link(peer)

    # ---- objects -------------------------------------------------------------------------
    def apply(self, docs: list[dict], source: str = "<yaml>", cluster: str | None = None) -> list[str]:
        """Apply to one cluster, or to every cluster (namespace sameness: the same objects everywhere); every target
        checks the objects before any stores them (FleetMesh.admit)."""
        targets = self._targets(cluster)
        self.admit(docs, source, cluster)
        return union(m.apply(docs, source) for m in targets)

    def delete(self, docs: list[dict], cluster: str | None = None) -> list[str]:
        return union(m.delete(docs) for m in self._targets(cluster))

    def objects(self, kind: str) -> list[dict]:
        """Stored objects of one kind in the first cluster (the one with the edge)."""
        return self.member(self.clusters()[0]).objects(kind)

    def wait_ready(self, timeout: float = 60.0) -> None:
        self._each(lambda member: member.wait_ready(timeout=timeout))

    def restart(self, ref: str, timeout: float = 60.0, cluster: str | None = None) -> list[str]:
        """Roll a workload in every cluster that runs it (or in one)."""
        rolled, missing = [], []
        for name, member in self.members.items():
            if cluster and name != cluster:
                continue
            try:
                rolled += member.restart(ref, timeout=timeout)
            except MeshlabError as exc:
                if "no " not in str(exc).lower():
                    raise
                missing.append(str(exc))
        if not rolled and missing:
            raise MeshlabError(missing[0], "see lab.pods() for the workloads of each cluster")
        return rolled

    # ---- views ---------------------------------------------------------------------------
    def pods(self) -> list[PodInfo]:
        return [p for name, m in self.members.items() for p in stamped(m.pods(), name)]

    def nodes(self) -> list[NodeInfo]:
        return [n for name, m in self.members.items() for n in stamped(m.nodes(), name)]

    def proxies(self) -> list[ProxyInfo]:
        return [p for name, m in self.members.items() for p in stamped(m.proxies(), name)]

    def entrypoint(self) -> str:
        return self.member(self.clusters()[0]).entrypoint()

    def capabilities(self) -> set[str]:
        return set.intersection(*(m.capabilities() for m in self.members.values())) | {"clusters"}

    # ---- the legacy service outside the clusters -----------------------------------------
    def legacy_address(self) -> str:
        """The address of the legacy service outside the clusters ('' before up)."""
        return ""

    def set_legacy_fault(self, settings: dict | None) -> None:
        """Set (or clear, with None) the legacy service's fault knobs."""
        raise self.unsupported("faults on the legacy service")

    def stage_options(self) -> dict:
        """What the stage's manifests need to know of this fleet: where the legacy service is."""
        return {"payments_address": self.legacy_address()}

    # ---- faults --------------------------------------------------------------------------
    def kill(self, pod=None, node=None, proxy=None, cluster: str | None = None) -> list[str]:
        """A pod, node or proxy (of one cluster, or the first that has it), or with only `cluster` the whole
        cluster, held down until restore()."""
        if cluster and not (pod or node or proxy):
            return self.kill_cluster(self.member(cluster))
        if node and not cluster and len(self.members) > 1:
            raise MeshlabError(f"node {node} exists in every cluster", "say which: lab.kill(node=..., cluster='cluster-2')")
        errors = []
        for member in self._targets(cluster):
            try:
                return member.kill(pod=pod, node=node, proxy=proxy)
            except MeshlabError as exc:
                errors.append(exc)
        raise errors[0]

    def kill_cluster(self, member: Backend) -> list[str]:
        """Every node of one cluster down, so every pod of it is held down until restore()."""
        return [k for n in member.nodes() for k in member.kill(node=n.name)]

    def restore(self) -> None:
        """Every cluster's kills and faults undone, and the legacy service's faults cleared."""
        self._each(lambda member: member.restore())
        if self.legacy_address():
            try:
                self.set_legacy_fault(None)
            except (OSError, MeshlabError):
                pass  # not running: nothing to clear

    def inject(self, service: str, errors: float = 0.0, latency_ms: int = 0, pod: str | None = None,
               cluster: str | None = None) -> list[str]:
        """Fault knobs on a service's pods in every cluster that runs it (or one), or on the legacy service."""
        if service == LEGACY_SERVICE and not pod and self.legacy_address():
            self.set_legacy_fault({"error_rate": errors, "latency_ms": latency_ms})
            return [f"{LEGACY_SERVICE}-legacy"]
        hit, failures = [], []
        for member in self._targets(cluster):
            try:
                hit += member.inject(service, errors=errors, latency_ms=latency_ms, pod=pod)
            except MeshlabError as exc:
                failures.append(exc)
        if not hit:
            raise failures[0]
        return hit


def stamped(items, cluster: str):
    """Set `cluster` on infos a member left without one."""
    for item in items:
        if not item.cluster:
            item.cluster = cluster
        yield item


def union(ref_lists) -> list[str]:
    """Refs of several clusters, each once, in order."""
    return list(dict.fromkeys(ref for refs in ref_lists for ref in refs))
