"""Pod template rules (ValidatePodSpec): containers, ports, env, probes, volumes and their mounts."""

from __future__ import annotations

from . import rules
from .fielderr import FieldError, duplicate, invalid, many, not_found, not_supported, required
from .meta import labels

PROTOCOLS = ("SCTP", "TCP", "UDP")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROBE_NUMBERS = ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold")
MAX_MODE = 0o777


def port_or_name(value, path: str) -> list[FieldError]:
    """An IntOrString port: a number 1-65535 or an IANA service name."""
    if rules.is_int(value):
        return many(path, value, rules.port_number(value))
    if isinstance(value, str):
        return many(path, value, rules.port_name(value)) if value else [required(path)]
    return []


def _nonnegative(value, path: str) -> list[FieldError]:
    return [invalid(path, value, "must be greater than or equal to 0")] if rules.is_int(value) and value < 0 else []


def _ports(ports, path: str) -> list[FieldError]:
    errors, names = [], set()
    for i, port in enumerate(ports if isinstance(ports, list) else []):
        at = f"{path}[{i}]"
        if not isinstance(port, dict):
            continue
        name = port.get("name")
        if isinstance(name, str) and name:
            errors += many(f"{at}.name", name, rules.port_name(name))
            if name in names:
                errors.append(duplicate(f"{at}.name", name))
            names.add(name)
        if "containerPort" not in port:
            errors.append(required(f"{at}.containerPort"))
        elif rules.is_int(port["containerPort"]):
            errors += many(f"{at}.containerPort", port["containerPort"], rules.port_number(port["containerPort"]))
        host = port.get("hostPort")
        if rules.is_int(host) and host != 0:
            errors += many(f"{at}.hostPort", host, rules.port_number(host))
        if "protocol" in port and port["protocol"] not in PROTOCOLS:
            errors.append(not_supported(f"{at}.protocol", port["protocol"], PROTOCOLS))
    return errors


def _env(env, path: str) -> list[FieldError]:
    errors = []
    for i, item in enumerate(env if isinstance(env, list) else []):
        if not isinstance(item, dict):
            continue
        name = item.get("name")
        errors += [required(f"{path}[{i}].name")] if not name else many(f"{path}[{i}].name", name, rules.env_var_name(str(name)))
        if item.get("value") not in (None, "") and item.get("valueFrom") is not None:
            errors.append(invalid(f"{path}[{i}].valueFrom", "", "may not be specified when `value` is not empty"))
    return errors


def _probe(probe, path: str) -> list[FieldError]:
    if not isinstance(probe, dict):
        return []
    errors = [e for field in PROBE_NUMBERS for e in _nonnegative(probe.get(field), f"{path}.{field}")]
    handlers = [h for h in ("httpGet", "tcpSocket", "exec", "grpc") if probe.get(h) is not None]
    if not handlers:
        errors.append(required(path, "must specify a handler type"))
    for handler in ("httpGet", "tcpSocket"):
        if isinstance(probe.get(handler), dict):
            errors += port_or_name(probe[handler].get("port"), f"{path}.{handler}.port")
    scheme = (probe.get("httpGet") or {}).get("scheme") if isinstance(probe.get("httpGet"), dict) else None
    if scheme is not None and scheme not in ("HTTP", "HTTPS"):
        errors.append(not_supported(f"{path}.httpGet.scheme", scheme, ("HTTP", "HTTPS")))
    return errors


def _mounts(mounts, volumes: set, path: str) -> list[FieldError]:
    errors, seen = [], set()
    for i, mount in enumerate(mounts if isinstance(mounts, list) else []):
        at = f"{path}[{i}]"
        if not isinstance(mount, dict):
            continue
        name, where = mount.get("name"), mount.get("mountPath")
        if not name:
            errors.append(required(f"{at}.name"))
        elif name not in volumes:
            errors.append(not_found(f"{at}.name", name))
        if not where:
            errors.append(required(f"{at}.mountPath"))
        elif where in seen:
            errors.append(invalid(f"{at}.mountPath", where, "must be unique"))
        seen.add(where)
        if isinstance(mount.get("subPath"), str) and mount["subPath"]:
            errors += many(f"{at}.subPath", mount["subPath"], rules.local_path(mount["subPath"], reserved=False))
    return errors


def _containers(spec: dict, volumes: set, path: str) -> list[FieldError]:
    containers = spec.get("containers")
    if not containers:
        return [required(f"{path}.containers")]
    errors, names = [], set()
    for i, c in enumerate(containers if isinstance(containers, list) else []):
        at = f"{path}.containers[{i}]"
        if not isinstance(c, dict):
            continue
        name = c.get("name")
        errors += [required(f"{at}.name")] if not name else many(f"{at}.name", name, rules.DNS1123_LABEL.check(str(name)))
        if name in names:
            errors.append(duplicate(f"{at}.name", name))
        names.add(name)
        if not c.get("image"):
            errors.append(required(f"{at}.image"))
        if "imagePullPolicy" in c and c["imagePullPolicy"] not in PULL_POLICIES:
            errors.append(not_supported(f"{at}.imagePullPolicy", c["imagePullPolicy"], PULL_POLICIES))
        errors += _ports(c.get("ports"), f"{at}.ports") + _env(c.get("env"), f"{at}.env")
        errors += _probe(c.get("readinessProbe"), f"{at}.readinessProbe") + _probe(c.get("livenessProbe"), f"{at}.livenessProbe")
        errors += _mounts(c.get("volumeMounts"), volumes, f"{at}.volumeMounts")
    return errors


def _mode(value, path: str) -> list[FieldError]:
    if rules.is_int(value) and not 0 <= value <= MAX_MODE:
        return [invalid(path, value, "must be a number between 0 and 0777 (octal), both inclusive")]
    return []


def _volumes(spec: dict, path: str) -> tuple[list[FieldError], set]:
    errors, names = [], set()
    for i, vol in enumerate(spec.get("volumes") if isinstance(spec.get("volumes"), list) else []):
        at = f"{path}.volumes[{i}]"
        if not isinstance(vol, dict):
            continue
        name = vol.get("name")
        errors += [required(f"{at}.name")] if not name else many(f"{at}.name", name, rules.DNS1123_LABEL.check(str(name)))
        if name in names:
            errors.append(duplicate(f"{at}.name", name))
        names.add(name)
        cm = vol.get("configMap")
        if isinstance(cm, dict):
            errors += _mode(cm.get("defaultMode"), f"{at}.configMap.defaultMode")
            for j, item in enumerate(cm.get("items") if isinstance(cm.get("items"), list) else []):
                errors += _item(item, f"{at}.configMap.items[{j}]")
    return errors, names


def _item(item, path: str) -> list[FieldError]:
    """A KeyToPath: a key, and a relative path that never climbs out of the volume."""
    if not isinstance(item, dict):
        return []
    errors = [] if item.get("key") else [required(f"{path}.key")]
    target = item.get("path")
    if not target:
        errors.append(required(f"{path}.path"))
    elif isinstance(target, str):
        errors += many(f"{path}.path", target, rules.local_path(target))
    return errors + _mode(item.get("mode"), f"{path}.mode")


def pod_spec(spec, path: str, restart_policies=("Always",)) -> list[FieldError]:
    """Every rule of a pod template's spec that the local runtime's fields touch."""
    if not isinstance(spec, dict):
        return [required(path)]
    errors, volumes = _volumes(spec, path)
    errors += _containers(spec, volumes, path)
    policy = spec.get("restartPolicy")
    if policy is not None and policy not in restart_policies:
        errors.append(not_supported(f"{path}.restartPolicy", policy, restart_policies))
    account = spec.get("serviceAccountName")
    if isinstance(account, str) and account:
        errors += many(f"{path}.serviceAccountName", account, rules.DNS1123_SUBDOMAIN.check(account))
    return errors + labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
