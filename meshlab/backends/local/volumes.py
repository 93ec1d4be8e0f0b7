"""Project ConfigMaps into a pod's folder the way the kubelet does (atomic ..data swap)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ...envoy.configcheck import configmap_files  # noqa: F401  (shared with the kind/kube config check)
from . import envoy_patch
from .paths import inside

DATA = "..data"


def project(folder: Path, files: dict[str, str]) -> None:
    """Write files as a new timestamped dir, then swap the ..data symlink atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    target = folder / stamp
    target.mkdir()
    for key, text in files.items():
        path = inside(target, key)  # a key or items path never leaves the volume (checked at apply too)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    old = os.readlink(folder / DATA) if (folder / DATA).is_symlink() else None
    tmp = folder / "..data_tmp"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(stamp, tmp)
    os.replace(tmp, folder / DATA)
    tops = top_entries(files)
    for top in tops:
        link = folder / top
        if not link.is_symlink():
            os.symlink(f"{DATA}/{top}", link)
    for entry in folder.iterdir():
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in tops:
            entry.unlink()
    if old and old != stamp:
        shutil.rmtree(folder / old, ignore_errors=True)


def top_entries(files: dict[str, str]) -> set[str]:
    """The first element of each file's path: what the kubelet links from the volume's root into ..data."""
    return {key.split("/")[0] for key in files}


def envoy_files(files: dict[str, str], pod_ip: str, mounts: dict[str, str], source: str) -> dict[str, str]:
    """Apply the local-only Envoy patch to the YAML/JSON files an Envoy container reads."""
    return {key: envoy_patch.patch_file_text(text, pod_ip, mounts, f"{source}/{key}")
            if key.endswith((".yaml", ".yml", ".json")) else text
            for key, text in files.items()}
