"""DOT -> SVG: the system `dot` when on PATH, else the pip-only `graphviz-pure` binary."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from meshlab.backends.base import MeshlabError

ENV = "MESHLAB_RENDERER"  # auto (default) | dot | pure
PURE = "graphviz-pure"


def pure_binary() -> str | None:
    """The graphviz-pure command: on PATH, or beside this interpreter (a venv not activated)."""
    found = shutil.which(PURE)
    if found:
        return found
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder or "", PURE + (".exe" if os.name == "nt" else ""))
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def renderer_command(renderer: str | None = None) -> list[str]:
    """The command that turns DOT on stdin into SVG on stdout.

    renderer: 'auto' (system dot if on PATH, else graphviz-pure), 'dot' or 'pure';
    default from $MESHLAB_RENDERER, else 'auto'.
    """
    choice = (renderer or os.environ.get(ENV) or "auto").strip().lower()
    if choice not in ("auto", "dot", "pure"):
        raise MeshlabError(f"unknown diagram renderer {choice!r}", f"use auto, dot or pure (${ENV})")
    system = shutil.which("dot") if choice in ("auto", "dot") else None
    if system:
        return [system, "-Tsvg"]
    if choice == "dot":
        raise MeshlabError("the system Graphviz `dot` is not on PATH", "install graphviz, or use renderer='pure'")
    pure = pure_binary()
    if pure:
        return [pure, "-Tsvg"]
    raise MeshlabError("no Graphviz renderer found (neither `dot` nor `graphviz-pure`)",
                       "pip install graphviz-pure, or install Graphviz")


def render_svg(source: str, renderer: str | None = None, timeout: float = 30.0) -> str:
    """Render DOT source to an SVG document (cached by command and source)."""
    return _render(tuple(renderer_command(renderer)), source, timeout)


@functools.lru_cache(maxsize=128)
def _render(command: tuple[str, ...], source: str, timeout: float) -> str:
    try:
        done = subprocess.run(list(command), input=source.encode(), capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MeshlabError(f"diagram renderer {command[0]} failed: {exc}", f"try ${ENV}=pure or =dot") from None
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        raise MeshlabError(f"diagram renderer {command[0]} failed: {err[0] if err else done.returncode}",
                           f"try ${ENV}=pure or =dot")
    return done.stdout.decode()


def inline_svg(svg: str) -> str:
    """An SVG document without its XML prolog and doctype, to embed in HTML."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg

