"""Several clusters composed into one lab (stage 6): each a complete local runtime, plus what lives outside them."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .backends.base import Availability, Backend, MeshlabError, NodeInfo, PodInfo, ProxyInfo
from .backends.local import LocalBackend, cleanup, outside, paths
from .backends.local.identity import ClusterIdentity
from .fleet_mesh import FleetMesh

CLUSTERS = (ClusterIdentity("cluster-1", "network-1", "region-1"),
            ClusterIdentity("cluster-2", "network-2", "region-2"))
LEGACY_SERVICE = "payments"  # the service outside both clusters, reached through a ServiceEntry


def member_lab(lab: str, cluster: str) -> str:
    """The local lab that runs one cluster of a fleet: `shop-cluster-1`."""
    return paths.check_name(f"{lab}-{cluster}", "lab name (with its cluster, at most 22 characters)")


def is_fleet(lab: str) -> bool:
    """True when lab's state on disk is a fleet's (so `meshlab status|down --lab` finds the clusters)."""
    return "fleet" in paths.read_state(lab)


class Fleet(FleetMesh, Backend):
    """A Backend of several LocalBackends (one per cluster) and the legacy process outside them."""

    name = "local"

    def __init__(self, lab: str, owned: bool = True, members: dict[str, Backend] | None = None,
                 legacy=outside):
        self.lab = paths.check_name(lab)
        self.owned = owned
        self.folder = paths.lab_dir(lab)
        self.root_ca = self.folder / "ca"  # the shared root; each control plane signs with its own intermediate
        self.members = members if members is not None else {
            c.name: LocalBackend(member_lab(lab, c.name), owned, c, str(self.root_ca)) for c in CLUSTERS}
        self.legacy = legacy
        self._legacy_proc = None

    @classmethod
    def availability(cls) -> Availability:
        return LocalBackend.availability()

    # ---- lifecycle -----------------------------------------------------------------------
    def clusters(self) -> list[str]:
        """The clusters' names, in order (the first one has the edge)."""
        return list(self.members)

    def running(self) -> bool:
        """True when any cluster's runtime answers."""
        return any(getattr(m, "running", lambda: False)() for m in self.members.values())

    def up(self, nodes: int = 3, clusters: int = 2) -> None:
        if self.running() and self.legacy_address():
            return
        try:
            self._prepare()
            self._each(lambda member: member.up(nodes=nodes))
            self._start_legacy()
        except BaseException:
            self.down()
            raise

    def _prepare(self) -> None:
        """The fleet's folder (0700): state for `meshlab down`, the root CA, an address block for the legacy host."""
        with paths.registry_lock():
            cleanup(self.lab)  # a single-cluster lab of the same name, or a fleet that crashed
            self.folder.mkdir(parents=True, mode=0o700)
            paths.write_state(self.folder, {"lab": self.lab, "octet": paths.allocate_octet(self.lab), "processes": [],
                                            "fleet": {"clusters": {n: getattr(m, "lab", n) for n, m in self.members.items()}}})
        from .controlplane import ca

        ca.load_or_create(self.root_ca, "root", "meshlab root CA", None)  # before any control plane starts: no race

    def _start_legacy(self) -> None:
        """The legacy service as a plain process on its own loopback address."""
        state = paths.read_state(self.lab)
        ip = f"127.{state['octet']}.0.1"
        self._legacy_proc, started = self.legacy.start(self.folder, LEGACY_SERVICE, ip, self.owned)
        state.update(processes=[[self._legacy_proc.pid, started]], legacy={"service": LEGACY_SERVICE, "ip": ip})
        paths.write_state(self.folder, state)

    def legacy_address(self) -> str:
        """The address of the legacy service outside the clusters ('' before up)."""
        return (paths.read_state(self.lab).get("legacy") or {}).get("ip", "")

    def stage_options(self) -> dict:
        """What the stage's manifests need to know of this fleet: where the legacy service is."""
        return {"payments_address": self.legacy_address()}

    def install_mesh(self) -> None:
        """A control plane and an east-west gateway per cluster, then each linked to every peer (a remote secret)."""
        self._each(lambda member: member.install_mesh())
        for member in self.members.values():
            for peer in self.members.values():
                if peer is not member:
                    member.link(peer)

    def down(self) -> None:
        self._each(lambda member: member.down())
        cleanup(self.lab)  # the legacy process (from the state file) and the folder with the root CA
        if self._legacy_proc is not None:
            self._legacy_proc.wait(timeout=10)  # reap it: no zombie left in the kernel
            self._legacy_proc = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def remember(self, **facts) -> None:
        state = paths.read_state(self.lab)
        if state:
            state["facts"] = {**state.get("facts", {}), **facts}
            paths.write_state(self.folder, state)

    def recall(self) -> dict:
        return dict(paths.read_state(self.lab).get("facts", {}))

    def _each(self, action) -> list:
        """Run action on every cluster at once (clusters are independent); the first failure is raised."""
        with ThreadPoolExecutor(len(self.members)) as pool:
            futures = [pool.submit(action, member) for member in self.members.values()]
        return [future.result() for future in futures]

    # ---- objects -------------------------------------------------------------------------
    def member(self, cluster: str) -> Backend:
        """The backend of one cluster by name."""
        if cluster not in self.members:
            raise MeshlabError(f"no cluster {cluster!r} in lab {self.lab}", f"clusters are {', '.join(self.members)}")
        return self.members[cluster]

    def _targets(self, cluster: str | None) -> list[Backend]:
        return [self.member(cluster)] if cluster else list(self.members.values())

    def apply(self, docs: list[dict], source: str = "<yaml>", cluster: str | None = None) -> list[str]:
        """Apply to one cluster, or to every cluster (namespace sameness: the same objects everywhere)."""
        return _union(m.apply(docs, source) for m in self._targets(cluster))

    def delete(self, docs: list[dict], cluster: str | None = None) -> list[str]:
        return _union(m.delete(docs) for m in self._targets(cluster))

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
    def status(self) -> dict:
        """Each cluster's status, by cluster."""
        return {"clusters": {name: m.status() for name, m in self.members.items()},
                "legacy": paths.read_state(self.lab).get("legacy", {})}

    def pods(self) -> list[PodInfo]:
        return [p for name, m in self.members.items() for p in _stamped(m.pods(), name)]

    def nodes(self) -> list[NodeInfo]:
        return [n for name, m in self.members.items() for n in _stamped(m.nodes(), name)]

    def proxies(self) -> list[ProxyInfo]:
        return [p for name, m in self.members.items() for p in _stamped(m.proxies(), name)]

    def entrypoint(self) -> str:
        return self.member(self.clusters()[0]).entrypoint()

    def capabilities(self) -> set[str]:
        return set.intersection(*(m.capabilities() for m in self.members.values())) | {"clusters"}

    # ---- faults --------------------------------------------------------------------------
    def kill(self, pod=None, node=None, proxy=None, cluster: str | None = None) -> list[str]:
        """A pod, node or proxy (of one cluster, or the first that has it), or with only `cluster` the whole
        cluster: every node down, so every pod is held down until restore()."""
        if cluster and not (pod or node or proxy):
            member = self.member(cluster)
            return [k for n in member.nodes() for k in member.kill(node=n.name)]
        if node and not cluster and len(self.members) > 1:
            raise MeshlabError(f"node {node} exists in every cluster", "say which: lab.kill(node=..., cluster='cluster-2')")
        errors = []
        for member in self._targets(cluster):
            try:
                return member.kill(pod=pod, node=node, proxy=proxy)
            except MeshlabError as exc:
                errors.append(exc)
        raise errors[0]

    def restore(self) -> None:
        self._each(lambda member: member.restore())
        address = self.legacy_address()
        if address:
            try:
                self.legacy.set_fault(address, None)
            except OSError:
                pass  # not running: nothing to clear

    def inject(self, service: str, errors: float = 0.0, latency_ms: int = 0, pod: str | None = None,
               cluster: str | None = None) -> list[str]:
        """Fault knobs on a service's pods in every cluster that runs it (or one), or on the legacy service."""
        if service == LEGACY_SERVICE and not pod and self.legacy_address():
            self.legacy.set_fault(self.legacy_address(), {"error_rate": errors, "latency_ms": latency_ms})
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

    def logs(self, dest: Path) -> Path:
        dest = Path(dest)
        for name, member in self.members.items():
            member.logs(dest / name)
        log = self.folder / f"{LEGACY_SERVICE}.log"
        if log.exists():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, dest / log.name)
        return dest


def _stamped(items, cluster: str):
    """Set `cluster` on infos a member left without one."""
    for item in items:
        if not item.cluster:
            item.cluster = cluster
        yield item


def _union(ref_lists) -> list[str]:
    """Refs of several clusters, each once, in order."""
    return list(dict.fromkeys(ref for refs in ref_lists for ref in refs))
