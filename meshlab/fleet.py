"""Several clusters composed into one lab (stage 6): each a complete local runtime, plus what lives outside them.
What every fleet shares is in fleet_base.py; this is the local part (runtimes, the root CA folder, the legacy
process). The kind fleet is kindfleet.py."""

from __future__ import annotations

import shutil
from pathlib import Path

from .backends.base import Availability, Backend
from .backends.local import LocalBackend, cleanup, outside, paths
from .backends.local.identity import ClusterIdentity
from .fleet_base import LEGACY_SERVICE, FleetBase

CLUSTERS = (ClusterIdentity("cluster-1", "network-1", "region-1"),
            ClusterIdentity("cluster-2", "network-2", "region-2"))


def member_lab(lab: str, cluster: str) -> str:
    """The local lab that runs one cluster of a fleet: `shop-cluster-1`."""
    return paths.check_name(f"{lab}-{cluster}", "lab name (with its cluster, at most 22 characters)")


def is_fleet(lab: str) -> bool:
    """True when lab's state on disk is a fleet's (so `meshlab status|down --lab` finds the clusters)."""
    return "fleet" in paths.read_state(lab)


class Fleet(FleetBase):
    """A Backend of several LocalBackends (one per cluster) and the legacy process outside them."""

    name = "local"

    def __init__(self, lab: str, owned: bool = True, members: dict[str, Backend] | None = None,
                 legacy=outside):
        self.owned = owned
        self.folder = paths.lab_dir(lab)
        self.root_ca = self.folder / "ca"  # the shared root; each control plane signs with its own intermediate
        super().__init__(paths.check_name(lab), members if members is not None else {
            c.name: LocalBackend(member_lab(lab, c.name), owned, c, str(self.root_ca)) for c in CLUSTERS})
        self.legacy = legacy
        self._legacy_proc = None
        self._claim = None  # the legacy host's address block, from _prepare until its process holds it

    @classmethod
    def availability(cls) -> Availability:
        return LocalBackend.availability()

    # ---- lifecycle -----------------------------------------------------------------------
    def running(self) -> bool:
        """True when any cluster's runtime answers."""
        return any(m.running() for m in self.members.values())

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
            octet = paths.allocate_octet(self.lab)
            self._claim = paths.claim_block(octet)  # held until the legacy process takes it over (_start_legacy)
            paths.write_state(self.folder, {"lab": self.lab, "octet": octet, "processes": [],
                                            "fleet": {"clusters": {n: getattr(m, "lab", n) for n, m in self.members.items()}}})
        from .controlplane import ca

        ca.load_or_create(self.root_ca, "root", "meshlab root CA", None)  # before any control plane starts: no race

    def _start_legacy(self) -> None:
        """The legacy service as a plain process on its own loopback address."""
        state = paths.read_state(self.lab)
        ip = f"127.{state['octet']}.0.1"
        held, self._claim = self._claim, None
        self._legacy_proc, started = self.legacy.start(self.folder, LEGACY_SERVICE, ip, self.owned, held)
        state.update(processes=[[self._legacy_proc.pid, started]], legacy={"service": LEGACY_SERVICE, "ip": ip})
        paths.write_state(self.folder, state)

    def legacy_address(self) -> str:
        """The address of the legacy service outside the clusters ('' before up)."""
        return (paths.read_state(self.lab).get("legacy") or {}).get("ip", "")

    def set_legacy_fault(self, settings: dict | None) -> None:
        self.legacy.set_fault(self.legacy_address(), settings)

    def down(self) -> None:
        if self._claim is not None:
            self._claim.close()
            self._claim = None
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

    # ---- objects -------------------------------------------------------------------------
    # ---- views ---------------------------------------------------------------------------
    def status(self) -> dict:
        """Each cluster's status, by cluster."""
        return {"clusters": {name: m.status() for name, m in self.members.items()},
                "legacy": paths.read_state(self.lab).get("legacy", {})}

    # ---- faults --------------------------------------------------------------------------
    def restore(self) -> None:
        self._each(lambda member: member.restore())
        address = self.legacy_address()
        if address:
            try:
                self.legacy.set_fault(address, None)
            except OSError:
                pass  # not running: nothing to clear

    def logs(self, dest: Path) -> Path:
        dest = Path(dest)
        for name, member in self.members.items():
            member.logs(dest / name)
        log = self.folder / f"{LEGACY_SERVICE}.log"
        if log.exists():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, dest / log.name)
        return dest

