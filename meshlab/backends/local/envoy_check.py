"""Apply-time check of the Envoy config a workload's proxies would load, so bad config never lands."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import yaml

from ...envoy import validate
from ..base import MeshlabError
from . import envoy_patch, volumes
from .pods import is_envoy

HINT = "nothing was changed and the previous config keeps serving; fix the Envoy config and apply again"


def _key(doc: dict) -> tuple:
    meta = doc["metadata"]
    return doc["kind"], meta.get("namespace", "default"), meta["name"]


def affected(objects: dict, docs: list[dict]) -> list[tuple[dict, dict]]:
    """(workload, envoy container) pairs whose config changes with these docs."""
    incoming_maps = {(d["metadata"].get("namespace", "default"), d["metadata"]["name"]) for d in docs if d["kind"] == "ConfigMap"}
    incoming = {_key(d) for d in docs}
    pairs = []
    for key, doc in objects.items():
        if key[0] not in ("Deployment", "DaemonSet"):
            continue
        spec = doc["spec"]["template"].get("spec") or {}
        maps = {v["name"]: v["configMap"]["name"] for v in spec.get("volumes") or [] if v.get("configMap")}
        for container in spec.get("containers") or []:
            if not is_envoy(container):
                continue
            mounted = {maps.get(m["name"]) for m in container.get("volumeMounts") or []}
            ns = key[1]
            if _key(doc) in incoming or any((ns, name) in incoming_maps for name in mounted):
                pairs.append((doc, container))
    return pairs


def _bootstrap_arg(container: dict) -> str:
    argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    for flag in ("-c", "--config-path"):
        if flag in argv and argv.index(flag) + 1 < len(argv):
            return argv[argv.index(flag) + 1]
    return "/etc/envoy/envoy.yaml"


def materialize(doc: dict, container: dict, configmaps: dict, folder: Path, pod_ip: str, dns) -> dict | None:
    """Write the container's configMap volumes as the pod would see them; return its patched bootstrap."""
    spec = doc["spec"]["template"].get("spec") or {}
    ns = doc["metadata"].get("namespace", "default")
    volume_specs = {v["name"]: v for v in spec.get("volumes") or []}
    mounts = {m["mountPath"]: str(folder / m["name"]) for m in container.get("volumeMounts") or []}
    for mount in container.get("volumeMounts") or []:
        volume = volume_specs.get(mount["name"]) or {}
        cm = configmaps.get((ns, (volume.get("configMap") or {}).get("name")))
        if cm is None:
            return None  # the pod would wait for its ConfigMap; nothing to check yet
        files = volumes.configmap_files(cm, volume["configMap"].get("items"))
        files = volumes.envoy_files(files, pod_ip, mounts, f"ConfigMap/{cm['metadata']['name']}")
        (folder / mount["name"]).mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / mount["name"] / name).write_text(text)
    path = envoy_patch.patch_paths(_bootstrap_arg(container), mounts)
    try:
        bootstrap = validate.read_config_file(path)
    except FileNotFoundError:
        return None  # reported when the pod starts, as on Kubernetes
    except (ValueError, yaml.YAMLError) as exc:
        raise MeshlabError(f"{doc['kind']}/{doc['metadata']['name']}: Envoy bootstrap {_bootstrap_arg(container)}: "
                           f"not valid YAML/JSON: {str(exc).splitlines()[0]}", HINT) from None
    return envoy_patch.patch_bootstrap(bootstrap, pod_ip, mounts, dns)


def _label(doc: dict, container: dict, docs: list[dict]) -> str:
    """Name what the learner changed: the applied ConfigMap the proxy reads, else the workload."""
    spec = doc["spec"]["template"].get("spec") or {}
    mounted = {v["configMap"]["name"] for v in spec.get("volumes") or [] if v.get("configMap")
               and any(m["name"] == v["name"] for m in container.get("volumeMounts") or [])}
    applied = [d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] in mounted]
    where = f"{doc['kind']}/{doc['metadata']['name']} container {container['name']}"
    return f"ConfigMap/{applied[0]} (read by {where})" if applied else where


async def check(objects: dict, docs: list[dict], octet: int, dns, source: str) -> None:
    """Raise a one-line MeshlabError when a proxy would reject its config after these docs land."""
    overlay = dict(objects)
    for doc in docs:
        overlay[_key(doc)] = doc
    configmaps = {(k[1], k[2]): d for k, d in overlay.items() if k[0] == "ConfigMap"}
    pairs = affected(overlay, docs)
    if not pairs:
        return
    with tempfile.TemporaryDirectory(prefix="meshlab-envoy-check-") as tmp:
        jobs, labels = [], []
        for index, (doc, container) in enumerate(pairs):
            bootstrap = materialize(doc, container, configmaps, Path(tmp) / str(index), f"127.{octet}.0.3", dns)
            if bootstrap is not None:
                jobs.append(validate.check(bootstrap))
                labels.append(_label(doc, container, docs))
        for label, problem in zip(labels, await asyncio.gather(*jobs)):
            if problem:
                raise MeshlabError(f"{source}: Envoy config in {label} is invalid: {problem}", HINT)
