"""Which Envoys an apply changes, their config as the pods would read it, checked with `envoy --mode validate`.

Backend-neutral: the local runtime and the kind/kube backends call `check` before they store anything.
Where a runtime changes what Envoy reads (the local one rewrites addresses and adds a DNS resolver), it
passes its own `Prepare`; a cluster runs the files as they are, so `Prepare()` only points the mount
paths the bootstrap names (`/etc/envoy/lds.yaml`) into a temporary folder.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from ..backends.base import MeshlabError
from . import validate

HINT = "nothing was changed and the previous config keeps serving; fix the Envoy config and apply again"
WORKLOADS = ("Deployment", "DaemonSet")
ACCEPTED: dict[str, bool] = {}  # inputs Envoy accepted already in this process (a stage applied again is not re-run)
ACCEPTED_MAX = 512


def is_envoy(container: dict) -> bool:
    """True when the container runs Envoy's own image (an Istio sidecar gets its config over xDS, not files)."""
    return str(container.get("image", "")).split(":")[0].endswith("envoyproxy/envoy")


def configmap_files(configmap: dict, items: list | None) -> dict[str, str]:
    """The files a configMap volume shows: all keys, or only the listed items."""
    data = configmap.get("data") or {}
    if not items:
        return {key: str(value) for key, value in data.items()}
    return {item.get("path", item["key"]): str(data.get(item["key"], "")) for item in items}


def patch_paths(config, mounts: dict[str, str]):
    """Strings under a volume's mountPath point into the folder that holds that volume's files."""
    if isinstance(config, dict):
        return {key: patch_paths(value, mounts) for key, value in config.items()}
    if isinstance(config, list):
        return [patch_paths(item, mounts) for item in config]
    if isinstance(config, str):
        for mount_path, local in mounts.items():
            if config == mount_path or config.startswith(mount_path.rstrip("/") + "/"):
                return local + config[len(mount_path.rstrip("/")):]
    return config


def key(doc: dict, namespace: str = "default") -> tuple:
    """(kind, namespace, name) of an object; `namespace` for one that names none."""
    meta = doc["metadata"]
    return doc["kind"], meta.get("namespace") or namespace, meta["name"]


def relevant(docs: list[dict]) -> bool:
    """Whether an apply can change any Envoy's config (a ConfigMap, or a workload that runs Envoy)."""
    return any(d.get("kind") == "ConfigMap" or (d.get("kind") in WORKLOADS and any(
        is_envoy(c) for c in (((d.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []))
        for d in docs)


def affected(objects: dict, docs: list[dict], namespace: str = "default") -> list[tuple[dict, dict]]:
    """(workload, envoy container) pairs whose config changes with these docs."""
    incoming_maps = {key(d, namespace)[1:] for d in docs if d["kind"] == "ConfigMap"}
    incoming = {key(d, namespace) for d in docs}
    pairs = []
    for k, doc in objects.items():
        if k[0] not in WORKLOADS:
            continue
        spec = doc["spec"]["template"].get("spec") or {}
        maps = {v["name"]: v["configMap"]["name"] for v in spec.get("volumes") or [] if v.get("configMap")}
        for container in spec.get("containers") or []:
            if not is_envoy(container):
                continue
            mounted = {maps.get(m["name"]) for m in container.get("volumeMounts") or []}
            if key(doc, namespace) in incoming or any((k[1], name) in incoming_maps for name in mounted):
                pairs.append((doc, container))
    return pairs


def bootstrap_arg(container: dict) -> str:
    """The bootstrap path an Envoy container is started with (`-c`), Envoy's image default otherwise."""
    argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    for flag in ("-c", "--config-path"):
        if flag in argv and argv.index(flag) + 1 < len(argv):
            return argv[argv.index(flag) + 1]
    return "/etc/envoy/envoy.yaml"


def label(doc: dict, container: dict, docs: list[dict]) -> str:
    """Name what the learner changed: the applied ConfigMap the proxy reads, else the workload."""
    spec = doc["spec"]["template"].get("spec") or {}
    mounted = {v["configMap"]["name"] for v in spec.get("volumes") or [] if v.get("configMap")
               and any(m["name"] == v["name"] for m in container.get("volumeMounts") or [])}
    applied = [d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] in mounted]
    where = f"{doc['kind']}/{doc['metadata']['name']} container {container['name']}"
    return f"ConfigMap/{applied[0]} (read by {where})" if applied else where


class Prepare:
    """What a runtime does to an Envoy's files and bootstrap before they run: here only the path rewrite."""

    key = "as-is"  # names what this preparation does, for the cache of accepted configs

    def files(self, files: dict[str, str], mounts: dict[str, str], source: str) -> dict[str, str]:
        """The YAML/JSON files of one volume, with mount paths pointed at the check folder."""
        out = {}
        for name, text in files.items():
            if not name.endswith((".yaml", ".yml", ".json")):
                out[name] = text
                continue
            try:
                data = yaml.safe_load(text)  # JSON is YAML too
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f"{source}/{name}:{mark.line + 1}" if mark else f"{source}/{name}"
                raise MeshlabError(f"{where}: invalid YAML in Envoy config: {getattr(exc, 'problem', exc)}",
                                   "check the indentation of the Envoy config") from None
            out[name] = yaml.safe_dump(patch_paths(data, mounts), sort_keys=False) if isinstance(data, (dict, list)) else text
        return out

    def bootstrap(self, config: dict, mounts: dict[str, str]) -> dict:
        return patch_paths(config, mounts)


def write_volume(folder: Path, files: dict[str, str]) -> None:
    """Write a volume's files under folder; a key or items path that would leave it is skipped."""
    folder.mkdir(parents=True, exist_ok=True)
    base = folder.resolve()
    for name, text in files.items():
        path = (folder / name).resolve()
        if not path.is_relative_to(base) or path == base:
            continue  # the API server refuses such a path; it must not write outside the check folder here
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def materialize(doc: dict, container: dict, configmaps: dict, folder: Path, prepare: Prepare,
                namespace: str = "default") -> dict | None:
    """Write the container's configMap volumes as the pod would see them; return its prepared bootstrap
    (None when a ConfigMap or the bootstrap is missing: the pod would wait, nothing to check yet)."""
    spec = doc["spec"]["template"].get("spec") or {}
    ns = doc["metadata"].get("namespace") or namespace
    volume_specs = {v["name"]: v for v in spec.get("volumes") or []}
    mounts = {m["mountPath"]: str(folder / m["name"]) for m in container.get("volumeMounts") or []}
    for mount in container.get("volumeMounts") or []:
        volume = volume_specs.get(mount["name"]) or {}
        cm = configmaps.get((ns, (volume.get("configMap") or {}).get("name")))
        if cm is None:
            return None
        files = configmap_files(cm, volume["configMap"].get("items"))
        write_volume(folder / mount["name"], prepare.files(files, mounts, f"ConfigMap/{cm['metadata']['name']}"))
    path = patch_paths(bootstrap_arg(container), mounts)
    try:
        bootstrap = validate.read_config_file(path)
    except FileNotFoundError:
        return None  # reported when the pod starts, as on Kubernetes
    except (ValueError, yaml.YAMLError) as exc:
        raise MeshlabError(f"{doc['kind']}/{doc['metadata']['name']}: Envoy bootstrap {bootstrap_arg(container)}: "
                           f"not valid YAML/JSON: {str(exc).splitlines()[0]}", HINT) from None
    return prepare.bootstrap(bootstrap, mounts)


def inputs_key(doc: dict, container: dict, configmaps: dict, prepare: Prepare, namespace: str) -> str:
    """A hash of everything Envoy's verdict on one container depends on: its spec, the volumes it mounts and their
    ConfigMaps' data, the preparation and the binary."""
    spec = doc["spec"]["template"].get("spec") or {}
    ns = doc["metadata"].get("namespace") or namespace
    mounts = {m["name"] for m in container.get("volumeMounts") or []}
    volumes = [v for v in spec.get("volumes") or [] if v["name"] in mounts]
    data = [(configmaps.get((ns, (v.get("configMap") or {}).get("name"))) or {}).get("data") for v in volumes]
    text = json.dumps([prepare.key, os.environ.get("MESHLAB_ENVOY", ""), container, volumes, data], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


async def check(objects: dict, docs: list[dict], source: str, prepare: Prepare, namespace: str = "default") -> None:
    """Raise a one-line MeshlabError when a proxy would reject its config after these docs land on `objects`
    ({(kind, namespace, name): object} as stored now)."""
    overlay = dict(objects)
    for doc in docs:
        overlay[key(doc, namespace)] = doc
    configmaps = {(k[1], k[2]): d for k, d in overlay.items() if k[0] == "ConfigMap"}
    pairs = affected(overlay, docs, namespace)
    if not pairs:
        return
    with tempfile.TemporaryDirectory(prefix="meshlab-envoy-check-") as tmp:
        jobs, labels, keys = [], [], []
        for index, (doc, container) in enumerate(pairs):
            cache = inputs_key(doc, container, configmaps, prepare, namespace)
            if cache in ACCEPTED:
                continue
            bootstrap = materialize(doc, container, configmaps, Path(tmp) / str(index), prepare, namespace)
            if bootstrap is not None:
                jobs.append(validate.check(bootstrap))
                labels.append(label(doc, container, docs))
                keys.append(cache)
        for where, cache, problem in zip(labels, keys, await asyncio.gather(*jobs)):
            if problem:
                raise MeshlabError(f"{source}: Envoy config in {where} is invalid: {problem}", HINT)
            if len(ACCEPTED) >= ACCEPTED_MAX:
                ACCEPTED.pop(next(iter(ACCEPTED)))
            ACCEPTED[cache] = True


def check_now(objects: dict, docs: list[dict], source: str, prepare: Prepare | None = None,
              namespace: str = "default") -> None:
    """`check` from synchronous code, in a thread of its own (a notebook's thread already runs an event loop)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, check(objects, docs, source, prepare or Prepare(), namespace)).result()
