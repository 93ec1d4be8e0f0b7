"""The ceiling of meshlab.traffic itself: how fast it can go against endpoints that do nothing
(a tiny aiohttp server, an Envoy direct_response), next to the stage-1 shop it normally measures.

    .venv/bin/python benchmarks/loadgen_ceiling.py [-n 3000] [-c 4]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

import _common as c

import meshlab
from meshlab import traffic
from meshlab.backends.local import procs
from meshlab.envoy.binary import find as envoy_binary

BODY = json.dumps({"service": "trivial", "paths": []})
AIOHTTP_SERVER = """
import sys
from aiohttp import web
async def handle(request):
    return web.Response(text=sys.argv[2], content_type="application/json")
app = web.Application()
app.router.add_get("/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def envoy_config(port: int) -> dict:
    hcm = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    return {"static_resources": {"listeners": [{
        "name": "trivial", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": hcm, "stat_prefix": "trivial",
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{
                "match": {"prefix": "/"},
                "direct_response": {"status": 200, "body": {"inline_string": BODY}},
                "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}]}]}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}]}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, proc, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the trivial server on port {port} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def start_servers(folder: Path) -> tuple[list, dict]:
    """The two trivial servers (dying with this process); returns (processes, {label: url})."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    aio_port, envoy_port = free_port(), free_port()
    (folder / "server.py").write_text(AIOHTTP_SERVER)
    (folder / "envoy.json").write_text(json.dumps(envoy_config(envoy_port)))
    aio = procs.spawn([sys.executable, str(folder / "server.py"), str(aio_port), BODY], env, folder / "aiohttp.log")
    envoy = procs.spawn([envoy_binary(), "-c", str(folder / "envoy.json"), "--concurrency", "1",
                         "--disable-hot-restart", "-l", "error"], env, folder / "envoy.log")
    wait_listening(aio_port, aio)
    wait_listening(envoy_port, envoy)
    return [aio, envoy], {"tiny aiohttp server": f"http://127.0.0.1:{aio_port}",
                          "Envoy direct_response": f"http://127.0.0.1:{envoy_port}"}


def run(url: str, n: int, concurrency: int, keepalive: bool) -> tuple:
    traffic.run(url, n=min(n, 200), concurrency=concurrency, keepalive=keepalive, progress=False)  # warm-up
    cpu = c.cpu_seconds()
    result = traffic.run(url, n=n, concurrency=concurrency, keepalive=keepalive, progress=False)
    cpu = c.cpu_seconds() - cpu
    if result.failed:
        raise SystemExit(f"{url}: {result.failed} requests failed: {result.errors[:1]}")
    return result, cpu / result.requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3000, help="requests per row against the trivial servers")
    parser.add_argument("-c", type=int, default=4, help="concurrency (meshlab.traffic's default is 4)")
    args = parser.parse_args()
    rows = []
    with c.private_state(), tempfile.TemporaryDirectory(prefix="meshlab-bench-") as tmp:
        servers, urls = start_servers(Path(tmp))
        try:
            with meshlab.Lab("bench-loadgen") as lab:
                lab.up(stage="edge", quiet=True)
                urls["stage-1 shop through the edge (baseline)"] = lab.url
                for keepalive in (False, True):
                    for label, url in urls.items():
                        n = args.n if "baseline" not in label else max(200, args.n // 6)
                        result, cpu = run(url, n, args.c, keepalive)
                        rows.append((label, keepalive, result, cpu))
        finally:
            for proc in servers:
                procs.kill_group(proc.pid)
                proc.wait()
    print(f"meshlab.traffic against trivial endpoints vs the shop, concurrency {args.c} ({c.machine()})")
    for keepalive in (False, True):
        mine = [r for r in rows if r[1] == keepalive]
        base = next(r for r in mine if "baseline" in r[0])
        base_rps = base[2].requests / base[2].duration_s
        table = [[label, result.requests, f"{result.requests / result.duration_s:.0f}",
                  c.ratio(result.requests / result.duration_s, base_rps), f"{result.latency_ms['p50']:.2f}",
                  f"{result.latency_ms['p99']:.2f}", f"{cpu * 1e6:.0f}"] for label, _, result, cpu in mine]
        mode = "keep-alive (keepalive=True)" if keepalive else "a new connection per request (the default)"
        print(f"\n{mode}\n")
        print(c.table(["target", "requests", "req/s", "req/s vs shop", "p50 ms", "p99 ms", "client CPU us/req"], table))
        print(f"\nAt the shop's {base_rps:.0f} req/s the load generator needs {base[3] * base_rps:.2f} of one CPU.")


if __name__ == "__main__":
    main()
