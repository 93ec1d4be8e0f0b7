"""The one backend interface every runtime implements (modelled on kind's Provider)."""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from pathlib import Path


class MeshlabError(Exception):
    """A user-facing error: one line that names what and where, plus a hint."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message

    def _render_traceback_(self) -> list[str]:
        """What Jupyter shows for it: the one line, not meshlab's frames (IPython's hook for custom tracebacks)."""
        return [f"\x1b[0;31mMeshlabError\x1b[0m: {self}"]


@dataclass
class Availability:
    """Whether a backend can run here, and what is missing with how to get it."""

    name: str
    ok: bool
    present: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)


@dataclass
class ContainerInfo:
    """One container of a pod and its state (running, killed, exited, waiting)."""

    name: str
    image: str
    state: str
    pid: int | None = None
    restarts: int = 0


@dataclass
class PodInfo:
    """A pod as the course sees it."""

    name: str
    namespace: str
    node: str
    ip: str
    ready: bool
    phase: str
    labels: dict = field(default_factory=dict)
    containers: list[ContainerInfo] = field(default_factory=list)
    cluster: str = ""

    @property
    def service(self) -> str:
        return self.labels.get("app", "")

    @property
    def version(self) -> str:
        return self.labels.get("version", "")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class NodeInfo:
    """A node (a kind container, or a named group of loopback addresses locally)."""

    name: str
    ip: str
    ready: bool
    cluster: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ProxyInfo:
    """A running Envoy: which role it plays, where, and its admin URL."""

    name: str
    role: str
    pod: str
    node: str
    state: str
    admin_url: str = ""
    cluster: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class Backend(abc.ABC):
    """A place where a lab's manifests run: local processes, kind, or an existing cluster."""

    name: str = ""

    @classmethod
    @abc.abstractmethod
    def availability(cls) -> Availability:
        """Probe: can this backend run on this machine, and what is missing."""

    @abc.abstractmethod
    def up(self, nodes: int = 3, clusters: int = 1) -> None:
        """Create the cluster(s); tear down what was made if this fails half-way."""

    @abc.abstractmethod
    def apply(self, docs: list[dict], source: str = "<yaml>") -> list[str]:
        """Create or update objects (`source` names where they came from, for errors); return their `kind/name` refs."""

    @abc.abstractmethod
    def delete(self, docs: list[dict]) -> list[str]:
        """Delete objects; return their `kind/name` references."""

    @abc.abstractmethod
    def objects(self, kind: str) -> list[dict]:
        """The lab's stored objects of one kind, as applied (`kubectl get KIND -o json`)."""

    @abc.abstractmethod
    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until every workload is rolled out and ready."""

    @abc.abstractmethod
    def pods(self) -> list[PodInfo]:
        """Every pod of the lab."""

    @abc.abstractmethod
    def nodes(self) -> list[NodeInfo]:
        """Every node of the lab."""

    @abc.abstractmethod
    def proxies(self) -> list[ProxyInfo]:
        """Every Envoy of the lab, with its role."""

    @abc.abstractmethod
    def entrypoint(self) -> str:
        """The URL a learner sends traffic to (the edge, or the frontend without one)."""

    @abc.abstractmethod
    def kill(self, pod: str | None = None, node: str | None = None, proxy: str | None = None) -> list[str]:
        """Kill a pod, every pod of a node, or one proxy; it stays down until restore()."""

    @abc.abstractmethod
    def restore(self) -> None:
        """Bring back everything kill() took down and clear injected faults."""

    @abc.abstractmethod
    def inject(self, service: str, errors: float = 0.0, latency_ms: int = 0, pod: str | None = None) -> list[str]:
        """Set the app's fault knobs on every pod of a service (or one pod)."""

    @abc.abstractmethod
    def logs(self, dest: Path) -> Path:
        """Collect every container's log into dest; return the folder."""

    @abc.abstractmethod
    def down(self) -> None:
        """Remove everything this lab made; idempotent."""

    def running(self) -> bool | None:
        """Whether the lab runs here now; None when the backend cannot tell cheaply (kind, kube: a cluster may hold
        an earlier stage)."""
        return None

    def clusters(self) -> list[str]:
        """The names of the clusters this backend composes (stage 6); [] for one cluster."""
        return []

    def stage_options(self) -> dict:
        """Options the stage's manifests need from the running backend (stage 6: the legacy service's address)."""
        return {}

    def parts(self) -> list["Backend"]:
        """The single-cluster backends this one is made of: itself, or each cluster of a fleet."""
        return [self]

    def capabilities(self) -> set[str]:
        """What this backend offers beyond the basics: "watch", "mesh", "restart", "admin", "edge-config" (the
        edge's config is a ConfigMap the lab can read, so apply can wait until the edge serves it)."""
        return set()

    def restart(self, ref: str, timeout: float = 60.0) -> list[str]:
        """Roll a workload like `kubectl rollout restart deployment/NAME`; return the new pod names."""
        raise self.unsupported("restart")

    def watch(self, since: int = 0, timeout: float = 30.0) -> dict:
        """The lab's state once its revision passes `since` (docs/controlplane.md); local only."""
        raise self.unsupported("watch")

    def install_mesh(self) -> None:
        """Install the mesh's control plane (meshlab's own locally) and wait until it serves."""
        raise self.unsupported("install_mesh")

    def uninstall_mesh(self) -> None:
        """Remove the control plane install_mesh() put in (a stage without a mesh on a running lab); a cluster's
        Istio stays (kind/kube: istiod injects nothing without the stage's labels, and kube's is not the lab's)."""

    def unsupported(self, what: str) -> MeshlabError:
        """The one-line error for an operation this backend cannot do."""
        return MeshlabError(f"{what} is not supported by the {self.name or type(self).__name__} backend",
                            "the local backend has it; on a cluster use kubectl or istioctl")

    def remember(self, **facts) -> None:
        """Keep small facts about the lab (such as its stage) where other processes can read them."""
        self._facts = {**getattr(self, "_facts", {}), **facts}

    def recall(self) -> dict:
        """The facts kept by remember()."""
        return dict(getattr(self, "_facts", {}))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.down()
        return False
