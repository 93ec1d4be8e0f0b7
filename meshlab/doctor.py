"""`meshlab doctor`: what each backend needs, what this machine has, how to get the rest."""

from __future__ import annotations

import sys


def backends():
    """Every backend class, in the order the course recommends them."""
    from .backends.kind import KindBackend
    from .backends.kube import KubeBackend
    from .backends.local import LocalBackend

    return [LocalBackend, KindBackend, KubeBackend]


def report() -> tuple[str, bool]:
    """A readable report, and whether the default (local) backend can run."""
    lines = [f"meshlab doctor (Python {sys.version.split()[0]}, {sys.platform})", ""]
    default_ok = False
    for backend in backends():
        try:
            found = backend.availability()
        except Exception as exc:  # a probe must never crash the doctor
            lines.append(f"[??] {backend.name}: probe failed: {exc}")
            continue
        mark = "ok" if found.ok else "--"
        lines.append(f"[{mark}] {found.name}" + ("  (default)" if found.name == "local" else ""))
        lines += [f"     have:    {item}" for item in found.present]
        lines += [f"     missing: {item}" for item in found.missing]
        lines += [f"     how:     {hint}" for hint in found.hints]
        default_ok = default_ok or (found.name == "local" and found.ok)
    if not sys.platform.startswith("linux"):
        lines += ["", "This is not Linux: the local backend cannot run here; use --backend kind (Docker Desktop)."]
    return "\n".join(lines), default_ok
