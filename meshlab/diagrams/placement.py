"""Where the local lab runs a stage's pods, read from the stage's own manifests: the runtime's scheduling
decisions (backends/local/workloads.py) replayed over what `Lab.up` applies, in the order it applies it; for stage 6
once per cluster, each cluster being a local runtime of its own (meshlab/fleet.py)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

from meshlab import stages
from meshlab.backends.local import ingress, inject, workloads
from meshlab.backends.local.pods import is_envoy
from meshlab.backends.local.runtime import key_of
from meshlab.diagrams.facts import pod_role
from meshlab.stages.info import Part


@dataclass
class Placed:
    """One pod as the runtime would create it: its workload, node, labels and containers."""

    owner: str
    node: str
    template_hash: str
    labels: dict = field(default_factory=dict)
    containers: list[dict] = field(default_factory=list)
    ready: bool = True  # what the plans read: a pod of a fresh lab counts as serving
    deleting: bool = False

    @property
    def name(self) -> str:
        """What the plans sort by (the runtime's pods have their own names)."""
        return self.owner

    @property
    def service(self) -> str:
        """The app label."""
        return self.labels.get("app", "")

    @property
    def version(self) -> str:
        """The version label."""
        return self.labels.get("version", "")

    @property
    def sidecar(self) -> bool:
        """An Envoy beside an app container (stage 4's own, or injected)."""
        envoys = [c for c in self.containers if is_envoy(c)]
        return bool(envoys) and len(envoys) < len(self.containers)


ONE_CLUSTER = "cluster"  # the cluster of a one-cluster stage's parts (info.Part's default)


def derivable(stage) -> bool:
    """True for a stage whose pods come from its manifests (every deployable stage)."""
    return stages.number(stage) in stages.deployable()


def clusters(stage) -> tuple[str, ...]:
    """The clusters the stage's pods run in: stage 6's two, else the one."""
    if not stages.is_multicluster(stage):
        return (ONE_CLUSTER,)
    from meshlab.fleet import CLUSTERS

    return tuple(c.name for c in CLUSTERS)


def node_names(stage) -> list[str]:
    """The nodes a local lab of this stage has."""
    return [f"node-{i}" for i in range(1, stages.nodes_for(stages.number(stage)) + 1)]


def place(stage, cluster: str = "") -> list[Placed]:
    """The stage's pods in a fresh local lab (of stage 6: in one of its clusters, the first by default), in the
    order they are created: the control plane first when the stage needs one (install_mesh), then the stage's
    objects (that cluster's share of them) with the edge their Ingress calls for."""
    number = stages.number(stage)
    cluster = cluster or clusters(number)[0]
    if cluster not in clusters(number):
        raise KeyError(f"stage {number} runs in {', '.join(clusters(number))}, not in {cluster!r}")
    nodes = node_names(number)
    multi = stages.is_multicluster(number)
    own = stages.documents(number, cluster=cluster) if multi else stages.documents(number)
    batches = ([_mesh_documents(cluster if multi else "")] if stages.needs_mesh(number) else []) + [own]
    objects: dict[tuple, dict] = {}
    pods: list[Placed] = []
    for docs in batches:  # each apply reconciles once
        objects.update({key_of(d): d for d in docs})
        if any(k[0] == "Ingress" and ingress.serves(d) for k, d in objects.items()):
            objects.setdefault(("Deployment", ingress.EDGE_NAMESPACE, ingress.EDGE_NAME), ingress.deployment(nodes[0]))
        _sync(objects, pods, nodes)
    return pods


def _mesh_documents(cluster: str) -> list[dict]:
    """What install_mesh applies (backends/local/mesh_client.py): the control plane, and in a cluster of a fleet
    (named) that cluster's control plane and its east-west gateway."""
    from meshlab.controlplane import deploy

    if not cluster:
        return deploy.documents()
    from meshlab.fleet import CLUSTERS

    identity = next(c for c in CLUSTERS if c.name == cluster)
    return deploy.documents(identity.name, identity.network) + deploy.gateway_documents()


def _sync(objects: dict, pods: list[Placed], nodes: list[str]) -> None:
    """The runtime's _sync_workloads for a lab that only grows: Deployments then DaemonSets, by key."""
    ordered = [d for _, d in sorted(objects.items(), key=lambda i: str(i[0]))]
    for kind in ("Deployment", "DaemonSet"):
        for doc in (d for d in ordered if d["kind"] == kind):
            ref = workloads.owner_ref(doc)
            owned = [p for p in pods if p.owner == ref]
            if kind == "Deployment":
                load = {n: sum(1 for p in pods if p.node == n) for n in nodes}
                create, _ = workloads.deployment_plan(doc, owned, nodes, load)
            else:
                create, _ = workloads.daemonset_plan(doc, owned, nodes)
            for node in create:
                pods.append(_new_pod(doc, node, objects))


def _new_pod(doc: dict, node: str, objects: dict) -> Placed:
    template = doc["spec"]["template"]
    namespace = doc["metadata"].get("namespace", "default")
    ns_labels = ((objects.get(("Namespace", None, namespace)) or {}).get("metadata") or {}).get("labels") or {}
    meta, spec = inject.inject(template.get("metadata") or {}, template.get("spec") or {}, ns_labels)
    return Placed(workloads.owner_ref(doc), node, workloads.template_hash(template), dict(meta.get("labels") or {}),
                  list(spec.get("containers") or []))


@lru_cache(maxsize=None)  # a stage's manifests do not change while the process runs
def parts(stage, drawn: tuple[Part, ...] = ()) -> tuple[Part, ...]:
    """The stage's pods as schematic parts, placed as the local lab places them, in every cluster of the stage.
    A pod takes the name of a drawn part of its cluster and kind (service and version, or proxy role), preferring
    one drawn on its node, so the drawing's calls still name it; a pod the drawing lacks gets a name of its own
    (`router-2`). Drawn parts of no cluster of the stage (stage 6's legacy host) are kept as drawn."""
    number = stages.number(stage)
    where = clusters(number)
    placed = {cluster: place(number, cluster) for cluster in where}
    versions: dict[str, set] = {}
    for pod in (p for pods in placed.values() for p in pods):
        versions.setdefault(pod.service, set()).add(pod.version)
    out = [d for d in drawn if d.cluster not in where]
    for cluster, pods in placed.items():
        fresh = [replace(_part(pod, versions), cluster=cluster) for pod in pods]
        out += _named(fresh, [d for d in drawn if d.cluster == cluster])
    order = {(d.cluster, d.name): i for i, d in enumerate(drawn)}  # the drawing's order; new pods last
    return tuple(sorted(out, key=lambda p: order.get((p.cluster, p.name), len(order))))


def _named(fresh: list[Part], drawn: list[Part]) -> list[Part]:
    """One cluster's parts, each with the name of a drawn part of its kind (on its own node first), or its own."""
    names: list[str | None] = [None] * len(fresh)
    free = list(drawn)
    for same_node in (True, False):  # first the drawn parts on the pod's own node, then any of its kind
        for i, part in enumerate(fresh):
            match = next((d for d in free if names[i] is None and _kind(d) == _kind(part)
                          and (d.node == part.node or not same_node)), None)
            if match is not None:
                free.remove(match)
                names[i] = match.name
    taken = {n for n in names if n}
    for i, part in enumerate(fresh):
        if names[i] is None:
            names[i] = _free_name(part.name, taken)
            taken.add(names[i])
    return [replace(part, name=name) for part, name in zip(fresh, names)]


def _part(pod: Placed, versions: dict[str, set]) -> Part:
    """A part named `reviews-v2`, `ratings` (a service with one version), `router`, or `node-proxy-3` (a
    DaemonSet's pod, by its node)."""
    role = pod_role(pod)
    workload = pod.owner.split("/")[-1]
    if pod.owner.startswith("DaemonSet/"):
        return Part(f"{workload}-{pod.node.rsplit('-', 1)[-1]}", pod.node, role=role)
    if role:
        return Part(workload, pod.node, role=role)
    name = pod.service if len(versions[pod.service]) == 1 else f"{pod.service}-{pod.version}"
    return Part(name, pod.node, pod.service, pod.version or "v1", "", pod.sidecar)


def _kind(part: Part) -> tuple[str, str, str]:
    return (part.role, "", "") if part.role else ("", part.service, part.version)


def _free_name(name: str, taken: set[str]) -> str:
    """name, or name-2, name-3, ... (a workload's further replicas)."""
    if name not in taken:
        return name
    n = 2
    while f"{name}-{n}" in taken:
        n += 1
    return f"{name}-{n}"
