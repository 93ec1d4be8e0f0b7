"""metadata rules (ValidateObjectMeta): the name rule of each kind, namespace, labels, annotations."""

from __future__ import annotations

from . import rules
from .fielderr import FieldError, many, required, too_long

# kind -> (API group for messages, name rule, namespaced): the API server's choice per kind
KINDS = {
    "Namespace": ("", rules.DNS1123_LABEL, False),
    "ConfigMap": ("", rules.DNS1123_SUBDOMAIN, True),
    "Secret": ("", rules.DNS1123_SUBDOMAIN, True),
    "ServiceAccount": ("", rules.DNS1123_SUBDOMAIN, True),
    "Service": ("", rules.DNS1035_LABEL, True),
    "Pod": ("", rules.DNS1123_SUBDOMAIN, True),
    "Deployment": ("apps", rules.DNS1123_SUBDOMAIN, True),
    "DaemonSet": ("apps", rules.DNS1123_SUBDOMAIN, True),
    "ReplicaSet": ("apps", rules.DNS1123_SUBDOMAIN, True),
    "Ingress": ("networking.k8s.io", rules.DNS1123_SUBDOMAIN, True),
    "IngressClass": ("networking.k8s.io", rules.DNS1123_SUBDOMAIN, False),
}
CUSTOM_NAME = rules.DNS1123_SUBDOMAIN  # custom resources (Istio's kinds): a DNS subdomain
ANNOTATIONS_MAX_BYTES = 256 * 1024


def group_of(doc: dict) -> str:
    """The API group of an object (`` for the core group)."""
    api = str(doc.get("apiVersion") or "")
    return api.rpartition("/")[0] if "/" in api else ""


def qualified_kind(doc: dict) -> str:
    """`Deployment.apps`, `Ingress.networking.k8s.io`, `Service`: the kind as the API server names it."""
    group = group_of(doc)
    return f"{doc.get('kind')}.{group}" if group else str(doc.get("kind"))


def namespaced(doc: dict) -> bool:
    """False for the cluster-scoped kinds (Namespace, IngressClass, ...)."""
    return KINDS.get(doc.get("kind"), ("", None, True))[2]


def labels(value, path: str) -> list[FieldError]:
    """ValidateLabels: qualified-name keys and label values."""
    if not isinstance(value, dict):
        return []
    errors = []
    for key, val in value.items():
        errors += many(path, key, rules.qualified_name(str(key)))
        if isinstance(val, str):
            errors += many(path, val, rules.LABEL_VALUE.check(val))
    return errors


def annotations(value, path: str) -> list[FieldError]:
    """ValidateAnnotations: qualified-name keys (checked lower-cased) and 256 KiB in all."""
    if not isinstance(value, dict):
        return []
    errors = []
    for key in value:
        errors += many(path, key, rules.qualified_name(str(key).lower()))
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in value.items())
    if size > ANNOTATIONS_MAX_BYTES:
        errors.append(too_long(path, ANNOTATIONS_MAX_BYTES))
    return errors


def object_meta(doc: dict, path: str = "metadata") -> list[FieldError]:
    """The rules every object's metadata follows."""
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = meta.get("name")
    errors = []
    rule = KINDS.get(doc.get("kind"), ("", CUSTOM_NAME, True))[1]
    if not name:
        errors.append(required(f"{path}.name", "name or generateName is required"))
    elif isinstance(name, str):
        errors += many(f"{path}.name", name, rule.check(name))
    namespace = meta.get("namespace")
    if namespaced(doc) and isinstance(namespace, str) and namespace:
        errors += many(f"{path}.namespace", namespace, rules.DNS1123_LABEL.check(namespace))
    return errors + labels(meta.get("labels"), f"{path}.labels") + annotations(meta.get("annotations"), f"{path}.annotations")


def template_meta(meta, path: str) -> list[FieldError]:
    """A pod template's metadata: labels and annotations (its name is not used)."""
    meta = meta if isinstance(meta, dict) else {}
    return labels(meta.get("labels"), f"{path}.labels") + annotations(meta.get("annotations"), f"{path}.annotations")


def name_errors(value, path: str, rule: rules.Rule) -> list[FieldError]:
    """A reference to another object by name: required, then its kind's name rule."""
    if not value:
        return [required(path)]
    return many(path, value, rule.check(str(value)))

