"""Ctrl-C at any moment of `meshlab up`: the lab is either fully up (and the command says so) or nothing of it
is left (no supervisor, no folder); never a traceback from meshlab. (A Ctrl-C inside Python's own start-up,
before any meshlab code runs, gets Python's message; nothing has started then either.)"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import meshlab
from meshlab.backends.local import LocalBackend
from test_cli import MESHLAB

pytestmark = pytest.mark.integration


def meshlab_frames(err: str, package: str) -> list[str]:
    """The files of meshlab's package that a traceback passes through."""
    return re.findall(rf'File "{re.escape(package)}([^"]+)"', err)


@pytest.mark.parametrize("after", [0.05, 0.15, 0.3, 0.6, 1.0, 1.6, 2.5])
def test_ctrl_c_during_up_leaves_all_or_nothing(after, no_leaks):
    lab = f"ctrlc{int(after * 100)}"
    proc = subprocess.Popen(MESHLAB + ["up", "--stage", "edge", "--lab", lab], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    backend = LocalBackend(lab, owned=False)
    try:
        package = str(Path(meshlab.__file__).parent) + "/"
        if "init_import_site" in err or (proc.returncode == -signal.SIGINT
                                         and ("KeyboardInterrupt" in err or not err.strip())):
            # stopped inside Python's own start-up (before it handles SIGINT, the signal kills it silently), its
            # import machinery, or the first lines of meshlab/__init__.py before its handler: nothing was started
            assert set(meshlab_frames(err, package)) <= {"__init__.py"}, err
            assert not backend.running() and not backend.folder.exists(), err
        elif proc.returncode == 0:
            assert "is up" in out and backend.running() and "Traceback" not in err, err
        else:
            assert proc.returncode == 130 and err.strip() and "Traceback" not in err, (out, err)
            assert not backend.running() and not backend.folder.exists()
    finally:
        backend.down()
