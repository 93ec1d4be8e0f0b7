"""A plain process outside every cluster (stage 6's legacy payments service): started, found and killed by a fleet."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ..base import MeshlabError
from . import paths, procs

APP_PORT = 9080
START_TIMEOUT = 10.0
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def app_argv(service: str, port: int = APP_PORT) -> list[str]:
    """The sample app playing `service`, as a local program."""
    from ...stages.shop import APP_SOURCE

    return [sys.executable, str(APP_SOURCE), "--service", service, "--version", "v1", "--port", str(port)]


def start(folder: Path, service: str, ip: str, owned: bool, held=None) -> tuple[subprocess.Popen, int | None]:
    """Start the app as `service` on ip:9080 with its log in folder; owned: it dies with this process. The process
    takes over the claim of ip's address block: `held` (a claim_block socket, closed here), else a new claim."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder), "LANG": "C.UTF-8",
           "PYTHONUNBUFFERED": "1", "POD_IP": ip, "POD_NAME": f"{service}-legacy", "NODE_NAME": "legacy-host"}
    log_path = folder / f"{service}.log"
    argv = app_argv(service)
    if owned:  # dies with this process, whichever thread started it (ownerwatch.py says why)
        argv = [sys.executable, "-m", "meshlab.backends.local.ownerwatch", str(os.getpid()), "--", *argv]
    # else `meshlab up` from a shell: the process outlives the command, `meshlab down` ends it
    claim = held or paths.claim_block(int(ip.split(".")[1]))  # machine-wide, as a lab's supervisor claims its block
    if claim is None:
        raise MeshlabError(f"{service} (outside the clusters): address block of {ip}: Address already in use",
                           "another lab claimed it first; run `meshlab down --all` for labs left behind")
    try:  # the process holds the claim (an inherited socket) for as long as it lives
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(argv, env=env, cwd=str(folder), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(claim.fileno(),))
    finally:
        claim.close()
    started = procs.start_time(proc.pid)
    deadline = time.monotonic() + START_TIMEOUT
    while not answers(ip):
        if proc.poll() is not None or time.monotonic() > deadline:
            procs.kill_group(proc.pid, started)
            proc.wait(timeout=5)
            last = (log_path.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise MeshlabError(f"{service} (outside the clusters) did not start on {ip}:{APP_PORT}: {last}",
                               f"see {log_path}")
        time.sleep(0.05)
    return proc, started


def answers(ip: str) -> bool:
    """True when the app on ip:9080 answers its health check."""
    try:
        return DIRECT.open(f"http://{ip}:{APP_PORT}/healthz", timeout=1).status == 200
    except OSError:
        return False


def set_fault(ip: str, settings: dict | None) -> None:
    """Set (or clear, with None) the app's fault knobs."""
    import json

    body = json.dumps(settings).encode() if settings else None
    request = urllib.request.Request(f"http://{ip}:{APP_PORT}/_meshlab/fault", data=body,
                                     method="POST" if settings else "DELETE",
                                     headers={"content-type": "application/json"})
    DIRECT.open(request, timeout=3).read()
