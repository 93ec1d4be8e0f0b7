"""The Kubernetes subset the local runtime runs; anything else is refused by name."""

from __future__ import annotations

from ..base import MeshlabError

ANY = "*"  # accept whatever is under this key

_META = {"name": ANY, "namespace": ANY, "labels": ANY, "annotations": ANY}
_PROBE = {"httpGet": {"path": ANY, "port": ANY, "scheme": ANY}, "tcpSocket": {"port": ANY},
          "periodSeconds": ANY, "initialDelaySeconds": ANY, "failureThreshold": ANY,
          "successThreshold": ANY, "timeoutSeconds": ANY}
_ENV = {"name": ANY, "value": ANY,
        "valueFrom": {"fieldRef": {"fieldPath": ANY, "apiVersion": ANY}}}
_CONTAINER = {
    "name": ANY, "image": ANY, "imagePullPolicy": ANY, "command": ANY, "args": ANY,
    "env": [_ENV], "ports": [{"containerPort": ANY, "name": ANY, "protocol": ANY, "hostPort": ANY}],
    "readinessProbe": _PROBE, "livenessProbe": _PROBE, "resources": ANY, "workingDir": ANY,
    "volumeMounts": [{"name": ANY, "mountPath": ANY, "readOnly": ANY}],
}
_POD_SPEC = {
    "containers": [_CONTAINER], "volumes": [{"name": ANY, "configMap": {"name": ANY, "items": ANY, "defaultMode": ANY}}],
    "terminationGracePeriodSeconds": ANY, "restartPolicy": ANY, "nodeSelector": ANY, "tolerations": ANY,
    "serviceAccountName": ANY, "automountServiceAccountToken": ANY,
}
_TEMPLATE = {"metadata": _META, "spec": _POD_SPEC}
_TOP = {"apiVersion": ANY, "kind": ANY, "metadata": _META}

SCHEMAS = {
    ("v1", "Namespace"): {**_TOP},
    ("v1", "ConfigMap"): {**_TOP, "data": ANY},
    ("v1", "ServiceAccount"): {**_TOP, "automountServiceAccountToken": ANY},
    ("v1", "Service"): {**_TOP, "spec": {
        "type": ANY, "selector": ANY, "clusterIP": ANY,
        "ports": [{"name": ANY, "port": ANY, "targetPort": ANY, "protocol": ANY, "appProtocol": ANY}]}},
    ("apps/v1", "Deployment"): {**_TOP, "spec": {
        "replicas": ANY, "selector": {"matchLabels": ANY}, "template": _TEMPLATE, "strategy": ANY,
        "revisionHistoryLimit": ANY, "minReadySeconds": ANY}},
    ("apps/v1", "DaemonSet"): {**_TOP, "spec": {
        "selector": {"matchLabels": ANY}, "template": _TEMPLATE, "updateStrategy": ANY}},
    ("networking.k8s.io/v1", "Ingress"): {**_TOP, "spec": {
        "ingressClassName": ANY, "defaultBackend": ANY, "rules": ANY, "tls": ANY}},
    ("networking.k8s.io/v1", "IngressClass"): {**_TOP, "spec": {"controller": ANY}},
}
ISTIO_KINDS = {("networking.istio.io", "VirtualService"), ("networking.istio.io", "DestinationRule"),
               ("networking.istio.io", "ServiceEntry"),
               ("security.istio.io", "PeerAuthentication"), ("security.istio.io", "AuthorizationPolicy")}
ISTIO_VERSIONS = {"networking.istio.io": ("v1", "v1beta1", "v1alpha3"), "security.istio.io": ("v1", "v1beta1")}
SUPPORTED_FIELDPATHS = {"metadata.name", "metadata.namespace", "spec.nodeName", "status.podIP",
                        "status.hostIP", "spec.serviceAccountName"}
SUPPORTED_IMAGES = ("envoyproxy/envoy", "python")
HINT = "the local backend runs a documented subset of Kubernetes; use --backend kind for the full API"


def check_supported(doc: dict, source: str = "<yaml>") -> None:
    """Raise a one-line error naming the first kind or field the local runtime cannot run."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    name = (doc.get("metadata") or {}).get("name")
    if is_istio(doc):
        from ...controlplane import schema  # the control plane owns the Istio subset, on every backend

        return schema.check(doc, source)
    if key not in SCHEMAS:
        raise MeshlabError(f"{source}: {key[1]}/{name}: kind {key[1]} ({key[0]}) is not supported by the local backend", HINT)
    _walk(doc, SCHEMAS[key], f"{key[1]}/{name}", "", source)
    if key[1] == "Service" and (doc.get("spec") or {}).get("type", "ClusterIP") != "ClusterIP":
        raise MeshlabError(f"{source}: {key[1]}/{name}: spec.type {doc['spec']['type']} is not supported locally (ClusterIP only)", HINT)
    cluster_ip = (doc.get("spec") or {}).get("clusterIP") if key[1] == "Service" else None
    if cluster_ip not in (None, "", "None"):
        raise MeshlabError(f"{source}: {key[1]}/{name}: spec.clusterIP {cluster_ip} cannot be chosen locally "
                           "(leave it out, or None for a headless Service)", HINT)
    template = (doc.get("spec") or {}).get("template")
    if template:
        _check_containers(template.get("spec") or {}, f"{key[1]}/{name}", source)


def is_istio(doc: dict) -> bool:
    """True for the Istio kinds (and API versions) the local runtime stores for its control plane."""
    group, _, version = str(doc.get("apiVersion", "")).rpartition("/")
    return (group, doc.get("kind")) in ISTIO_KINDS and version in ISTIO_VERSIONS.get(group, ())


def _walk(value, schema, ref: str, path: str, source: str) -> None:
    if schema == ANY or value is None:
        return
    if isinstance(schema, list):
        for index, item in enumerate(value if isinstance(value, list) else []):
            _walk(item, schema[0], ref, f"{path}[{index}]", source)
        return
    if not isinstance(value, dict):
        return  # type errors are reported by the Kubernetes schema check
    for field, sub in value.items():
        where = f"{path}.{field}" if path else field
        if field not in schema:
            raise MeshlabError(f"{source}: {ref}: field {where} is not supported by the local backend", HINT)
        _walk(sub, schema[field], ref, where, source)


def _check_containers(pod_spec: dict, ref: str, source: str) -> None:
    for container in pod_spec.get("containers") or []:
        image = str(container.get("image", ""))
        if not image.split(":")[0].endswith(SUPPORTED_IMAGES):
            raise MeshlabError(f"{source}: {ref}: container {container.get('name')}: image {image} cannot run locally",
                               "the local backend runs envoyproxy/envoy:* and python:* images; use --backend kind for others")
        for env in container.get("env") or []:
            field = ((env.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            if field and field not in SUPPORTED_FIELDPATHS:
                raise MeshlabError(f"{source}: {ref}: env {env.get('name')}: fieldPath {field} is not supported locally",
                                   f"supported: {', '.join(sorted(SUPPORTED_FIELDPATHS))}")
