"""The control plane as Kubernetes objects (what `install_mesh()` applies on the local backend)."""

from __future__ import annotations

NAMESPACE = "mesh-system"
NAME = "meshlab-controlplane"
IMAGE = "python:3.12-slim"
XDS_PORT, STATUS_PORT = 15010, 15014
LABELS = {"app": NAME}


def _field_env(name: str, path: str) -> dict:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def container() -> dict:
    """The `discovery` container: meshlab's xDS server, as istiod's is named."""
    return {"name": "discovery", "image": IMAGE, "command": ["python", "-m", "meshlab.controlplane"],
            "args": ["--xds-port", str(XDS_PORT), "--status-port", str(STATUS_PORT)],
            "env": [_field_env("POD_IP", "status.podIP"), _field_env("POD_NAME", "metadata.name"),
                    _field_env("POD_NAMESPACE", "metadata.namespace")],
            "ports": [{"containerPort": XDS_PORT, "name": "grpc-xds"},
                      {"containerPort": STATUS_PORT, "name": "http-monitoring"}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": STATUS_PORT}, "periodSeconds": 1}}


def documents() -> list[dict]:
    """Namespace, ServiceAccount, Deployment and Service of the control plane."""
    meta = {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)}
    template = {"metadata": {"labels": dict(LABELS), "annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": {"serviceAccountName": NAME, "containers": [container()]}}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta)},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": dict(meta),
         "spec": {"replicas": 1, "selector": {"matchLabels": dict(LABELS)}, "template": template}},
        {"apiVersion": "v1", "kind": "Service", "metadata": dict(meta),
         "spec": {"selector": dict(LABELS), "ports": [
             {"name": "grpc-xds", "port": XDS_PORT, "targetPort": XDS_PORT},
             {"name": "http-monitoring", "port": STATUS_PORT, "targetPort": STATUS_PORT}]}},
    ]
