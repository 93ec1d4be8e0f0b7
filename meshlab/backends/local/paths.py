"""Where a lab's state lives on disk, and which 127.L.0.0/16 block it owns."""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

from ..base import MeshlabError
from ..state import check_name, state_root  # noqa: F401  (part of this module's API)

FIRST_OCTET, LAST_OCTET = 10, 250


def lab_dir(name: str) -> Path:
    """The folder of one lab."""
    return state_root() / "labs" / check_name(name)


def all_labs() -> list[str]:
    """Names of every lab that has a folder."""
    labs = state_root() / "labs"
    return sorted(p.name for p in labs.iterdir() if (p / "state.json").exists()) if labs.is_dir() else []


def read_state(name: str) -> dict:
    """The lab's state file, or {} when there is none."""
    try:
        return json.loads((lab_dir(name) / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_state(folder: Path, state: dict) -> None:
    """Write state.json atomically, readable by the owner only."""
    tmp = folder / "state.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, folder / "state.json")


@contextmanager
def registry_lock():
    """Serialise octet allocation between labs started at the same time."""
    root = state_root()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(root / "registry.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def allocate_octet(name: str) -> int:
    """Claim the lowest free second octet for this lab (127.L.0.0/16); call under registry_lock."""
    taken = {read_state(other).get("octet") for other in all_labs() if other != name}
    for octet in range(FIRST_OCTET, LAST_OCTET + 1):
        if octet not in taken and block_free(octet):
            return octet
    raise MeshlabError("no free address block for another lab", "run 'meshlab down --all' to remove old labs")


def claim_block(octet: int):
    """Hold the block for as long as the returned socket stays open (None if someone holds it).

    The claim is an abstract Unix socket name: machine-wide across state roots and users, gone
    with the process that holds it, and no file is left behind.
    """
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(f"\0meshlab-address-block-127.{octet}")
    except OSError:
        sock.close()
        return None
    return sock


def block_free(octet: int) -> bool:
    """True when no running lab (of any state root) claims the block, and its DNS address is free."""
    import socket

    handle = claim_block(octet)
    if handle is None:
        return False
    handle.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((f"127.{octet}.0.2", 5353))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def socket_address(folder: Path) -> str:
    """The supervisor's Unix socket, in the abstract namespace (no path length limit, no file)."""
    import hashlib

    return "\0meshlab-" + hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:20]


def inside(base: Path, relative: str) -> Path:
    """base/relative, refused unless it resolves (symlinks followed) to a place under base."""
    root = Path(base).resolve()
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise MeshlabError(f"path {relative!r} leaves its folder {root}", "paths from a manifest must stay inside the lab")
    return target
