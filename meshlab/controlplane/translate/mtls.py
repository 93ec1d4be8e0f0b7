"""PeerAuthentication -> the mTLS mode of a workload: selector beats namespace beats mesh-wide; PERMISSIVE by default."""

from __future__ import annotations

from ..model import ROOT_NAMESPACE, Model, Pod, Policy, selects

DEFAULT_MODE = "PERMISSIVE"
MODES = ("DISABLE", "PERMISSIVE", "STRICT")


def policy_mode(policy: Policy) -> str:
    """A PeerAuthentication's own mode; UNSET (or no mtls) means inherit."""
    mode = (policy.spec.get("mtls") or {}).get("mode") or "UNSET"
    return mode if mode in MODES else "UNSET"


def levels(policies, pod: Pod) -> list[list[Policy]]:
    """The PeerAuthentications that could decide for a pod, by precedence: workload, namespace, mesh."""
    own = [p for p in policies if p.namespace == pod.namespace]
    workload = [p for p in own if p.selector and selects(p.selector, pod.labels)]
    namespace = [p for p in own if not p.selector]
    mesh = [p for p in policies if p.namespace == ROOT_NAMESPACE and not p.selector]
    return [workload, namespace, mesh]


def workload_mode(model: Model, pod: Pod) -> str:
    """The effective mTLS mode of a pod's inbound side (the oldest policy wins within a level, as Istio)."""
    for level in levels(model.of_kind("PeerAuthentication"), pod):
        for policy in level:
            mode = policy_mode(policy)
            if mode != "UNSET":
                return mode
            break  # the level's policy says "inherit": ask the next level
    return DEFAULT_MODE
