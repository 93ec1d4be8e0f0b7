"""`meshlab lab`: JupyterLab on the course folder, bound to loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def course_dir() -> Path:
    """The folder with lessons/, labs/ and solutions/ (the repository checkout)."""
    env = os.environ.get("MESHLAB_COURSE_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[2]
    return here if (here / "lessons").is_dir() else Path.cwd()


def open_lab(port: int = 8888, no_browser: bool = False) -> int:
    """Run JupyterLab on the course until Ctrl-C; labs started from it die with their kernels."""
    root = course_dir()
    argv = [sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={root}", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", "--ServerApp.default_url=/lab/tree/lessons/00-welcome.ipynb"]
    if no_browser:
        argv.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")  # containers (Codespaces, Binder, CI) often run as root
    print(f"opening the course in {root} on http://127.0.0.1:{port}/ (Ctrl-C to stop)")
    try:
        return subprocess.call(argv)
    except KeyboardInterrupt:
        return 0
