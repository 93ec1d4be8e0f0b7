"""Stage 6 on kind: two kind clusters composed into one lab, and the legacy service as a container outside them.

A KindFleet is a FleetBase (meshlab/fleet_base.py) whose members are `KindBackend(lab, member="cluster-N")`:
kind clusters `meshlab-<lab>-cluster-1` and `-cluster-2` on kind's Docker network (docs/multicluster.md, "On kind").
`Lab.up(stage="multicluster")` on kind runs, in this order (Istio's "Install Multi-Primary on different networks"):
1. up(): kind create cluster-1, then cluster-2, each with its edge (one after the other: two clusters starting at
   once only slow each other on a laptop, and the progress reads in order); then the legacy service as a container
   on kind's network (kindlegacy.py), whose address stage_options() gives the stage's ServiceEntry.
2. install_mesh(): per cluster the lab's CA as `cacerts`, istioctl install as the primary of network-N, the east-west
   gateway and the cross-network Gateway (multikind.py); then a remote secret in each cluster for the other.
3. Lab applies each cluster's share of the stage (stages.documents(6, cluster=...)), then waits for both.
down() removes the container, both clusters (only clusters meshlab made), the lab's CA and the fleet's record; it
goes on when one step fails, and raises the first failure at the end.
"""

from __future__ import annotations

from pathlib import Path

from .backends import kindlegacy, multikind
from .backends.base import Availability, MeshlabError
from .backends.kind import KindBackend
from .backends.kubectl import Runner
from .backends.state import StateFile, check_name
from .fleet_base import LEGACY_SERVICE, FleetBase
from .stages.multicluster import CLUSTERS


def is_kind_fleet(lab: str) -> bool:
    """True when meshlab has a record of a stage-6 kind lab of this name (its fleet record or a member's marker)."""
    return multikind.fleet_record(lab).exists() or bool(multikind.member_markers(lab))


class KindFleet(FleetBase):
    """A lab of two kind clusters (one KindBackend each) and the legacy container beside them."""

    name = "kind"
    parallel = False  # one cluster after the other (see the module docstring)

    def __init__(self, lab: str = "default", runner: Runner | None = None, progress=None,
                 members: dict[str, KindBackend] | None = None, detached: bool = False):
        self.runner = runner or Runner()
        self.progress = progress or (lambda message: print(message, flush=True))
        self.detached = detached  # the CLI's labs: port-forwards outlive the command (see ClusterBackend)
        super().__init__(check_name(lab), members if members is not None else {
            name: KindBackend(lab, runner=self.runner, progress=self.progress, member=name, detached=detached)
            for name in CLUSTERS})
        self.record = StateFile(multikind.fleet_record(lab))

    @classmethod
    def availability(cls) -> Availability:
        return KindBackend.availability()

    def say(self, message: str) -> None:
        self.progress(f"[kind] {message}")

    # ---- lifecycle -----------------------------------------------------------------------
    def running(self) -> bool:
        """True when any of the lab's member clusters exists."""
        listed = self.runner.run(["kind", "get", "clusters"], timeout=60)
        names = listed.stdout.split() if listed.returncode == 0 else []
        return any(m.cluster_name in names for m in self.members.values())

    def up(self, nodes: int = 2, clusters: int = 2) -> None:
        """Create (or reuse) every member cluster, then start the legacy container; tear all down if this fails."""
        self.record.update(lab=self.lab, clusters=self.clusters())  # first: down() (and make_backend) find the lab
        try:
            for member in self.members.values():
                member.up(nodes=nodes)
            address = kindlegacy.start(self.runner, self.lab, LEGACY_SERVICE, multikind.docker_network(), self.say)
            self.record.update(legacy={"service": LEGACY_SERVICE, "ip": address,
                                       "container": kindlegacy.container_name(self.lab, LEGACY_SERVICE)})
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """The legacy container, every member cluster meshlab made, then what the lab's own backend finds left (a
        member of another name, the CA folder, a single-cluster lab of the same name); idempotent."""
        errors = []
        steps = [lambda: kindlegacy.remove(self.runner, self.lab), *(m.down for m in self.members.values()),
                 KindBackend(self.lab, runner=self.runner, progress=self.progress).down]
        for step in steps:
            try:
                step()
            except Exception as exc:  # the other clusters must still go
                errors.append(exc)
        self.record.remove()
        if errors:
            raise errors[0]

    def remember(self, **facts) -> None:
        state = self.record.read()
        if state:
            self.record.update(facts={**state.get("facts", {}), **facts})

    def recall(self) -> dict:
        return dict(self.record.read().get("facts", {}))

    # ---- the legacy service --------------------------------------------------------------
    def legacy_address(self) -> str:
        return (self.record.read().get("legacy") or {}).get("ip", "")

    def set_legacy_fault(self, settings: dict | None) -> None:
        kindlegacy.set_fault(self.runner, self.lab, LEGACY_SERVICE, settings)

    # ---- views and faults ----------------------------------------------------------------
    def status(self) -> dict:
        """Each cluster's kind cluster, context, network and region, and the legacy container."""
        return {"clusters": {name: {"kind_cluster": m.cluster_name, "context": m.kubectl.context, "network": m.network,
                                    "region": m.region} for name, m in self.members.items()},
                "legacy": self.record.read().get("legacy", {})}

    def kill_cluster(self, member: KindBackend) -> list[str]:
        """Every worker of one cluster stopped (KindBackend.kill_node: cordoned, stopped, its pods deleted), so every
        pod of that cluster, istiod and the east-west gateway included, is down until restore(). The control-plane
        node keeps running: it holds the cluster's Kubernetes API, which the views and the other cluster's istiod
        keep reading, and in cluster-1 the edge, which answers with errors while the frontend is gone."""
        workers = [n for n in member.pod_nodes() if not n.endswith("-control-plane")]
        if not workers:
            raise MeshlabError(f"{member.cluster_name} has no worker node to stop", "its pods run on the control plane")
        return [killed for node in workers for killed in member.kill(node=node)]

    def logs(self, dest: Path) -> Path:
        """Each cluster's logs in dest/<cluster>, and the legacy container's."""
        dest = Path(dest)
        for name, member in self.members.items():
            member.logs(dest / name)
        kindlegacy.logs(self.runner, self.lab, LEGACY_SERVICE, dest)
        return dest
