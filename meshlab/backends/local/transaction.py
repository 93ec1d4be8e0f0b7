"""All-or-nothing changes to the runtime's store: a failure part-way puts back what the change touched."""

from __future__ import annotations

import sys
import traceback


def namespaces(objects: dict) -> set[str]:
    """Namespaces that exist: stored Namespace objects, and those holding objects (the edge's meshlab-system)."""
    return {k[2] for k in objects if k[0] == "Namespace"} | {k[1] for k in objects if k[1]}


def empty_namespace(objects: dict, deleted: dict) -> None:
    """A deleted Namespace takes every object in it along, as on Kubernetes."""
    if deleted.get("kind") == "Namespace":
        for key in [k for k in objects if k[1] == deleted["metadata"]["name"]]:
            del objects[key]


class Snapshot:
    """What one apply or delete may change: the objects, Service addresses, pods and their grace periods."""

    def __init__(self, rt):
        self.objects = dict(rt.objects)
        self.cluster_ips = dict(rt.cluster_ips)
        self.pods = {name: pod.deleting for name, pod in rt.pods.items()}
        self.terminating = dict(rt.terminating)
        self.next_pod = {name: node.next_pod for name, node in rt.nodes.items()}

    async def restore(self, rt) -> None:
        """Put the store back and reconcile: new pods go, pods this change began to remove stay, files follow."""
        rt.objects.clear()
        rt.objects.update(self.objects)
        for name, pod in list(rt.pods.items()):
            if name not in self.pods:
                rt._finish_pod(pod)  # created by the failed change; never served
            elif pod.deleting and not self.pods[name] and pod.containers and any(c.proc for c in pod.containers):
                pod.deleting = False  # its grace period had begun: it keeps serving
                rt.terminating.pop(name, None)
        rt.terminating.update({k: v for k, v in self.terminating.items() if k in rt.pods})
        rt.cluster_ips.clear()
        rt.cluster_ips.update({k: v for k, v in self.cluster_ips.items()})
        for name, value in self.next_pod.items():
            if name in rt.nodes:
                rt.nodes[name].next_pod = value
        await rt.reconcile()
        rt.dirty = True


async def run(rt, change) -> None:
    """Run `change()` (which edits rt.objects, then reconciles); on any failure restore the store and re-raise."""
    snapshot = Snapshot(rt)
    try:
        await change()
    except BaseException:
        try:
            await snapshot.restore(rt)
        except Exception:  # the original error is the one to report; the rollback's goes to the supervisor log
            print("rollback after a failed change failed:", file=sys.stderr)
            traceback.print_exc()
        raise
