"""Per-kind rules (ConfigMap, Service, Deployment, DaemonSet, Ingress, IngressClass), as a table by kind."""

from __future__ import annotations

import ipaddress

from . import rules
from .fielderr import FieldError, duplicate, invalid, many, not_supported, required, too_long
from .meta import labels, name_errors, template_meta
from .podspec import PROTOCOLS, pod_spec, port_or_name

CONFIGMAP_MAX_BYTES = 1024 * 1024
SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")
DEPLOYMENT_STRATEGIES = ("Recreate", "RollingUpdate")
DAEMONSET_STRATEGIES = ("OnDelete", "RollingUpdate")


def _spec(doc: dict) -> dict:
    return doc.get("spec") if isinstance(doc.get("spec"), dict) else {}


def configmap(doc: dict) -> list[FieldError]:
    """Keys match [-._a-zA-Z0-9]+ (never `.`/`..`), unique across data and binaryData, 1 MiB in all."""
    errors, size = [], 0
    data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
    binary = doc.get("binaryData") if isinstance(doc.get("binaryData"), dict) else {}
    for field, values in (("data", data), ("binaryData", binary)):
        for key, value in values.items():
            errors += many(f"{field}[{key}]", str(key), rules.config_key(str(key)))
            size += len(str(key).encode()) + len(str(value).encode())
    errors += [duplicate(f"data[{key}]", key) for key in data if key in binary]
    return errors + ([too_long("", CONFIGMAP_MAX_BYTES)] if size > CONFIGMAP_MAX_BYTES else [])


def service(doc: dict) -> list[FieldError]:
    """Ports (numbers, names, protocols, target ports, no duplicates), type and selector."""
    spec = _spec(doc)
    errors = []
    kind = spec.get("type", "ClusterIP")
    if kind not in SERVICE_TYPES:
        errors.append(not_supported("spec.type", kind, SERVICE_TYPES))
    ports = spec.get("ports") if isinstance(spec.get("ports"), list) else []
    if not ports and spec.get("clusterIP") != "None" and kind != "ExternalName":
        errors.append(required("spec.ports"))
    names, pairs = set(), set()
    for i, port in enumerate(ports):
        if not isinstance(port, dict):
            continue
        at = f"spec.ports[{i}]"
        name = port.get("name")
        if not name and len(ports) > 1:
            errors.append(required(f"{at}.name"))
        elif name:
            errors += many(f"{at}.name", name, rules.DNS1123_LABEL.check(str(name)))
            errors += [duplicate(f"{at}.name", name)] if name in names else []
            names.add(name)
        number, protocol = port.get("port"), port.get("protocol", "TCP")
        if rules.is_int(number):
            errors += many(f"{at}.port", number, rules.port_number(number))
        if protocol not in PROTOCOLS:
            errors.append(not_supported(f"{at}.protocol", protocol, PROTOCOLS))
        if port.get("targetPort") not in (None, 0, ""):
            errors += port_or_name(port["targetPort"], f"{at}.targetPort")
        if (number, protocol) in pairs:
            errors.append(duplicate(at, f"{number}/{protocol}"))
        pairs.add((number, protocol))
        if isinstance(port.get("appProtocol"), str):
            errors += many(f"{at}.appProtocol", port["appProtocol"], rules.qualified_name(port["appProtocol"]))
    return errors + labels(spec.get("selector"), "spec.selector")


def _workload(doc: dict, strategies: tuple, strategy_field: str) -> list[FieldError]:
    """What Deployments and DaemonSets share: a non-empty selector that matches the template's labels."""
    spec = _spec(doc)
    errors = []
    selector = spec.get("selector")
    template = spec.get("template") if isinstance(spec.get("template"), dict) else {}
    template_labels = (template.get("metadata") or {}).get("labels") or {}
    if not isinstance(selector, dict):
        errors.append(required("spec.selector"))
    else:
        match = selector.get("matchLabels") or {}
        errors += labels(match, "spec.selector.matchLabels")
        if not match and not selector.get("matchExpressions"):
            errors.append(invalid("spec.selector", selector, f"empty selector is invalid for {doc['kind'].lower()}"))
        elif isinstance(match, dict) and isinstance(template_labels, dict) and \
                any(template_labels.get(k) != v for k, v in match.items()):
            errors.append(invalid("spec.template.metadata.labels", template_labels, "`selector` does not match template `labels`"))
    strategy = (spec.get(strategy_field) or {}).get("type") if isinstance(spec.get(strategy_field), dict) else None
    if strategy is not None and strategy not in strategies:
        errors.append(not_supported(f"spec.{strategy_field}.type", strategy, strategies))
    errors += template_meta(template.get("metadata"), "spec.template.metadata")
    return errors + pod_spec(template.get("spec"), "spec.template.spec")


def deployment(doc: dict) -> list[FieldError]:
    """replicas, revisionHistoryLimit and minReadySeconds >= 0, plus the workload rules."""
    spec = _spec(doc)
    errors = [invalid(f"spec.{field}", spec[field], "must be greater than or equal to 0")
              for field in ("replicas", "revisionHistoryLimit", "minReadySeconds")
              if rules.is_int(spec.get(field)) and spec[field] < 0]
    return errors + _workload(doc, DEPLOYMENT_STRATEGIES, "strategy")


def daemonset(doc: dict) -> list[FieldError]:
    """The workload rules with the DaemonSet's update strategies."""
    return _workload(doc, DAEMONSET_STRATEGIES, "updateStrategy")


def _backend(backend, path: str) -> list[FieldError]:
    """Exactly one of service/resource; a service names a Service and exactly one port (name or number)."""
    if not isinstance(backend, dict):
        return [required(path)]
    has_service, has_resource = backend.get("service") is not None, backend.get("resource") is not None
    if has_service and has_resource:
        return [invalid(path, "", "cannot set both resource and service backends")]
    if has_resource:
        return []
    if not has_service:
        return [invalid(path, "", "resource or service backend is required")]
    svc = backend["service"] if isinstance(backend["service"], dict) else {}
    errors = name_errors(svc.get("name"), f"{path}.service.name", rules.DNS1035_LABEL)
    port = svc.get("port") if isinstance(svc.get("port"), dict) else {}
    name, number = port.get("name"), port.get("number")
    if name and number is not None:
        return errors + [invalid(f"{path}.service.port", "", "cannot set both port name & port number")]
    if name:
        return errors + many(f"{path}.service.port.name", name, rules.port_name(str(name)))
    if rules.is_int(number):
        return errors + many(f"{path}.service.port.number", number, rules.port_number(number))
    return errors + [invalid(f"{path}.service.port", "", "port name or number is required")]


def _http_path(item, path: str) -> list[FieldError]:
    if not isinstance(item, dict):
        return []
    errors, kind, value = [], item.get("pathType"), item.get("path", "")
    if kind is None:
        errors.append(required(f"{path}.pathType", "pathType must be specified"))
    elif kind not in PATH_TYPES:
        errors.append(not_supported(f"{path}.pathType", kind, PATH_TYPES))
    if isinstance(value, str) and (kind in ("Exact", "Prefix") or value) and not value.startswith("/"):
        errors.append(invalid(f"{path}.path", value, "must be an absolute path"))
    elif isinstance(value, str) and kind in ("Exact", "Prefix"):
        for bad in ("//", "/./", "/../", "%2f", "%2F"):
            if bad in value:
                errors.append(invalid(f"{path}.path", value, f"must not contain '{bad}'"))
        for end in ("/..", "/."):
            if value.endswith(end):
                errors.append(invalid(f"{path}.path", value, f"cannot end with '{end}'"))
    return errors + _backend(item.get("backend"), f"{path}.backend")


def _host(host, path: str) -> list[FieldError]:
    try:
        ipaddress.ip_address(host)
        return [invalid(path, host, "must be a DNS name, not an IP address")]
    except ValueError:
        pass
    if host.startswith("*"):
        return many(path, host, rules.WILDCARD_SUBDOMAIN.check(host))
    return many(path, host, rules.DNS1123_SUBDOMAIN.check(host))


def ingress(doc: dict) -> list[FieldError]:
    """Rules or a default backend; hosts; pathType enum; absolute paths; one backend per path."""
    spec = _spec(doc)
    rules_list = spec.get("rules") if isinstance(spec.get("rules"), list) else []
    errors = []
    if not rules_list and spec.get("defaultBackend") is None:
        errors.append(invalid("spec", spec.get("rules") or [], "either `defaultBackend` or `rules` must be specified"))
    if spec.get("defaultBackend") is not None:
        errors += _backend(spec["defaultBackend"], "spec.defaultBackend")
    if isinstance(spec.get("ingressClassName"), str):
        errors += many("spec.ingressClassName", spec["ingressClassName"], rules.DNS1123_SUBDOMAIN.check(spec["ingressClassName"]))
    for i, rule in enumerate(rules_list):
        if not isinstance(rule, dict):
            continue
        if isinstance(rule.get("host"), str) and rule["host"]:
            errors += _host(rule["host"], f"spec.rules[{i}].host")
        http = rule.get("http")
        if http is None:
            continue
        paths = http.get("paths") if isinstance(http, dict) else None
        if not paths:
            errors.append(required(f"spec.rules[{i}].http.paths"))
        for j, item in enumerate(paths if isinstance(paths, list) else []):
            errors += _http_path(item, f"spec.rules[{i}].http.paths[{j}]")
    return errors


def ingress_class(doc: dict) -> list[FieldError]:
    """spec.controller is required, a domain-prefixed path of at most 250 characters."""
    controller = _spec(doc).get("controller")
    if not controller:
        return [required("spec.controller")]
    return [invalid("spec.controller", controller, "must be no more than 250 characters")] if len(str(controller)) > 250 else []


SPECS = {"ConfigMap": configmap, "Service": service, "Deployment": deployment, "DaemonSet": daemonset,
         "Ingress": ingress, "IngressClass": ingress_class}
