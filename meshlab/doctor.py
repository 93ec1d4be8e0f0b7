"""`meshlab doctor`: what each backend needs, what this machine has, how to get the rest."""

from __future__ import annotations

import platform
import shutil
import sys


def backends():
    """Every backend class, in the order the course recommends them."""
    from .backends.kind import KindBackend
    from .backends.kube import KubeBackend
    from .backends.local import LocalBackend

    return [LocalBackend, KindBackend, KubeBackend]


def istioctl_lines(runner=None, which=shutil.which) -> list[str]:
    """The kind backend's stage-5 tool: istioctl at the pinned Istio version (stages 0-4 do not need it)."""
    from .backends import istio
    from .backends.kubectl import Runner

    how = istio.download_hint(platform.system(), platform.machine())
    if not which("istioctl"):
        return [f"     stage 5: istioctl {istio.VERSION} not found (stages 0-4 do not need it)", f"     how:     {how}"]
    version = istio.client_version(runner or Runner())
    if not istio.version_ok(version):
        return [f"     stage 5: istioctl {version or '(version unknown)'} is not Istio {istio.VERSION}", f"     how:     {how}"]
    return [f"     stage 5: istioctl {version} (pinned Istio {istio.VERSION})"]


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
        if found.name == "kind":
            lines += istioctl_lines()
        default_ok = default_ok or (found.name == "local" and found.ok)
    if not sys.platform.startswith("linux"):
        lines += ["", "This is not Linux: the local backend cannot run here; use --backend kind (Docker Desktop)."]
    return "\n".join(lines), default_ok
