"""`meshlab.Lab`: the one object a notebook uses to run a stage, send traffic and break things."""

from __future__ import annotations

import os
import time
from pathlib import Path

from . import applied, interrupts, manifests, settle, stages
from .backends.base import Backend, MeshlabError


FLEET_OPTIONS = ("runner", "progress", "detached")  # what a kind fleet passes on to its member clusters


def make_backend(name: str, lab: str, owned: bool = True, clusters: bool | None = None, **options) -> Backend:
    """The backend called `name` for lab `lab`: with clusters=True a fleet of clusters (stage 6), with False one
    cluster, with None whichever the lab is on disk (so `meshlab status|down --lab` finds a fleet)."""
    if name != "kube":
        options.pop("learner", None)  # learner= names a namespace of one's own on a shared cluster: kube only
    if name == "local":
        from .backends.local import LocalBackend
        from .fleet import Fleet, is_fleet

        fleet = is_fleet(lab) if clusters is None else clusters
        return Fleet(lab, owned=owned) if fleet else LocalBackend(lab, owned=owned)
    if name == "kind":
        from .backends.kind import KindBackend
        from .kindfleet import KindFleet, is_kind_fleet

        fleet = is_kind_fleet(lab) if clusters is None else clusters
        if fleet:
            return KindFleet(lab, **{k: v for k, v in options.items() if k in FLEET_OPTIONS})
        return KindBackend(lab, **options)
    if name == "kube":
        from .backends.kube import KubeBackend

        if clusters:
            raise MeshlabError("stage 6 (multicluster) needs two clusters, and the kube backend runs a lab in one "
                               "namespace of one existing cluster",
                               "use --backend kind (two kind clusters on this machine) or the local backend; "
                               "see docs/multicluster.md, 'On kind'")
        return KubeBackend(lab, **options)
    raise MeshlabError(f"unknown backend {name!r}", "choose local, kind or kube")


class Lab:
    """A running lab: `with meshlab.Lab('lab1') as lab: lab.up(stage='edge'); lab.traffic()`."""

    def __init__(self, name: str = "default", backend: str | None = None, nodes: int | None = None, owned: bool = True,
                 **options):
        backend = backend or os.environ.get("MESHLAB_BACKEND") or "local"  # chosen once for every notebook
        self.name, self.backend_name, self.node_count, self.owned = name, backend, nodes, owned
        self.backend = make_backend(backend, name, owned=owned, **options)
        self.stage: int | None = None
        self.last_traffic = None

    # ---- lifecycle -----------------------------------------------------------------------
    def up(self, stage=0, wait: float = 90.0, quiet: bool = False, keep: bool = False, **options) -> "Lab":
        """Start the cluster(s) and deploy a stage (stage 5: `injection=False` starts with no service in the mesh;
        stage 6: two clusters); tears down again if interrupted half-way. On a running lab it converges to the
        stage's starting state: the earlier stage's objects that this one lacks are deleted, and so is every object
        applied with lab.apply unless `keep=True`; up returns once their pods are gone (docs/internals.md)."""
        number = stages.number(stage)
        stages.documents(number, **options)  # bad options fail before anything starts
        self._fit_backend(number)
        running = self.backend.running()
        fresh = running is False  # None (kind, kube): the cluster may hold an earlier stage
        try:
            self.backend.up(nodes=self.node_count or stages.nodes_for(number, self.backend_name))
            if stages.needs_mesh(number):
                self.backend.install_mesh()  # the control plane first: injected sidecars get their config from it
            before = applied.recorded(self.backend)
            if before is None and fresh:
                before = {"stage": [], "learner": []}  # a cluster just made holds nothing yet
            docs = self._apply_stage(number, options)
            self._prune(before, docs, keep, wait)
            if running and not stages.needs_mesh(number):
                self.backend.uninstall_mesh()  # e.g. stage 5 -> 4: no control plane left from before
            self.backend.wait_ready(timeout=wait)
            if running:
                self.backend.restore()  # up() means the stage's starting state: no faults left from before
            settle.settle(self)  # ready pods are not enough while proxies still resolve their upstreams
        except BaseException:
            with interrupts.deferred():  # a second Ctrl-C must not cut the teardown in half
                self.down()
            raise
        self.stage = number
        self.backend.remember(stage=number)
        if not quiet:
            print(f"lab {self.name}: stage {number} ({stages.info.get(number).title}) is up at {self.url}")
        return self

    def _prune(self, before: dict | None, docs: list[dict], keep: bool, wait: float) -> None:
        """Delete what `before` recorded that the stage just applied (`docs`) does not have; wait until the
        deleted workloads' pods are gone; record the stage's objects and the learner's that stay."""
        gone, kept = applied.plan(before, docs, keep)
        if gone:
            self.backend.delete(gone)
            deadline = time.monotonic() + wait
            while any(p.phase == "Terminating" for p in self.backend.pods()) and time.monotonic() < deadline:
                time.sleep(0.1)
        self.backend.remember(**{applied.FACT: {"stage": applied.idents(docs), "learner": kept}})

    def _fit_backend(self, number: int) -> None:
        """A multi-cluster stage runs on a fleet of clusters (local runtimes: meshlab/fleet.py; kind clusters:
        meshlab/kindfleet.py), every other stage on one; kube refuses stage 6 before anything changes."""
        wanted = stages.is_multicluster(number)
        if wanted == bool(self.clusters()):
            return
        options = {k: getattr(self.backend, k) for k in FLEET_OPTIONS if hasattr(self.backend, k)}  # kind's runner
        shaped = make_backend(self.backend_name, self.name, self.owned, clusters=wanted, **options)
        self.backend.down()  # the other shape of this lab, if it runs
        self.backend = shaped

    def _apply_stage(self, number: int, options: dict) -> list[dict]:
        """A stage's objects; with several clusters, each cluster's share of them (placement). Returns them all."""
        if not self.clusters():
            docs = stages.documents(number, **options)
            self._apply_docs(docs, f"stage {number}")
            return docs
        known = self.backend.stage_options()  # e.g. where the legacy service outside runs
        every = []
        for cluster in self.clusters():
            docs = stages.documents(number, **{"cluster": cluster, **known, **options})
            self._apply_docs(docs, f"stage {number} ({cluster})", cluster=cluster)
            every += docs
        return every

    def clusters(self) -> list[str]:
        """The names of the lab's clusters (stage 6: cluster-1, cluster-2); [] for a lab of one cluster."""
        return list(self.backend.clusters())

    def down(self) -> None:
        """Remove everything this lab started; safe to call twice."""
        self.backend.down()

    def __repr__(self) -> str:
        return f"Lab({self.name!r}, backend={self.backend_name!r}, stage={self.stage!r})"

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> bool:
        self.down()
        return False

    # ---- objects -------------------------------------------------------------------------
    def apply(self, yaml_text: str, source: str = "<cell>", wait: float = 30.0, cluster: str | None = None) -> list[str]:
        """Apply YAML (with several clusters: to every cluster, or to `cluster`); bad input raises a one-line
        MeshlabError and changes nothing."""
        docs = manifests.load(yaml_text, source)
        refs = self._apply_docs(docs, source, cluster)
        applied.add_learner(self.backend, docs)  # the learner's own: up(stage=...) removes them unless keep=True
        if wait:
            self._wait_served(docs, wait)
        return refs

    def _wait_served(self, docs: list[dict], wait: float) -> None:
        """Return once a change to these objects is what the lab serves (apply and delete alike)."""
        self.backend.wait_ready(timeout=wait)
        settle.wait_edge_config(self)  # an Ingress change is served when apply returns
        if any(manifests.is_istio(d) for d in docs) and "mesh" in self.backend.capabilities():
            from . import mesh

            mesh.wait_synced(self)  # a policy change is served by every sidecar when apply returns
            mesh.wait_drained(self, docs)  # ... on the connections already open too

    def _apply_docs(self, docs: list[dict], source: str, cluster: str | None = None) -> list[str]:
        manifests.validate(docs, source, istio_subset="istio" not in self.backend.capabilities())  # kind: full Istio
        return self.backend.apply(docs, source, **({"cluster": cluster} if cluster else {}))

    def restart(self, workload: str, timeout: float = 60.0) -> list[str]:
        """Re-create a workload's pods like `kubectl rollout restart deployment/reviews-v1` (how a running
        service joins or leaves the mesh); returns the new pods once they are ready."""
        return self.backend.restart(workload, timeout=timeout)

    def delete(self, yaml_text: str, source: str = "<cell>", wait: float = 30.0) -> list[str]:
        """Delete the objects named in YAML; like apply, return once the lab serves without them."""
        docs = manifests.load(yaml_text, source)
        refs = self.backend.delete(docs)
        applied.forget(self.backend, docs)
        if wait:
            self._wait_served(docs, wait)
        return refs

    def manifests(self, stage=None) -> str:
        """The YAML of a stage (default: the one that is up)."""
        return stages.yaml_text(self.stage if stage is None else stage)

    # ---- views ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Where to send traffic: the edge, or the frontend when there is no edge."""
        return self.backend.entrypoint()

    def pods(self):
        return self.backend.pods()

    def nodes(self):
        return self.backend.nodes()

    def proxies(self):
        return self.backend.proxies()

    def status(self) -> dict:
        """Nodes, pods and proxies as plain data."""
        stage = self.stage if self.stage is not None else self.backend.recall().get("stage")
        return {"lab": self.name, "backend": self.backend_name, "stage": stage, "entrypoint": self.url,
                "nodes": [n.to_dict() for n in self.nodes()], "pods": [p.to_dict() for p in self.pods()],
                "proxies": [p.to_dict() for p in self.proxies()]}

    # ---- the mesh (stage 5) ---------------------------------------------------------------
    def proxy_status(self):
        """Every sidecar, the config version it ACKed, SYNCED / STALE / NOT CONNECTED (`istioctl proxy-status`)."""
        from . import mesh

        return mesh.proxy_status(self)

    def convergence(self, yaml_text: str, source: str = "<cell>", timeout: float = 30.0, cluster: str | None = None):
        """Apply YAML (stage 6: to every cluster, or to `cluster`) and measure how long until every affected sidecar
        ACKed it and serves it."""
        from . import mesh

        return mesh.convergence(self, yaml_text, source, timeout, cluster=cluster)

    def call(self, source: str | None, url: str, headers: dict | None = None):
        """GET url from inside a pod of app `source` (through its sidecar if it has one), or from outside the
        mesh with source=None: `lab.call('frontend', 'http://reviews:9080/')`."""
        from . import mesh

        return mesh.call(self, source, url, headers)

    def logs(self, dest="meshlab-logs") -> Path:
        """Copy every container's log into a folder."""
        return self.backend.logs(Path(dest))

    # ---- traffic and faults --------------------------------------------------------------
    def traffic(self, n: int = 100, concurrency: int = 4, path: str = "/", host: str | None = None, **options):
        """Send n real HTTP requests to the lab's entry; returns a TrafficResult."""
        from . import traffic

        self.last_traffic = traffic.run(self.url, n=n, concurrency=concurrency, path=path, host=host, **options)
        return self.last_traffic

    def kill(self, pod: str | None = None, node: str | None = None, proxy: str | None = None,
             cluster: str | None = None) -> list[str]:
        """Kill a pod (name, or one pod of an app), a node, or a proxy (name or role), or with only `cluster` a whole
        cluster (stage 6); down until restore()."""
        return self.backend.kill(pod=pod, node=node, proxy=proxy, **({"cluster": cluster} if cluster else {}))

    def inject(self, service: str, errors: float = 0.0, latency_ms: int = 0, pod: str | None = None) -> list[str]:
        """Make a service's pods (or one pod) fail a share of requests and/or answer slower."""
        return self.backend.inject(service, errors=errors, latency_ms=latency_ms, pod=pod)

    def restore(self, wait: float = 60.0) -> None:
        """Undo every kill and injected fault; returns once the lab serves again (pods ready, proxies settled, as
        after up), at once when nothing was down."""
        down = any(not n.ready for n in self.nodes()) or any(not p.ready for p in self.pods())
        self.backend.restore()
        if not down:
            return  # only faults were injected: cleared as restore returned
        try:
            self.backend.wait_ready(timeout=wait)
            settle.settle(self)
        except MeshlabError:
            pass  # a pod that cannot get ready (a broken change) or a lab with no entry shows in lab.status(), not here

    def blast_radius(self, kill: dict, n: int = 200, concurrency: int = 4):
        """Traffic, kill (dict(proxy='router') | dict(node='node-2') | dict(pod=...)), traffic, restore:
        a BlastRadius table of which calls, pods and nodes the failure cut off."""
        from . import blast

        return blast.measure(self, kill, n=n, concurrency=concurrency)
