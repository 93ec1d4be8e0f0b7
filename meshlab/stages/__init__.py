"""The stages of the course: what each deploys (manifests) and what it teaches (info)."""

from __future__ import annotations

import json

from .. import manifests
from ..backends.base import MeshlabError
from . import controlplane, edge, info, multicluster, pernode, router, shop, sidecar

BUILDERS = {
    0: lambda: shop.documents(),
    1: lambda: shop.documents() + [edge.ingress()],
    2: lambda: router.documents(),
    3: lambda: pernode.documents(),
    4: lambda: sidecar.documents(),
    5: lambda **options: controlplane.documents(**options),
    6: lambda **options: multicluster.documents(**options),
}
MESH_STAGES = {5, 6}  # stages whose sidecars need a control plane (installed by the backend before applying)
MULTICLUSTER_STAGES = {6}  # stages that run in several clusters (composed backends: meshlab/fleet.py, kindfleet.py)


# Nodes the shop needs per stage where a node costs something (kind: one container each). Stage 3 is about
# nodes: a proxy on each of three, so one can die while the others serve; the other stages fit on one.
SHOP_NODES = {3: 3}
LOCAL_NODES = 3  # local nodes are groups of loopback addresses: every stage gets three


def nodes_for(stage, backend: str = "local") -> int:
    """Nodes `Lab.up` starts for a stage: three locally; on kind, the control-plane node (Kubernetes and
    the edge, no app pods) plus the workers the stage's pods need; kube uses the cluster as it is."""
    if backend == "local":
        return LOCAL_NODES
    workers = SHOP_NODES.get(number(stage), 1)
    return 1 + workers if backend == "kind" else workers


def number(stage) -> int:
    """A stage number from a number, a key such as 'edge', or a numeric string."""
    try:
        return info.get(stage).number
    except (KeyError, ValueError, IndexError, TypeError):
        known = ", ".join(f"{s.number}/{s.key}" for s in info.STAGES)
        raise MeshlabError(f"unknown stage {stage!r}", f"choose one of {known}") from None


def documents(stage, **options) -> list[dict]:
    """Every Kubernetes object a stage deploys (the same on every backend); options such as injection=False."""
    n = number(stage)
    if n not in BUILDERS:
        raise MeshlabError(f"stage {n} ({info.get(n).key}) cannot be deployed yet", "this stage arrives in a later release")
    try:
        docs = BUILDERS[n](**options)
    except TypeError:
        raise MeshlabError(f"stage {n} ({info.get(n).key}) takes no option {', '.join(options)}",
                           "stage 5 takes injection=False (the brownfield start); stage 6 cluster= and payments_address=") from None
    return json.loads(json.dumps(docs))  # every object its own: changing one Deployment's labels changes nothing else


def is_multicluster(stage) -> bool:
    """True when a stage runs in several clusters."""
    return number(stage) in MULTICLUSTER_STAGES


def needs_mesh(stage) -> bool:
    """True when a stage's sidecars are configured by a control plane the backend provides."""
    return number(stage) in MESH_STAGES


def yaml_text(stage) -> str:
    """A stage's manifests as the YAML a learner can read or kubectl apply."""
    return manifests.dump(documents(stage))


def deployable() -> list[int]:
    """Stage numbers that can be deployed."""
    return sorted(BUILDERS)
