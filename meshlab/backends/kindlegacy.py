"""Stage 6's legacy service on kind: a plain Docker container on kind's network, outside both clusters.

Locally the legacy service is a process on a loopback address (local/outside.py). On kind it must be reachable from
the kind nodes (and so from every pod, through its node), so it runs as a container on the Docker network kind puts
its nodes on: the course app in the stock python image the pods use, its code copied in with `docker cp` (a bind
mount would need the host path shared with the Docker engine, which Docker Desktop and remote engines limit), serving
on <its address on that network>:9080, which the stage's ServiceEntry names. It publishes no port on the host.

Ownership: the container is labelled meshlab.io/lab=<lab> and meshlab.io/legacy=<service>; remove() deletes only
containers that carry both labels, never another container of the same name. Faults go to the app's
/_meshlab/fault through `docker exec` of python inside it, as on a pod.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..stages import shop
from .base import MeshlabError
from .cluster import FAULT_CLIENT, FAULT_PATH
from .kubectl import Runner, check

LAB_LABEL = "meshlab.io/lab"
ROLE_LABEL = "meshlab.io/legacy"
CREATE_TIMEOUT = 900.0  # `docker create` pulls the python image the first time
START_TIMEOUT = 60.0
APP_PATH = "/app.py"
# Run inside the container: exit 0 once the app answers its health check (past any HTTP_PROXY).
HEALTH = ("import urllib.request as u; "
          f"u.build_opener(u.ProxyHandler({{}})).open('http://127.0.0.1:{shop.APP_PORT}/healthz', timeout=2)")


def container_name(lab: str, service: str) -> str:
    """`meshlab-<lab>-<service>`: next to the lab's clusters `meshlab-<lab>-cluster-N` in `docker ps`."""
    return f"meshlab-{lab}-{service}"


def create_argv(lab: str, service: str, network: str) -> list[str]:
    """`docker create` of the app playing `service` on `network`, labelled as this lab's legacy service."""
    return ["docker", "create", "--name", container_name(lab, service), "--network", network,
            "--label", f"{LAB_LABEL}={lab}", "--label", f"{ROLE_LABEL}={service}",
            "-e", f"POD_NAME={service}-legacy", "-e", "NODE_NAME=legacy-host", "-e", "PYTHONUNBUFFERED=1",
            shop.IMAGE, "python", APP_PATH, "--service", service, "--version", "v1", "--port", str(shop.APP_PORT)]


def ours(runner: Runner, lab: str) -> list[str]:
    """Ids of the lab's legacy containers (both labels), running or not."""
    result = runner.run(["docker", "ps", "-aq", "--filter", f"label={LAB_LABEL}={lab}", "--filter", f"label={ROLE_LABEL}"],
                        timeout=30)
    return check(result, "docker ps (the lab's legacy service)").split()


def remove(runner: Runner, lab: str) -> None:
    """Delete the lab's legacy containers (only those with meshlab's labels); idempotent."""
    found = ours(runner, lab)
    if found:
        check(runner.run(["docker", "rm", "-f", *found], timeout=60), "docker rm (the lab's legacy service)")


def start(runner: Runner, lab: str, service: str, network: str, say=print) -> str:
    """(Re)create the legacy container on `network`, wait until the app answers, and return its address there."""
    from .multikind import address_format

    remove(runner, lab)
    name = container_name(lab, service)
    say(f"starting {service} outside the clusters: container {name} on the Docker network {network}")
    check(runner.run(create_argv(lab, service, network), timeout=CREATE_TIMEOUT), f"docker create {name}",
          f"a container named {name} that meshlab did not make? remove it, or use another lab name")
    try:
        copied = runner.run(["docker", "cp", str(shop.APP_SOURCE), f"{name}:{APP_PATH}"], timeout=60)
        check(copied, f"docker cp into {name}")
        check(runner.run(["docker", "start", name], timeout=60), f"docker start {name}")
        deadline = time.monotonic() + START_TIMEOUT
        while runner.run(["docker", "exec", name, "python", "-c", HEALTH], timeout=30).returncode != 0:
            if time.monotonic() > deadline:
                tail = runner.run(["docker", "logs", "--tail", "5", name], timeout=30)
                lines = [line for line in (tail.stdout + tail.stderr).splitlines() if line.strip()] or ["no output"]
                raise MeshlabError(f"{service} (outside the clusters) did not answer in {name} within "
                                   f"{START_TIMEOUT:.0f}s: {lines[-1].strip()}", f"docker logs {name}")
            time.sleep(0.5)
        address = check(runner.run(["docker", "inspect", "--format", address_format(network), name], timeout=30),
                        f"docker inspect {name}").strip()
        if not address:
            raise MeshlabError(f"{name} has no address on the Docker network {network}", f"docker inspect {name}")
        return address
    except BaseException:
        remove(runner, lab)
        raise


def set_fault(runner: Runner, lab: str, service: str, settings: dict | None) -> None:
    """Set (or clear, with None) the app's fault knobs inside the container."""
    name = container_name(lab, service)
    url = f"http://127.0.0.1:{shop.APP_PORT}{FAULT_PATH}"
    result = runner.run(["docker", "exec", "-i", name, "python", "-c", FAULT_CLIENT, url, "POST" if settings else "DELETE"],
                        input=json.dumps(settings) if settings else "", timeout=30)
    check(result, f"set faults on {name}", "is the lab up? lab.status() names the legacy service")


def logs(runner: Runner, lab: str, service: str, dest: Path) -> None:
    """`docker logs` of the container into dest/<service>.log (nothing when it is gone)."""
    result = runner.run(["docker", "logs", container_name(lab, service)], timeout=60)
    if result.returncode == 0:
        dest.mkdir(parents=True, exist_ok=True)
        (dest / f"{service}.log").write_text(result.stdout + result.stderr)
