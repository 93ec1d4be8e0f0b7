"""Deployments and DaemonSets -> the pods that should exist (pure decisions, no processes)."""

from __future__ import annotations

import hashlib
import json
import random

MAX_SURGE = 1  # Kubernetes' RollingUpdate maxSurge, with maxUnavailable 0
NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: dict) -> str:
    """A short hash of a pod template, as the ReplicaSet name suffix."""
    return hashlib.sha1(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def pod_name(owner_name: str, tmpl_hash: str, node: str | None = None) -> str:
    """`<deployment>-<hash>-<5 random>`, or `<daemonset>-<5 random>`."""
    suffix = "".join(random.choice(NAME_CHARS) for _ in range(5))
    return f"{owner_name}-{suffix}" if node else f"{owner_name}-{tmpl_hash[:8]}-{suffix}"


def owner_ref(doc: dict) -> str:
    """`Kind/namespace/name` of a workload."""
    meta = doc["metadata"]
    return f"{doc['kind']}/{meta.get('namespace', 'default')}/{meta['name']}"


def schedule(template: dict, nodes: list[str], load: dict[str, int]) -> str | None:
    """The least-loaded ready node that satisfies the template's nodeSelector."""
    wanted = ((template.get("spec") or {}).get("nodeSelector") or {}).get("kubernetes.io/hostname")
    candidates = [n for n in nodes if wanted in (None, n)]
    if not candidates:
        return None
    return min(candidates, key=lambda n: (load.get(n, 0), nodes.index(n)))


def deployment_plan(doc: dict, pods: list, ready_nodes: list[str], load: dict[str, int]):
    """(nodes to create pods on, pods to delete) for one Deployment; `pods` are the ones it owns (not terminating).
    A changed template rolls with maxSurge 1, maxUnavailable 0: a new pod serves before an old one goes."""
    template = doc["spec"]["template"]
    current_hash = template_hash(template)
    replicas = doc["spec"].get("replicas", 1)
    current = [p for p in pods if p.template_hash == current_hash]
    old = [p for p in pods if p.template_hash != current_hash]
    wanted = max(0, replicas - len(current))
    if old:
        wanted = min(wanted, max(0, replicas + MAX_SURGE - len(current) - len(old)))
    create, delete = [], []
    load = dict(load)
    for _ in range(wanted):
        node = schedule(template, ready_nodes, load)
        if node is None:
            break
        create.append(node)
        load[node] = load.get(node, 0) + 1
    if len(current) > replicas:
        delete += sorted(current, key=lambda p: (p.ready, p.name))[: len(current) - replicas]
    kept = [p for p in current if p not in delete]
    spare = sum(p.ready for p in kept) + sum(p.ready for p in old) - replicas  # ready pods beyond the replicas
    for pod in sorted(old, key=lambda p: (p.ready, p.name)):
        if not pod.ready:
            delete.append(pod)  # serves nothing: goes at once
        elif spare > 0 and all(p.ready for p in kept):
            delete.append(pod)
            spare -= 1
    return create, delete


def daemonset_plan(doc: dict, pods: list, ready_nodes: list[str]):
    """(nodes to create pods on, pods to delete): one pod per ready node."""
    template = doc["spec"]["template"]
    current_hash = template_hash(template)
    wanted = ((template.get("spec") or {}).get("nodeSelector") or {}).get("kubernetes.io/hostname")
    create, delete = [], []
    for node in ready_nodes:
        if wanted not in (None, node):
            continue
        on_node = [p for p in pods if p.node == node]
        current = [p for p in on_node if p.template_hash == current_hash]
        if not current:
            create.append(node)
        elif all(p.ready for p in current):
            delete += [p for p in on_node if p.template_hash != current_hash]
    return create, delete
