"""What every backend shares on disk: valid names and the state folder."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .base import MeshlabError

NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


def check_name(name: str, what: str = "lab name") -> str:
    """Names become part of cluster, node, namespace and socket names, so they must be short DNS labels."""
    if not NAME.match(name or ""):
        raise MeshlabError(f"{what} {name!r} is not valid", "use 1-32 lowercase letters, digits and '-', e.g. 'lab1'")
    return name


def state_root() -> Path:
    """meshlab's state folder: $MESHLAB_HOME, else $XDG_STATE_HOME/meshlab, else ~/.local/state/meshlab."""
    if os.environ.get("MESHLAB_HOME"):
        return Path(os.environ["MESHLAB_HOME"])
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "meshlab"


class StateFile:
    """A JSON file that remembers what a lab made, so a later process can find and undo it."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)

    def update(self, **changes) -> dict:
        data = {**self.read(), **changes}
        self.write(data)
        return data

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
