"""The lab's service proxy as kube-proxy runs it on a node: one Envoy serving every ClusterIP and hostPort.

One TCP-proxy listener per address:port, one STATIC cluster of its ready endpoints. The runtime rewrites the
files Envoy watches (an atomic `..data` swap, as the kubelet projects a ConfigMap) and `sync` returns only
once Envoy's admin reports that version, so no caller sees a pod ready that the ClusterIP does not reach yet.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Callable

from ..base import MeshlabError
from . import procs, volumes

ADMIN_PORT = 15000
CONNECT_ATTEMPTS = 5  # a dead endpoint is skipped for the next one, as the userspace forwarder did
SYNC_TIMEOUT = 15.0
UNLIMITED = 1_000_000  # kube-proxy has no circuit breakers
TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
VERSIONS = ("listener_manager.lds.version_text", "cluster_manager.cds.version_text")
REJECTED = ("listener_manager.lds.update_rejected", "cluster_manager.cds.update_rejected")
STATS_PATH = "/stats?filter=" + urllib.parse.quote(
    "^(listener_manager.lds|cluster_manager.cds).(version_text|update_rejected)$")

Address = tuple[str, int]
Routes = dict[Address, list[Address]]


def name_of(address: Address) -> str:
    """Listener and cluster name of one address:port (stable, so a Service re-created there updates in place)."""
    return f"{address[0]}:{address[1]}"


def listener(address: Address) -> dict:
    """A TCP proxy on one ClusterIP:port or hostIP:hostPort; no idle timeout (kube-proxy has none)."""
    name = name_of(address)
    return {"@type": LISTENER, "name": name,
            "address": {"socket_address": {"address": address[0], "port_value": address[1]}},
            "enable_reuse_port": False,  # a second process on the address must fail, not share the traffic
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                "@type": TCP_PROXY, "stat_prefix": name, "cluster": name, "idle_timeout": "0s",
                "max_connect_attempts": CONNECT_ATTEMPTS}}]}]}


def cluster(address: Address, endpoints: list[Address]) -> dict:
    """The ready endpoints behind one address, round robin."""
    name = name_of(address)
    hosts = [{"endpoint": {"address": {"socket_address": {"address": ip, "port_value": port}}}}
             for ip, port in endpoints]
    limits = {key: UNLIMITED for key in ("max_connections", "max_pending_requests", "max_requests", "max_retries")}
    return {"@type": CLUSTER, "name": name, "type": "STATIC", "connect_timeout": "1s", "lb_policy": "ROUND_ROBIN",
            "circuit_breakers": {"thresholds": [limits]},
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": hosts}]}}


def resources(routes: Routes) -> tuple[list[dict], list[dict]]:
    """(listeners, clusters) for every address, sorted so equal routes give equal files."""
    ordered = sorted(routes)
    return [listener(a) for a in ordered], [cluster(a, list(routes[a])) for a in ordered]


def files(routes: Routes) -> tuple[str, dict[str, str]]:
    """(version, {lds.json, cds.json}): the version is a digest of the content, so Envoy's admin tells it apart."""
    lds, cds = resources(routes)
    version = hashlib.sha1(json.dumps([lds, cds], sort_keys=True).encode()).hexdigest()[:12]
    return version, {"lds.json": json.dumps({"version_info": version, "resources": lds}, indent=1),
                     "cds.json": json.dumps({"version_info": version, "resources": cds}, indent=1)}


def bootstrap(admin_ip: str, config_dir: Path) -> dict:
    """Admin on the lab's loopback block; LDS and CDS from the watched config folder."""
    def source(name: str) -> dict:
        return {"path_config_source": {"path": str(config_dir / name), "watched_directory": {"path": str(config_dir)}},
                "resource_api_version": "V3"}
    return {"node": {"id": "kube-proxy", "cluster": "kube-proxy"},
            "admin": {"address": {"socket_address": {"address": admin_ip, "port_value": ADMIN_PORT}}},
            "dynamic_resources": {"lds_config": source("lds.json"), "cds_config": source("cds.json")}}


def parse_stats(text: str) -> dict[str, str]:
    """`name: value` lines of Envoy's text /stats -> {name: value} (text readouts unquoted)."""
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep:
            out[name.strip()] = value.strip().strip('"')
    return out


def check_free(address: Address) -> None:
    """Raise the one-line error when another process holds an address the proxy is about to listen on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise MeshlabError(f"cannot listen on {address[0]}:{address[1]}: {reason}",
                           "another process holds that address; run 'meshlab down --all'") from None
    finally:
        sock.close()


async def http_get(host: str, port: int, path: str, timeout: float = 2.0) -> str:
    """The body of one plain HTTP GET (the admin API, without blocking the event loop)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or head.split()[1] != b"200":
        raise OSError(f"admin answered {head[:40]!r}")
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return body.decode(errors="replace")


def dechunk(body: bytes) -> bytes:
    """The payload of a chunked HTTP/1.1 body."""
    out, pos = b"", 0
    while True:
        line_end = body.index(b"\r\n", pos)
        size = int(body[pos:line_end].split(b";")[0], 16)
        if size == 0:
            return out
        out += body[line_end + 2:line_end + 2 + size]
        pos = line_end + 2 + size + 2


class KubeProxy:
    """The Envoy that serves a lab's ClusterIPs and hostPorts, started on the first sync, owned by the supervisor."""

    def __init__(self, folder: Path, admin_ip: str):
        self.folder, self.admin_ip = folder, admin_ip
        self.config_dir = folder / "config"
        self.proc = None
        self.started: int | None = None
        self.version: str | None = None  # the version Envoy last reported applied
        self.listening: set[Address] = set()
        self.rejected = ("0", "0")  # Envoy's refused-update counters after the last sync

    def _spawn(self) -> None:
        from .pods import envoy_binary

        boot = self.folder / "bootstrap.json"
        boot.write_text(json.dumps(bootstrap(self.admin_ip, self.config_dir), indent=1))
        argv = [envoy_binary(), "-c", str(boot), "--disable-hot-restart", "--concurrency", "1", "-l", "warning"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.folder)}
        self.proc = procs.spawn(argv, env, self.folder / "envoy.log", cwd=str(self.folder))
        self.started = procs.start_time(self.proc.pid)
        self.version, self.rejected = None, ("0", "0")

    def running(self) -> bool:
        """False when the Envoy died after it started (the next sync starts it again)."""
        return self.proc is None or self.proc.poll() is None

    def pids(self) -> list[tuple[int, int | None]]:
        """(pid, start time) of the Envoy, for the lab's state file."""
        return [(self.proc.pid, self.started)] if self.proc is not None and self.proc.poll() is None else []

    async def sync(self, wanted: dict[Address, Callable[[], list[Address]]]) -> None:
        """Serve exactly these addresses with their current endpoints; return once Envoy runs that config."""
        routes = {address: list(backends()) for address, backends in wanted.items()}
        version, texts = files(routes)
        alive = self.proc is not None and self.proc.poll() is None
        if alive and version == self.version:
            return
        for address in sorted(set(routes) - (self.listening if alive else set())):
            check_free(address)
        self.folder.mkdir(parents=True, exist_ok=True)
        volumes.project(self.config_dir, texts)
        if not alive:
            self._spawn()
        self.version = None  # until Envoy says otherwise, e.g. after a refused update
        await self._applied(version)
        self.version, self.listening = version, set(routes)

    async def _applied(self, version: str) -> None:
        """Wait until the admin reports `version` for LDS and CDS; a refused update or a dead Envoy raises."""
        deadline = time.monotonic() + SYNC_TIMEOUT
        pause = 0.002
        while True:
            if self.proc.poll() is not None:
                raise MeshlabError(f"the lab's service proxy (Envoy) exited: {self._last_log_line()}",
                                   f"see {self.folder / 'envoy.log'}")
            try:
                stats = parse_stats(await http_get(self.admin_ip, ADMIN_PORT, STATS_PATH))
            except (OSError, asyncio.TimeoutError, IndexError, ValueError):
                stats = None  # still starting
            if stats is not None:
                rejected = tuple(stats.get(key, "0") for key in REJECTED)
                if all(stats.get(key) == version for key in VERSIONS):
                    self.rejected = rejected
                    return
                if rejected != self.rejected:
                    self.rejected = rejected
                    raise MeshlabError(f"the lab's service proxy refused its config: {self._last_log_line()}",
                                       f"see {self.folder / 'envoy.log'}")
            if time.monotonic() > deadline:
                raise MeshlabError(f"the lab's service proxy did not load its config in {SYNC_TIMEOUT:.0f}s",
                                   f"see {self.folder / 'envoy.log'}")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _last_log_line(self) -> str:
        try:
            lines = (self.folder / "envoy.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return lines[-1][-300:] if lines else "no output"

    async def stop(self) -> None:
        """Kill the Envoy (its listeners close with it)."""
        if self.proc is not None:
            procs.kill_group(self.proc.pid, self.started)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass  # SIGKILLed; the kernel reaps it with the supervisor
            self.proc = None
        self.version, self.listening = None, set()


MODES = ("envoy", "python")
DEFAULT_MODE = "envoy"


def mode() -> str:
    """How ClusterIPs are served: `envoy` (this module) or `python` (forwarder.py); env MESHLAB_CLUSTERIP."""
    chosen = os.environ.get("MESHLAB_CLUSTERIP", "").strip().lower() or DEFAULT_MODE
    if chosen not in MODES:
        raise MeshlabError(f"MESHLAB_CLUSTERIP={chosen} is not a ClusterIP mode", f"use one of {', '.join(MODES)}")
    return chosen


def service_proxy(folder: Path, admin_ip: str):
    """The lab's ClusterIP and hostPort proxy in the chosen mode: KubeProxy, or the Python Forwarders."""
    if mode() == "envoy":
        return KubeProxy(folder, admin_ip)
    from .forwarder import Forwarders

    return Forwarders()
