"""Shared test set-up: every test runs with its own meshlab state and data folders, and
nothing of meshlab's may outlive the session (processes, listeners, temp folders)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

_ROOT = Path(tempfile.mkdtemp(prefix="meshlab-test-"))
os.environ["MESHLAB_HOME"] = str(_ROOT / "state")
os.environ["MESHLAB_DATA"] = str(_ROOT / "data")
os.environ.setdefault("MESHLAB_RENDERER", "pure")
for _proxy in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    os.environ.pop(_proxy, None)


def meshlab_processes(root: Path = _ROOT) -> list[tuple[int, str]]:
    """Processes that belong to a meshlab lab under root (by command line or environment)."""
    found = []
    marker = str(root).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            continue
        if marker in cmdline or marker in environ:
            found.append((int(entry.name), cmdline.replace(b"\0", b" ").decode(errors="replace")[:160]))
    return found


def wait_no_processes(root: Path = _ROOT, timeout: float = 10.0) -> list[tuple[int, str]]:
    """Wait until no meshlab process is left; return what is still there."""
    deadline = time.monotonic() + timeout
    left = meshlab_processes(root)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = meshlab_processes(root)
    return left


@pytest.fixture
def state_root() -> Path:
    """The MESHLAB_HOME of this test session."""
    return Path(os.environ["MESHLAB_HOME"])


@pytest.fixture
def no_leaks():
    """Fails the test if a meshlab process or lab folder outlives it."""
    yield
    left = wait_no_processes()
    labs = Path(os.environ["MESHLAB_HOME"]) / "labs"
    folders = [p.name for p in labs.iterdir()] if labs.is_dir() else []
    assert not left, f"processes left behind: {left}"
    assert not folders, f"lab folders left behind: {folders}"


def pytest_sessionfinish(session, exitstatus):
    """Nothing of meshlab's survives the test session: kill leftovers, then fail if there were any."""
    try:
        from meshlab.backends.local import down_all

        down_all()
    except Exception:
        pass
    left = wait_no_processes(timeout=10)
    shutil.rmtree(_ROOT, ignore_errors=True)
    if left:
        print(f"\nmeshlab processes leaked by the tests: {left}")
        session.exitstatus = 1
