"""meshlab's ingress controller on the local backend: the edge's ConfigMap and Deployment (pure).

The translation itself (Ingress -> Envoy listener and clusters) is meshlab/edge/translate.py, the same code the
edge pod runs on kind and kube; this module wraps its files into the objects the local runtime reconciles.
"""

from __future__ import annotations

import json

from ...edge.translate import (ADMIN_PORT, EDGE_CLASS, EDGE_NAME, EDGE_NAMESPACE, EDGE_PORT, HCM, ROUTER,  # noqa: F401
                               TRACE_HOP, backend_cluster, bootstrap, cluster_name, clusters, dynamic_files, listener,
                               path_match, serves, virtual_hosts)


def config_map(entry_ip: str, ingresses: list[dict], endpoints) -> dict:
    """The ConfigMap the edge pod mounts at /etc/envoy."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "edge-envoy", "namespace": EDGE_NAMESPACE},
            "data": {"envoy.json": json.dumps(bootstrap(), indent=1), **dynamic_files(entry_ip, ingresses, endpoints)}}


def deployment(node: str) -> dict:
    """The edge proxy's Deployment (one Envoy, pinned to the first node like kind's port mapping)."""
    labels = {"app": "edge", "meshlab.io/proxy-role": "edge"}
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": EDGE_NAME, "namespace": EDGE_NAMESPACE, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                # no grace: when its last Ingress goes, the edge must free the entry address at once, or an
                # edge started for the next Ingress could not listen there
                "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "envoy", "image": "envoyproxy/envoy:v1.36-latest",
                                         "args": ["-c", "/etc/envoy/envoy.json", "-l", "warning"], "env": env,
                                         "ports": [{"containerPort": EDGE_PORT, "name": "http"}],
                                         "volumeMounts": [{"name": "config", "mountPath": "/etc/envoy"}]}],
                         "volumes": [{"name": "config", "configMap": {"name": "edge-envoy"}}]}}}}
