"""Readiness probes for local pods: HTTP GET, TCP connect, Envoy's /ready."""

from __future__ import annotations

import asyncio

from .network import target_port
from .pods import Container, Pod, is_envoy

IMPLICIT_PERIOD = 0.5


async def http_ok(host: str, port: int, path: str, timeout: float = 1.0) -> bool:
    """True for a 2xx/3xx answer to GET path."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: meshlab-probe\r\nConnection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.split()
        return len(parts) >= 2 and parts[1][:1] in (b"2", b"3")
    except (OSError, asyncio.TimeoutError):
        return False
    finally:
        writer.close()


async def tcp_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when the port accepts a connection."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


def period(container: Container) -> tuple[float, float]:
    """(initial delay, period) of a container's readiness check."""
    probe = container.spec.get("readinessProbe")
    if probe:
        return float(probe.get("initialDelaySeconds", 0)), float(probe.get("periodSeconds", 10))
    return 0.0, IMPLICIT_PERIOD


async def probe(pod: Pod, container: Container) -> bool:
    """Run the container's readiness probe; without one, Envoy's /ready or the first port."""
    spec = container.spec.get("readinessProbe") or {}
    if spec.get("httpGet"):
        port = target_port(pod.spec, spec["httpGet"].get("port"))
        return port is not None and await http_ok(pod.ip, port, spec["httpGet"].get("path", "/"))
    if spec.get("tcpSocket"):
        port = target_port(pod.spec, spec["tcpSocket"].get("port"))
        return port is not None and await tcp_ok(pod.ip, port)
    if is_envoy(container.spec) and container.admin:
        host, port = container.admin.rsplit("/", 1)[-1].rsplit(":", 1)
        return await http_ok(host, int(port), "/ready")
    ports = container.spec.get("ports") or []
    if ports:
        return await tcp_ok(pod.ip, int(ports[0]["containerPort"]))
    return True
