"""The load generator against real app processes and a tiny in-process test server."""

import asyncio
import itertools
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from fakehttp import QuietHandler, Server

import meshlab.app
from meshlab import traffic

APP = Path(meshlab.app.__file__).with_name("app.py")
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(autouse=True)
def no_leftover_load_threads():
    yield
    assert not [t for t in threading.enumerate() if t.name == "meshlab-traffic"], "load thread left running"


@pytest.fixture
def start_app():
    """start_app(ip, service, version, upstreams) -> base URL; every process is gone afterwards."""
    procs = []

    def start(ip, service, version="v1", upstreams=(), node="node-1"):
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "MESHLAB_DNS"}
        env.update(POD_IP=ip, POD_NAME=f"{service}-{version}-pod", NODE_NAME=node)
        cmd = [sys.executable, str(APP), "--service", service, "--version", version, "--port", "0"]
        proc = subprocess.Popen(cmd + [f"--upstream={u}" for u in upstreams], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(proc)
        assert select.select([proc.stdout], [], [], 10)[0], f"{service} did not start"
        return "http://" + proc.stdout.readline().rsplit(" ", 1)[1].strip()

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(5)
        proc.stdout.close()
    assert all(p.poll() is not None for p in procs)


class Fake(QuietHandler):
    """Answers by path: /json (alternating versions), /text (200 plain), /down (503 plain), /slow."""

    protocol_version = "HTTP/1.1"
    seen = []
    counter = itertools.count()

    def do_GET(self):
        self.seen.append((self.path, self.headers.get("Host"), self.headers.get("end-user")))
        if self.path.startswith("/slow"):
            time.sleep(1)
        if self.path.startswith("/json"):
            version = "v1" if next(self.counter) % 2 else "v2"
            hops = [{"kind": "proxy", "role": "edge", "name": "edge-1", "node": "node-1"},
                    {"kind": "app", "service": "reviews", "version": version, "pod": f"reviews-{version}", "node": "node-2"}]
            self.send_body(200, json.dumps({"service": "reviews", "paths": [hops], "calls": []}))
        elif self.path.startswith("/text"):
            self.send_body(200, "hello")
        else:
            self.send_body(503, "upstream connect error or disconnect/reset before headers")


@pytest.fixture
def fake():
    Fake.seen.clear()
    with Server(Fake, "127.77.30.1") as server:
        yield server.url
    assert not server.thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(server.server.server_address, timeout=1).close()


def test_real_chain_paths_versions_and_calls(start_app):
    ratings = start_app("127.77.31.13", "ratings")
    reviews = start_app("127.77.31.12", "reviews", "v2", [f"{ratings}/"], node="node-2")
    catalog = start_app("127.77.31.11", "catalog")
    frontend = start_app("127.77.31.10", "frontend", upstreams=[f"{catalog}/", f"{reviews}/"])

    result = traffic.run(frontend, n=40, concurrency=4)

    assert (result.requests, result.ok, result.failed, result.success_rate) == (40, 40, 0, 1.0)
    assert result.statuses == {200: 40}
    assert [p["count"] for p in result.paths] == [40, 40]
    chains = {tuple(h["name"] for h in p["hops"]) for p in result.paths}
    assert chains == {("frontend-v1-pod", "catalog-v1-pod"), ("frontend-v1-pod", "reviews-v2-pod", "ratings-v1-pod")}
    assert all(h["kind"] == "app" and h["service"] and h["node"] for p in result.paths for h in p["hops"])
    assert result.versions == {"frontend": {"v1": 40}, "catalog": {"v1": 40}, "reviews": {"v2": 40}, "ratings": {"v1": 40}}
    assert result.calls["reviews->ratings"] == {"total": 40, "failed": 0}
    assert set(result.latency_ms) == {"p50", "p90", "p99"} and 0 < result.latency_ms["p50"] <= result.latency_ms["p99"]
    as_json = json.loads(json.dumps(result.to_dict()))
    assert as_json["requests"] == 40 and as_json["success_rate"] == 1.0 and len(as_json["paths"]) == 2
    assert "frontend v1@node-1 -> reviews v2@node-2 -> ratings v1@node-1" in str(result)
    assert "<table>" in result._repr_html_()


def test_failed_requests_keep_their_trace(start_app):
    ratings = start_app("127.77.32.13", "ratings")
    reviews = start_app("127.77.32.12", "reviews", "v3", [f"{ratings}/"])
    DIRECT.open(urllib.request.Request(f"{ratings}/_meshlab/fault", data=b'{"error_rate": 1}'), timeout=5).close()

    result = traffic.run(reviews, n=10)

    assert (result.ok, result.failed, result.statuses) == (0, 10, {502: 10})
    [path] = result.paths
    assert path["count"] == 10
    assert path["hops"][-1] == {"kind": "error", "name": "ratings", "target": "ratings", "status": 500}
    assert result.calls == {"reviews->ratings": {"total": 10, "failed": 10}}
    assert result.errors == ["HTTP 502 from reviews: reviews -> ratings: 500"]
    assert "x ratings 500" in str(result)


def test_non_json_and_non_2xx_count_as_failed(fake):
    down = traffic.run(fake, n=6, path="/down")
    assert (down.requests, down.failed, down.statuses, down.paths) == (6, 6, {503: 6}, [])
    assert down.errors == ["HTTP 503: upstream connect error or disconnect/reset before headers"]
    text = traffic.run(fake, n=3, path="/text")
    assert (text.ok, text.failed) == (0, 3)


def test_versions_paths_host_path_and_headers(fake):
    result = traffic.run(f"{fake}/json", n=20, concurrency=3, host="shop.example", headers={"end-user": "jason"})
    assert result.ok == 20
    assert result.versions == {"reviews": {"v1": 10, "v2": 10}}
    assert sorted(p["count"] for p in result.paths) == [10, 10]
    assert result.paths[0]["hops"][0] == {"kind": "proxy", "name": "edge-1", "role": "edge", "node": "node-1"}
    assert set(Fake.seen) == {("/json", "shop.example", "jason")}


def test_connection_refused_and_timeouts(fake):
    with socket.socket() as closed:
        closed.bind(("127.77.30.2", 0))
        refused = traffic.run(f"http://127.77.30.2:{closed.getsockname()[1]}", n=5)
    assert (refused.failed, refused.statuses) == (5, {0: 5}) and len(refused.errors) == 1
    slow = traffic.run(fake, n=2, path="/slow", timeout=0.2)
    assert slow.failed == 2 and slow.errors == ["timeout after 0.2s"]


def test_background_load_and_run_for(fake):
    with traffic.background(f"{fake}/json", concurrency=2) as load:
        time.sleep(0.3)
        early = load.snapshot()
        assert early.requests > 0
    final = load.result()
    assert final.requests >= early.requests and final.success_rate == 1.0
    assert load.result() is final

    timed = traffic.run_for(f"{fake}/json", 0.3, concurrency=2)
    assert timed.requests > 0 and 0.25 <= timed.duration_s < 2


def test_sync_api_works_inside_a_running_event_loop(fake):
    async def notebook_cell():
        return traffic.run(f"{fake}/json", n=4)

    assert asyncio.run(notebook_cell()).ok == 4


def test_progress_bar(fake, capsys):
    assert traffic.run(f"{fake}/json", n=5, progress=True).ok == 5
    assert "5/5" in capsys.readouterr().err


def test_helpers():
    assert traffic.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert traffic.percentile(list(map(float, range(1, 101))), 99) == 99.0
    assert traffic.percentile([], 90) == 0.0
    assert traffic._target("http://h:1", "/") == "http://h:1/"
    assert traffic._target("http://h:1/api/reviews", "/") == "http://h:1/api/reviews"
    assert traffic._target("127.0.0.1:8080", "api") == "http://127.0.0.1:8080/api"
    assert traffic.normalize_hop({"kind": "app", "service": "x", "pod": "x-1"})["name"] == "x-1"
