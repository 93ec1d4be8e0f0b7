"""The edge proxy on kind and kube: the same Envoy edge as locally, with meshlab's ingress controller in its pod.

One pod, Deployment `edge`, two containers sharing an emptyDir at /etc/envoy:
- `controller` (python:3.12-slim): meshlab/edge/controller.py with meshlab/edge/translate.py beside it, both
  shipped in ConfigMap `edge-controller` from the modules' own source. With ServiceAccount `edge` it watches
  the Ingresses, Services and EndpointSlices of the lab's namespace and writes lds.json/cds.json (renamed into
  place) with the translator the local backend uses, so both backends give the edge the same configuration.
- `envoy` (the stages' Envoy image): bootstrap from ConfigMap `edge-envoy` (the local edge's bootstrap plus the
  stages' static `readiness` listener on :15021, since the admin binds the pod's loopback), LDS/CDS from the
  watched /etc/envoy. Envoy refuses to start while a file its bootstrap names is missing, so the container
  waits for the controller's first files; the pod turns ready once Envoy loaded them. POD_NAME and NODE_NAME
  (downward API) fill in the trace hop it stamps.

kind binds the edge port to hostPort 80 of the control-plane node (labelled meshlab.io/edge), which kind maps
to 127.0.0.1; kube reaches Service `edge` through a port-forward. RBAC: a Role in the watched namespace (read
Ingresses, Services, EndpointSlices) bound to the ServiceAccount; nothing cluster-wide but IngressClass `edge`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..edge import controller, translate
from ..stages import envoyconf, shop

NAME = translate.EDGE_NAME
INGRESS_CLASS = translate.EDGE_CLASS
CONTROLLER = "meshlab.io/edge"  # IngressClass edge's spec.controller
CONTROLLER_IMAGE = shop.IMAGE
ENVOY_IMAGE = envoyconf.ENVOY_IMAGE
IMAGES = (CONTROLLER_IMAGE, ENVOY_IMAGE)
EDGE_NODE_LABEL = "meshlab.io/edge"
POD_LABELS = {"app": "edge", "meshlab.io/proxy-role": "edge"}  # as the local edge's
SERVICE_PORT = 80
PROGRAM_DIR = "/opt/meshlab-edge"
BOOTSTRAP_DIR = "/etc/meshlab-edge"
CONFIG_DIR = translate.CONFIG_DIR
ROLE = "meshlab-edge"
CONFIG_HASH = "meshlab.io/edge-config"  # on the pod template: a changed program or bootstrap rolls the edge
_READ = ["get", "list", "watch"]
# Envoy's entrypoint runs this as its `envoy` user: wait for the controller's first files, then become Envoy.
WAIT_THEN_ENVOY = (f"until [ -s {CONFIG_DIR}/lds.json ] && [ -s {CONFIG_DIR}/cds.json ]; do sleep 0.2; done; "
                   f"exec envoy -c {BOOTSTRAP_DIR}/envoy.json --concurrency 1 -l warning")


def _meta(name: str, namespace: str | None = None) -> dict:
    meta = {"name": name, "labels": {"app.kubernetes.io/name": "meshlab-edge", "app.kubernetes.io/managed-by": "meshlab"}}
    return {**meta, "namespace": namespace} if namespace else meta


def program_files() -> dict[str, str]:
    """The controller program as the pod runs it: the two modules' own source, nothing else."""
    return {f"{m.__name__.rsplit('.', 1)[-1]}.py": Path(m.__file__).read_text() for m in (translate, controller)}


def bootstrap() -> dict:
    """The local edge's bootstrap plus a static readiness listener the kubelet can reach."""
    return {**translate.bootstrap(), "static_resources": {"listeners": [envoyconf.readiness_listener()]}}


def rbac(edge_namespace: str, watched_namespace: str) -> list[dict]:
    """ServiceAccount `edge`, and a Role + RoleBinding in the watched namespace: read Ingresses, Services, EndpointSlices."""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(ROLE, watched_namespace),
            "rules": [{"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": list(_READ)},
                      {"apiGroups": [""], "resources": ["services"], "verbs": list(_READ)},
                      {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": list(_READ)}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(ROLE, watched_namespace),
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
               "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": edge_namespace}]}
    return [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME, edge_namespace)}, role, binding]


def ingress_class() -> dict:
    """IngressClass `edge` (the class meshlab's stage manifests name), served by meshlab's controller."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": _meta(INGRESS_CLASS),
            "spec": {"controller": CONTROLLER}}


def config_maps(edge_namespace: str) -> list[dict]:
    """`edge-envoy` (Envoy's bootstrap) and `edge-controller` (the controller program)."""
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("edge-envoy", edge_namespace),
             "data": {"envoy.json": json.dumps(bootstrap(), indent=1)}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("edge-controller", edge_namespace),
             "data": program_files()}]


def config_hash(edge_namespace: str) -> str:
    """A digest of what the pod reads from its ConfigMaps (running pods would not notice a new program)."""
    return hashlib.sha1(json.dumps([c["data"] for c in config_maps(edge_namespace)], sort_keys=True).encode()).hexdigest()[:12]


def deployment(edge_namespace: str, watched_namespace: str, host_port: int | None = None) -> dict:
    """One edge pod; with host_port its edge port is that port of the node labelled meshlab.io/edge (kind)."""
    http = {"name": "http", "containerPort": translate.EDGE_PORT, **({"hostPort": host_port} if host_port else {})}
    identity = [shop.field_env("POD_NAME", "metadata.name"), shop.field_env("NODE_NAME", "spec.nodeName")]
    config = {"name": "config", "mountPath": CONFIG_DIR}
    controller_container = {
        "name": "controller", "image": CONTROLLER_IMAGE, "command": ["python", f"{PROGRAM_DIR}/controller.py"],
        "env": [{"name": "WATCH_NAMESPACES", "value": watched_namespace}, {"name": "EDGE_CONFIG_DIR", "value": CONFIG_DIR},
                {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}, {"name": "PYTHONUNBUFFERED", "value": "1"}],
        "volumeMounts": [config, {"name": "program", "mountPath": PROGRAM_DIR, "readOnly": True}],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
    }
    envoy_container = {
        "name": "envoy", "image": ENVOY_IMAGE, "args": ["sh", "-c", WAIT_THEN_ENVOY], "env": identity,
        "ports": [http, {"name": "envoy-admin", "containerPort": translate.ADMIN_PORT}],  # the admin: loopback only
        "readinessProbe": {"httpGet": {"path": "/ready", "port": envoyconf.READY_PORT}, "periodSeconds": 1},
        "volumeMounts": [{**config, "readOnly": True}, {"name": "bootstrap", "mountPath": BOOTSTRAP_DIR, "readOnly": True}],
    }
    pod = {"serviceAccountName": NAME, "terminationGracePeriodSeconds": 5,
           "containers": [controller_container, envoy_container],
           "volumes": [{"name": "config", "emptyDir": {}},
                       {"name": "bootstrap", "configMap": {"name": "edge-envoy"}},
                       {"name": "program", "configMap": {"name": "edge-controller"}}]}
    if host_port:
        pod["nodeSelector"] = {EDGE_NODE_LABEL: "true"}
        pod["tolerations"] = [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(NAME, edge_namespace),
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"},  # one hostPort: the old pod must go first
                     "selector": {"matchLabels": dict(POD_LABELS)},
                     "template": {"metadata": {"labels": dict(POD_LABELS),
                                               "annotations": {CONFIG_HASH: config_hash(edge_namespace)}},
                                  "spec": pod}}}


def service(edge_namespace: str) -> dict:
    """Service `edge`: port 80 -> the edge listener (kube's entry URL forwards to it)."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(NAME, edge_namespace),
            "spec": {"selector": dict(POD_LABELS), "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}]}}


def documents(edge_namespace: str, watched_namespace: str, host_port: int | None = None,
              with_namespace: bool = False) -> list[dict]:
    """Every object of the edge: (its Namespace,) RBAC, IngressClass, ConfigMaps, Deployment, Service."""
    namespace = [{"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(edge_namespace)}] if with_namespace else []
    return [*namespace, *rbac(edge_namespace, watched_namespace), ingress_class(), *config_maps(edge_namespace),
            deployment(edge_namespace, watched_namespace, host_port), service(edge_namespace)]
