"""The sample app as real processes: trace protocol, fault knobs, 502 propagation, DNS, proxy."""

import http.client
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from fakehttp import QuietHandler

import meshlab.app
from meshlab.backends.local.dns import DnsServer

APP = Path(meshlab.app.__file__).with_name("app.py")
EDGE_HOP = "kind=proxy;role=edge;name=edge-1;node=node-1"
PYTHON = os.environ.get("MESHLAB_APP_PYTHON", sys.executable)  # e.g. a python3.12 to mimic the image
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore the tester's proxy env


class Apps:
    """Starts app processes on loopback addresses and guarantees they are gone afterwards."""

    def __init__(self):
        self.procs = []

    def start(self, ip, service, version="v1", upstreams=(), env=None, node="node-1"):
        environ = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "MESHLAB_DNS"}
        environ.update(POD_IP=ip, POD_NAME=f"{service}-{version}-pod", NODE_NAME=node, **(env or {}))
        cmd = [PYTHON, str(APP), "--service", service, "--version", version, "--port", "0"]
        cmd += [f"--upstream={u}" for u in upstreams]
        proc = subprocess.Popen(cmd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        proc.address = None
        self.procs.append(proc)
        assert select.select([proc.stdout], [], [], 10)[0], f"{service} did not start"
        line = proc.stdout.readline()
        assert "listening on" in line, line
        host, port = line.rsplit(" ", 1)[1].strip().rsplit(":", 1)
        proc.address = (host, int(port))
        proc.url = f"http://{host}:{port}"
        return proc

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)
            proc.stdout.close()
        for proc in self.procs:
            assert proc.poll() is not None, "app process left running"
            if proc.address:
                with pytest.raises(OSError):
                    socket.create_connection(proc.address, timeout=1).close()


@pytest.fixture
def apps():
    started = Apps()
    yield started
    started.close()


def request(method, url, body=None, headers=None, timeout=5.0):
    """(status, JSON body) of one request, whatever the status."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with DIRECT.open(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get(url, headers=None, timeout=5.0):
    return request("GET", url, headers=headers, timeout=timeout)


def services(path):
    return [h.get("service") or h.get("role") or h["kind"] for h in path]


def test_frontend_chain_reports_paths_and_calls(apps):
    ratings = apps.start("127.77.1.13", "ratings")
    reviews = apps.start("127.77.1.12", "reviews", "v2", [f"{ratings.url}/"], node="node-2")
    catalog = apps.start("127.77.1.11", "catalog")
    frontend = apps.start("127.77.1.10", "frontend", upstreams=[f"{catalog.url}/api/catalog", f"{reviews.url}/api/reviews"])

    status, body = get(f"{frontend.url}/", {"x-meshlab-trace": EDGE_HOP})

    assert status == 200 and body["status"] == 200
    assert (body["service"], body["version"], body["pod"], body["node"]) == ("frontend", "v1", "frontend-v1-pod", "node-1")
    assert [services(p) for p in body["paths"]] == [["edge", "frontend", "catalog"],
                                                    ["edge", "frontend", "reviews", "ratings"]]
    assert body["paths"][1][2] == {"kind": "app", "service": "reviews", "version": "v2",
                                   "pod": "reviews-v2-pod", "node": "node-2"}
    assert body["paths"][0][0] == {"kind": "proxy", "role": "edge", "name": "edge-1", "node": "node-1"}
    assert [(c["from"], c["to"], c["status"]) for c in body["calls"]] == [
        ("frontend", "catalog", 200), ("frontend", "reviews", 200), ("reviews", "ratings", 200)]
    assert all(isinstance(c["ms"], float) for c in body["calls"])


def test_trace_header_split_over_lines_is_joined(apps):
    ratings = apps.start("127.77.2.10", "ratings", env={"CLUSTER_NAME": "east"})
    conn = http.client.HTTPConnection(*ratings.address, timeout=5)
    conn.putrequest("GET", "/api/ratings")
    conn.putheader("x-meshlab-trace", EDGE_HOP)
    conn.putheader("x-meshlab-trace", "kind=proxy;role=sidecar;name=s1, kind=proxy;role=sidecar;name=s2")
    conn.endheaders()
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    assert response.status == 200
    assert [h.get("name", h.get("pod")) for h in body["paths"][0]] == ["edge-1", "s1", "s2", "ratings-v1-pod"]
    assert body["paths"][0][-1]["cluster"] == "east" and body["cluster"] == "east"


def test_healthz_info_and_any_path(apps):
    app = apps.start("127.77.3.10", "catalog", "v3")
    assert get(f"{app.url}/healthz") == (200, {"ok": True})
    status, info = get(f"{app.url}/_meshlab/info")
    assert status == 200 and info["service"] == "catalog" and info["version"] == "v3" and info["pid"] == app.pid
    for path in ("/", "/api/catalog", "/anything?x=1"):
        status, body = get(app.url + path)
        assert status == 200 and body["paths"] == [[body["paths"][0][0]]]


def test_a_health_check_naming_a_node_passes_only_on_that_node(apps):
    """Stage 3's node proxies learn which pods are on their own node this way (Linkerd 1's localnode)."""
    app = apps.start("127.77.3.11", "ratings", node="node-2")
    assert get(f"{app.url}/healthz", headers={"x-meshlab-node": "node-2"}) == (200, {"ok": True})
    status, body = get(f"{app.url}/healthz", headers={"x-meshlab-node": "node-1"})
    assert status == 503 and body["node"] == "node-2" and not body["ok"]


def test_fault_knobs(apps):
    app = apps.start("127.77.4.10", "ratings")
    fault = f"{app.url}/_meshlab/fault"
    assert request("GET", fault) == (200, {"error_rate": 0.0, "latency_ms": 0.0, "hang": False, "crash": False})

    assert request("POST", fault, {"error_rate": 1})[1]["error_rate"] == 1.0
    status, body = get(f"{app.url}/")
    assert status == 500 and body["paths"][0][-1]["service"] == "ratings" and "error" in body
    assert request("POST", fault, {"error_rate": 2})[0] == 400
    assert request("POST", fault, {"nope": 1})[0] == 400

    request("DELETE", fault)
    request("POST", fault, {"latency_ms": 200})
    started = time.monotonic()
    assert get(f"{app.url}/")[0] == 200
    assert time.monotonic() - started >= 0.2
    assert request("DELETE", fault)[1]["latency_ms"] == 0.0


def test_hang_holds_requests_until_cleared(apps):
    app = apps.start("127.77.5.10", "ratings")
    request("POST", f"{app.url}/_meshlab/fault", {"hang": True})
    with pytest.raises(OSError):
        get(f"{app.url}/", timeout=0.3)
    outcome = []
    waiter = threading.Thread(target=lambda: outcome.append(get(f"{app.url}/")[0]))
    waiter.start()
    time.sleep(0.3)
    assert not outcome, "answered while hung"
    assert get(f"{app.url}/healthz")[0] == 200  # probes and knobs keep working
    request("DELETE", f"{app.url}/_meshlab/fault")
    waiter.join(5)
    assert outcome == [200]


def test_crash_exits_on_next_request(apps):
    app = apps.start("127.77.6.10", "ratings")
    request("POST", f"{app.url}/_meshlab/fault", {"crash": True})
    assert app.poll() is None
    with pytest.raises(OSError):
        get(f"{app.url}/")
    assert app.wait(5) == 1


def test_failed_upstream_gives_502_with_error_hop(apps):
    ratings = apps.start("127.77.7.13", "ratings", "v1")
    reviews = apps.start("127.77.7.12", "reviews", "v3", [f"{ratings.url}/"])
    frontend = apps.start("127.77.7.10", "frontend", upstreams=[f"{reviews.url}/"])
    request("POST", f"{ratings.url}/_meshlab/fault", {"error_rate": 1.0})

    status, body = get(f"{frontend.url}/", {"x-meshlab-trace": EDGE_HOP})
    assert status == 502 and body["status"] == 502
    [path] = body["paths"]
    assert services(path) == ["edge", "frontend", "reviews", "ratings", "error"]
    assert path[-1] == {"kind": "error", "target": "ratings", "status": 500}
    assert [(c["from"], c["to"], c["status"]) for c in body["calls"]] == [
        ("frontend", "reviews", 502), ("reviews", "ratings", 500)]


def test_unreachable_upstream_ends_chain_at_caller(apps):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.77.8.13", 0))
        dead = f"http://127.77.8.13:{closed.getsockname()[1]}/"
    reviews = apps.start("127.77.8.12", "reviews", "v2", [dead])
    status, body = get(f"{reviews.url}/")
    assert status == 502
    assert body["paths"] == [[{"kind": "app", "service": "reviews", "version": "v2", "pod": "reviews-v2-pod",
                               "node": "node-1"}, {"kind": "error", "target": "127.77.8.13", "status": 503}]]
    assert body["calls"][0]["status"] == 503 and body["calls"][0]["error"]


def test_names_resolve_through_lab_dns(apps):
    ratings = apps.start("127.77.9.13", "ratings", "v1")
    local_ratings = apps.start("127.0.0.1", "ratings", "v2")  # reachable as "localhost"
    asked = []

    def resolve(name):
        asked.append(name)
        return ["127.77.9.13"] if name == "ratings.default.svc.cluster.local" else []

    with DnsServer("127.77.9.2", 0, resolve) as server:
        upstreams = [f"http://ratings.default.svc.cluster.local:{ratings.address[1]}/",
                     f"http://localhost:{local_ratings.address[1]}/"]
        reviews = apps.start("127.77.9.12", "reviews", "v2", upstreams,
                             env={"MESHLAB_DNS": f"127.77.9.2:{server.port}"})
        status, body = get(f"{reviews.url}/")
    # The lab name came from the lab DNS; "localhost" got NXDOMAIN there and fell back.
    assert "ratings.default.svc.cluster.local" in asked and "localhost" in asked
    assert status == 200
    assert [p[-1]["version"] for p in body["paths"]] == ["v1", "v2"]


class RecordingProxy(QuietHandler):
    """A tiny explicit HTTP proxy: records the request line, adds a proxy hop, forwards."""

    seen = []

    def do_GET(self):
        self.seen.append(self.path)
        trace = ",".join(self.headers.get_all("x-meshlab-trace") or [])
        hop = "kind=proxy;role=router;name=test-router"
        request = urllib.request.Request(self.path, headers={"x-meshlab-trace": f"{trace},{hop}"})
        with DIRECT.open(request, timeout=5) as upstream:
            self.send_body(upstream.status, upstream.read())


def test_outbound_calls_honour_http_proxy(apps):
    proxy = ThreadingHTTPServer(("127.77.10.1", 0), RecordingProxy)
    thread = threading.Thread(target=proxy.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        ratings = apps.start("127.77.10.13", "ratings")
        reviews = apps.start("127.77.10.12", "reviews", "v2", [f"{ratings.url}/api/ratings"],
                             env={"HTTP_PROXY": f"http://127.77.10.1:{proxy.server_address[1]}"})
        status, body = get(f"{reviews.url}/")
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(5)
    assert not thread.is_alive()
    assert RecordingProxy.seen == [f"{ratings.url}/api/ratings"], "absolute-form request line"
    assert status == 200
    assert services(body["paths"][0]) == ["reviews", "router", "ratings"]


def test_a_captured_app_resolves_the_callee_before_sending_through_its_proxy(apps):
    """MESHLAB_CAPTURED (HTTP_PROXY standing in for iptables): the app still looks the name up, as a real one does."""
    proxy = ThreadingHTTPServer(("127.77.11.1", 0), RecordingProxy)
    thread = threading.Thread(target=proxy.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    asked = []
    try:
        ratings = apps.start("127.0.0.1", "ratings")  # "localhost": the recording proxy can dial it too
        with DnsServer("127.77.11.2", 0, lambda name: asked.append(name) or []) as server:
            env = {"HTTP_PROXY": f"http://127.77.11.1:{proxy.server_address[1]}",
                   "MESHLAB_DNS": f"127.77.11.2:{server.port}"}
            url = f"http://localhost:{ratings.address[1]}/"
            plain = apps.start("127.77.11.12", "reviews", "v2", [url], env=env)
            assert get(f"{plain.url}/")[0] == 200 and asked == []  # a plain proxy client never resolves
            captured = apps.start("127.77.11.14", "reviews", "v3", [url], env={**env, "MESHLAB_CAPTURED": "1"})
            assert get(f"{captured.url}/")[0] == 200
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(5)
    assert asked == ["localhost"]


def test_the_server_reuses_an_idle_thread_and_never_makes_a_connection_wait():
    """A new connection goes to an idle worker (no thread start); held connections each get their own worker."""
    sys.path.insert(0, str(APP.parent))
    try:
        import app as app_module
    finally:
        sys.path.remove(str(APP.parent))

    seen = []

    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            seen.append(threading.get_ident())
            self.send_body(200, b"{}")

    server = app_module.Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        for _ in range(3):  # one connection after the other: one worker serves them all
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"{}"
            conn.close()
            time.sleep(0.1)  # the worker is idle again
        assert len(set(seen)) == 1
        held = [http.client.HTTPConnection("127.0.0.1", port, timeout=5) for _ in range(4)]
        for conn in held:  # keep-alive connections held open at once: none waits for another
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"{}"
        assert len(set(seen[3:])) == 4
        for conn in held:
            conn.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
