"""`kubectl rollout restart` for the local runtime, and the grace period of a pod that goes."""

from __future__ import annotations

import asyncio
import copy
import time

from ..base import MeshlabError
from . import workloads

GRACE = 2.0  # seconds a serving pod stays up after it left the endpoints (terminationGracePeriodSeconds, capped)
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
KINDS = {"deployment": "Deployment", "deployments": "Deployment", "deploy": "Deployment",
         "daemonset": "DaemonSet", "daemonsets": "DaemonSet", "ds": "DaemonSet"}


def grace_seconds(pod_spec: dict) -> float:
    """How long a serving pod keeps running after it was taken out of the endpoints."""
    given = pod_spec.get("terminationGracePeriodSeconds")
    return GRACE if given is None else max(0.0, min(GRACE, float(given)))


def parse_ref(ref: str) -> tuple[str, str | None, str]:
    """`deployment/NAME` or `NAMESPACE/deployment/NAME` -> (kind, namespace or None, name)."""
    parts = ref.split("/")
    if len(parts) == 2:
        parts = [None] + parts
    if len(parts) != 3 or parts[1].lower() not in KINDS or not parts[2]:
        raise MeshlabError(f"cannot restart {ref}: give deployment/NAME or daemonset/NAME",
                           "e.g. lab.restart('deployment/reviews-v1')")
    return KINDS[parts[1].lower()], parts[0], parts[2]


def find(objects: dict, ref: str) -> tuple:
    """The stored key of the workload a ref names (namespace `default` first, else the only one)."""
    kind, namespace, name = parse_ref(ref)
    keys = [k for k in objects if k[0] == kind and k[2] == name and namespace in (None, k[1])]
    keys.sort(key=lambda k: (k[1] != "default", k[1]))
    if not keys:
        raise MeshlabError(f"cannot restart {ref}: no {kind} {name}", "see 'meshlab status' for workload names")
    return keys[0]


def restarted(doc: dict, stamp: str) -> dict:
    """A copy of the workload whose pod template carries restartedAt, so its template hash changes."""
    doc = copy.deepcopy(doc)
    meta = doc["spec"]["template"].setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}), RESTARTED_AT: stamp}
    return doc


def progress(doc: dict, pods: list) -> tuple[bool, list[str], list[str]]:
    """(rolled out, new pod names, what is still waiting) of a workload, from the pods it owns."""
    current_hash = workloads.template_hash(doc["spec"]["template"])
    live = [p for p in pods if not p.deleting]
    new = sorted(p.name for p in live if p.template_hash == current_hash)
    old = sorted(p.name for p in live if p.template_hash != current_hash)
    unready = sorted(p.name for p in live if p.template_hash == current_hash and not p.ready)
    enough = len(new) == doc["spec"].get("replicas", 1) if doc["kind"] == "Deployment" else bool(new)
    waiting = [f"{n} (old)" for n in old] + [f"{n} (not ready)" for n in unready]
    return enough and not old and not unready, new, waiting


async def restart(runtime, ref: str, timeout: float = 60.0) -> list[str]:
    """Roll a workload's pods (new ones ready before old ones go); return the new pod names."""
    async with runtime.lock:
        key = find(runtime.objects, ref)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + f".{time.time_ns() % 10**9:09d}"
        runtime.objects[key] = doc = restarted(runtime.objects[key], stamp)
        await runtime.reconcile()
    await runtime.revisions.bump()
    owner = workloads.owner_ref(doc)
    deadline = time.monotonic() + timeout
    while True:
        if runtime.objects.get(key) is not doc:
            raise MeshlabError(f"{ref} changed while it was rolling out", "look at 'meshlab status' and try again")
        done, new, waiting = progress(doc, [p for p in runtime.pods.values() if p.owner == owner])
        if done:
            await runtime.follow()  # the ClusterIPs route to the new pods, and to no old one, before this returns
            return new
        if time.monotonic() > deadline:
            raise MeshlabError(f"{ref} did not roll out in {timeout:.0f}s: waiting for {', '.join(waiting) or 'pods'}",
                               "look at the pods' logs (lab.logs()) and 'meshlab status'")
        await asyncio.sleep(0.1)
