"""`meshlab doctor`: what each backend needs, what this machine has, how to get the rest."""

from __future__ import annotations

import platform
import shutil
import sys
from pathlib import Path


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


INOTIFY = {"max_user_watches": 524288, "max_user_instances": 512}  # kind's known-issues page, for several clusters
STAGE6_MEMORY = 8 * 2**30  # two clusters, two istiods, two gateways and the shop
STAGE6_CPUS = 4  # two API servers and two istiods starting together; 2 CPUs work, slowly


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def multicluster_lines(runner=None, read=_read, system: str | None = None) -> list[str]:
    """Stage 6 on kind: the shared Docker network the two clusters meet on (their east-west gateways are
    reached at node addresses there), inotify limits for two clusters' kubelets, and Docker's memory and CPUs
    against what two clusters with Istio need (plus istioctl, checked with stage 5)."""
    from .backends.kubectl import Runner
    from .backends.multikind import docker_network

    runner, network, lines = runner or Runner(), docker_network(), []
    subnets = runner.run(["docker", "network", "inspect", network, "--format",
                          "{{range .IPAM.Config}}{{.Subnet}} {{end}}"], timeout=30)
    if subnets.returncode == 0:
        lines.append(f"     stage 6: Docker network {network} ({subnets.stdout.strip() or 'no subnet'}): "
                     "the clusters reach each other's API servers and east-west gateways there")
    else:
        lines.append(f"     stage 6: Docker network {network} not there yet (kind creates it with the first cluster)")
    if (system or platform.system()) == "Linux":
        low = {k: v for k, want in INOTIFY.items() if (v := read(f"/proc/sys/fs/inotify/{k}")).isdigit() and int(v) < want}
        if low:
            lines.append(f"     stage 6: inotify limits too low for two clusters ({', '.join(f'{k}={v}' for k, v in low.items())})")
            lines.append("     how:     sudo sysctl " + " ".join(f"fs.inotify.{k}={INOTIFY[k]}" for k in low))
    info = runner.run(["docker", "info", "--format", "{{.MemTotal}} {{.NCPU}}"], timeout=30)
    fields = info.stdout.split() if info.returncode == 0 else []
    total, cpus = (int(fields[0]), int(fields[1])) if len(fields) == 2 and all(f.isdigit() for f in fields) else (0, 0)
    have = f" (this Docker: {total / 2**30:.1f} GiB, {cpus} CPUs)" if total else ""
    lines.append(f"     stage 6: istioctl as for stage 5, and for two clusters with Istio about {STAGE6_MEMORY // 2**30} GiB "
                 f"of memory and {STAGE6_CPUS} CPUs for Docker{have}")
    if total and total < STAGE6_MEMORY * 0.9:
        lines.append(f"     stage 6: Docker has {total / 2**30:.1f} GiB of memory; two clusters with Istio want about 8 GiB")
        lines.append("     how:     give Docker more memory (Docker Desktop: Settings > Resources), or stay on the local backend")
    if cpus and cpus < STAGE6_CPUS:
        lines.append(f"     stage 6: Docker has {cpus} CPUs; two clusters start slowly on fewer than {STAGE6_CPUS}")
        lines.append("     how:     give Docker more CPUs (Docker Desktop: Settings > Resources), or stay on the local backend")
    return lines


def download_lines(runner=None, docker: bool = True) -> list[str]:
    """The kind backend's downloads: each image, the stages that use it and its size (approximate, from the table
    in backends/kindimages.py, or the real size of an image Docker already has), and what is still to download."""
    from .backends import kindimages

    rows = kindimages.downloads(runner, docker=docker)
    names = [f"{r.image} (kind's own tag)" if r.image == kindimages.NODE_IMAGE else r.image for r in rows]
    width = max(map(len, names)) + 2
    lines = ["     downloads: each image once, by this machine's Docker (kind then loads it into every new cluster)",
             f"       {'image':<{width}}{'stages':<9}size"]
    total = early = 0  # MiB still to download: the whole course, and stages 0-4 (no Istio)
    for name, row in zip(names, rows):
        if row.here_mib is not None:
            size = f"here already ({row.here_mib:.0f} MiB on disk)"
        elif row.approx_mib is not None:
            size, total = f"~{row.approx_mib} MiB", total + row.approx_mib
            early += row.approx_mib if min(row.stages) < 5 else 0
        else:
            size = "size unknown"
        lines.append(f"       {name:<{width}}{kindimages.stage_range(row.stages):<9}{size}")
    if total:
        lines.append(f"       still to download: about {total} MiB for the whole course, {early} MiB for stages 0-4 "
                     "(~: approximate compressed sizes)")
    else:
        lines.append("       still to download: nothing, Docker has every image")
    return lines


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
            if "docker engine" in found.present:
                lines += multicluster_lines()
            lines += download_lines(docker="docker engine" in found.present)
        default_ok = default_ok or (found.name == "local" and found.ok)
    if not sys.platform.startswith("linux"):
        lines += ["", "This is not Linux: the local backend cannot run here; use --backend kind (Docker Desktop)."]
    return "\n".join(lines), default_ok
