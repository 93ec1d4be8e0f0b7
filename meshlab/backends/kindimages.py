"""Images on kind: pulled once by this machine's Docker and loaded into a cluster's nodes, and what a first run downloads.

Why on the host: a `crictl pull` inside each node downloads an image once per node (about 7 pulls for a stage-3
cluster, 15 for a kind test run), anonymously, against Docker Hub's per-address limit. Pulled by the host's Docker,
an image is downloaded once for every cluster this machine makes; `kind load docker-image` copies it into the nodes
with no network at all (kind skips a node that has the image already).

Docker 29 (and Docker Desktop) keep images in containerd's image store, where `kind load docker-image` of a
multi-platform image can fail with "content digest ... not found" (kubernetes-sigs/kind#3795): load() then retries
with a one-platform archive (`docker image save --platform`, then `kind load image-archive`). When the host cannot
pull (no network from the Docker daemon, a proxy only the nodes know) or load, the caller pulls inside the nodes.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from .kubectl import Runner

PULL_TIMEOUT = 900.0  # one image, on a slow link
LOAD_TIMEOUT = 300.0
NODE_IMAGE = "kindest/node"  # `kind create cluster` pulls the tag that matches the kind release
# Rough download sizes (compressed layers, linux/amd64) in MiB: estimates written down by hand and rounded up, not
# looked up in a registry nor measured by meshlab, so read them as an order of magnitude. `meshlab doctor` shows
# the real size for an image Docker already has.
APPROX_MIB = {
    NODE_IMAGE: 450,  # Kubernetes, containerd and systemd in one image
    "python": 45,  # python:3.12-slim: the shop's apps, the edge's ingress controller, meshlab's control plane
    "envoyproxy/envoy": 70,  # the edge (every stage) and the proxies of stages 2-4
    "istio/pilot": 80,  # istiod, stages 5-6
    "istio/proxyv2": 100,  # Istio's sidecar and gateways (Envoy + pilot-agent), stages 5-6
}


def repository(image: str) -> str:
    """An image reference without registry docker.io, library/, tag or digest: `docker.io/istio/pilot:1.30` -> `istio/pilot`."""
    name = image.split("@")[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    return name.removeprefix("docker.io/").removeprefix("library/")


def approx_mib(image: str) -> int | None:
    """The table's approximate download size of an image, or None for an image the table does not know."""
    return APPROX_MIB.get(repository(image))


# ---- onto the nodes ------------------------------------------------------------------------------


def host_has(runner: Runner, image: str) -> bool:
    """Whether this machine's Docker has the image (`docker image inspect`)."""
    return runner.run(["docker", "image", "inspect", "--format", "{{.Id}}", image], timeout=30).returncode == 0


def last_line(result) -> str:
    lines = [line.strip() for line in (result.stderr or result.stdout or "").splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {result.returncode}"


def load(runner: Runner, cluster: str, image: str, nodes: list[str], say) -> bool:
    """Pull the image on this machine unless Docker has it, then `kind load` it into the nodes. False (having said
    why) when it could not: the caller then pulls inside the nodes."""
    if not host_has(runner, image):
        say(f"pulling {image} on this machine (once, for every cluster)")
        pulled = runner.run(["docker", "pull", image], timeout=PULL_TIMEOUT)
        if pulled.returncode != 0:
            say(f"could not pull {image} on this machine ({last_line(pulled)}): pulling it inside the nodes instead")
            return False
    say(f"loading {image} into {', '.join(nodes)} (kind load docker-image)")
    where = ["--name", cluster, "--nodes", ",".join(nodes)]
    loaded = runner.run(["kind", "load", "docker-image", image, *where], timeout=LOAD_TIMEOUT)
    if loaded.returncode == 0:
        return True
    failed = last_line(loaded)
    platform = runner.run(["docker", "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", image], timeout=30)
    if platform.returncode == 0 and platform.stdout.strip():
        with tempfile.TemporaryDirectory(prefix="meshlab-image-") as folder:
            archive = str(Path(folder) / "image.tar")
            saved = runner.run(["docker", "image", "save", "--platform", platform.stdout.strip(), "-o", archive, image],
                               timeout=LOAD_TIMEOUT)
            if saved.returncode == 0:
                loaded = runner.run(["kind", "load", "image-archive", archive, *where], timeout=LOAD_TIMEOUT)
                if loaded.returncode == 0:
                    return True
            failed = last_line(loaded if saved.returncode == 0 else saved)
    say(f"could not load {image} into the nodes ({failed}): pulling it inside the nodes instead")
    return False


# ---- what a first run downloads (meshlab doctor) -------------------------------------------------


@dataclass
class Download:
    """One image a kind lab needs: the stages that use it, the table's size, and its size here if Docker has it."""

    image: str
    stages: list[int]
    approx_mib: int | None
    here_mib: float | None = None


def needed() -> list[Download]:
    """Every image the kind backend runs, in the order a course meets them: the node image and the edge's (every
    stage), the stages' pod images, then Istio's (stages 5 and 6)."""
    from .. import stages
    from . import edge, istio
    from .kubectl import pod_images

    every = stages.deployable()
    found: dict[str, list[int]] = {NODE_IMAGE: every, **{image: list(every) for image in edge.IMAGES}}
    for stage in every:
        for image in pod_images(stages.documents(stage)) + (istio.images() if stages.needs_mesh(stage) else []):
            used = found.setdefault(image, [])
            if stage not in used:  # the edge's images are every stage's already
                used.append(stage)
    return [Download(image, used, approx_mib(image)) for image, used in found.items()]


def size_here(runner: Runner, image: str) -> float | None:
    """The size in MiB of an image Docker has (for the node image: any kindest/node tag), else None."""
    if image == NODE_IMAGE:
        tags = runner.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", NODE_IMAGE], timeout=30)
        found = tags.stdout.split() if tags.returncode == 0 else []
        if not found:
            return None
        image = found[0]
    result = runner.run(["docker", "image", "inspect", "--format", "{{.Size}}", image], timeout=30)
    size = result.stdout.strip()
    return int(size) / 2**20 if result.returncode == 0 and size.isdigit() else None


def downloads(runner: Runner | None = None, docker: bool = True) -> list[Download]:
    """needed(), with the real size of each image this machine's Docker already has (when `docker` answers)."""
    rows = needed()
    if docker:
        runner = runner or Runner()
        for row in rows:
            row.here_mib = size_here(runner, row.image)
    return rows


def stage_range(numbers: list[int]) -> str:
    """[0, 1, 2, 5, 6] -> '0-2, 5-6'."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
