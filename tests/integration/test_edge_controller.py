"""The edge pod's ingress controller as it runs in the cluster (`python controller.py` from the ConfigMap's files)
against a stand-in API server on 127.0.0.1: it lists and watches, writes the files the local controller would,
follows watch events, lists again after "410 Gone", stops on SIGTERM; `envoy --mode validate` accepts the edge's
bootstrap with those files. No cluster here: the API server is a small http.server serving canned JSON."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from meshlab import stages
from meshlab.backends import edge
from meshlab.edge import controller
from meshlab.envoy import binary, configcheck, validate
from waiting import wait_for

pytestmark = pytest.mark.integration
TOKEN = "edge-token"
PREFIX = {"ingresses": "/apis/networking.k8s.io/v1", "services": "/api/v1", "endpointslices": "/apis/discovery.k8s.io/v1"}
WATCH_HOLD_S = 1.5  # the stand-in ends each watch this soon, so the controller also resumes watches


def service() -> dict:
    return {"metadata": {"name": "frontend", "namespace": "default", "resourceVersion": "3"},
            "spec": {"selector": {"app": "frontend"}, "ports": [{"port": 9080, "targetPort": 9080}]}}


def endpoint_slice(*pods: tuple[str, str, bool], version: str = "4") -> dict:
    return {"metadata": {"name": "frontend-x1", "namespace": "default", "resourceVersion": version,
                         "labels": {"kubernetes.io/service-name": "frontend"}},
            "addressType": "IPv4", "ports": [{"name": "", "port": 9080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}, "targetRef": {"kind": "Pod", "name": name}}
                          for name, ip, ready in pods]}


class StandInApi:
    """List and watch of three resources in namespace default; push() sends a watch event."""

    def __init__(self, objects: dict[str, list[dict]]):
        self.objects, self.version = objects, 100
        self.events = {r: queue.Queue() for r in objects}
        self.requests: list[tuple[str, str]] = []  # (path with query, Authorization)
        self.closing = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                api.requests.append((self.path, self.headers.get("Authorization", "")))
                parts = urllib.parse.urlsplit(self.path)
                resource = parts.path.rsplit("/", 1)[-1]
                if self.headers.get("Authorization") != f"Bearer {TOKEN}" or resource not in api.objects or \
                        not parts.path.startswith(f"{PREFIX[resource]}/namespaces/default/"):
                    return self.reply(403, {"kind": "Status", "code": 403, "message": f"{resource} is forbidden"})
                if "watch=1" in parts.query:
                    return self.watch(resource)
                return self.reply(200, {"metadata": {"resourceVersion": str(api.version)}, "items": api.objects[resource]})

            def reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def watch(self, resource):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                deadline = time.monotonic() + WATCH_HOLD_S
                while time.monotonic() < deadline and not api.closing.is_set():
                    try:
                        event = api.events[resource].get(timeout=0.05)
                    except queue.Empty:
                        continue
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def push(self, resource: str, kind: str, obj: dict) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.events[resource].put({"type": kind, "object": obj})

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def read(folder: Path) -> dict[str, str]:
    try:
        return {name: (folder / name).read_text() for name in ("lds.json", "cds.json")}
    except OSError:
        return {}


def test_the_controller_program_serves_a_stand_in_api(tmp_path):
    binary.find()  # the validation below needs Envoy (the integration suite has it)
    ingress = {**stages.edge.ingress(), "metadata": {"name": "shop", "namespace": "default", "resourceVersion": "2"}}
    objects = {"ingresses": [ingress], "services": [service()],
               "endpointslices": [endpoint_slice(("frontend-a", "10.244.1.5", True), ("frontend-b", "10.244.2.5", False))]}
    program, config, account = tmp_path / "program", tmp_path / "config", tmp_path / "sa"
    for folder in (program, config, account):
        folder.mkdir()
    for name, text in edge.program_files().items():  # exactly what ConfigMap edge-controller holds
        (program / name).write_text(text)
    (account / "token").write_text(TOKEN + "\n")
    api = StandInApi(objects)
    env = {"PATH": os.environ.get("PATH", ""), "WATCH_NAMESPACES": "default", "EDGE_CONFIG_DIR": str(config),
           "MESHLAB_EDGE_API": api.url, "MESHLAB_EDGE_SA_DIR": str(account), "PYTHONDONTWRITEBYTECODE": "1"}
    log = (tmp_path / "controller.log").open("w")
    proc = subprocess.Popen([sys.executable, "-E", "-s", str(program / "controller.py")], env=env, cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        def expected():
            return controller.render(api.objects["ingresses"], api.objects["services"], api.objects["endpointslices"])

        first = wait_for("the first files", lambda: read(config) == expected() and read(config))
        [cluster] = json.loads(first["cds.json"])["resources"]
        assert [e["endpoint"]["address"]["socket_address"]["address"]
                for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]] == ["10.244.1.5"]  # ready only
        assert {auth for _, auth in api.requests} == {f"Bearer {TOKEN}"}

        # a watch event: frontend-b turns ready
        turned = endpoint_slice(("frontend-a", "10.244.1.5", True), ("frontend-b", "10.244.2.5", True))
        api.objects["endpointslices"] = [turned]
        api.push("endpointslices", "MODIFIED", turned)
        wait_for("the watched change", lambda: read(config) == expected())
        assert "10.244.2.5" in read(config)["cds.json"]

        # "410 Gone", with a change no event announces: only the list that follows can show it
        lists_before = sum(1 for path, _ in api.requests if path.endswith("/endpointslices"))
        api.objects["endpointslices"] = [endpoint_slice(("frontend-c", "10.244.3.5", True), version="200")]
        api.push("endpointslices", "ERROR", {"kind": "Status", "code": 410, "message": "too old resource version",
                                             "metadata": {}})
        wait_for("the list after 410", lambda: read(config) == expected())
        assert sum(1 for path, _ in api.requests if path.endswith("/endpointslices")) == lists_before + 1
        time.sleep(WATCH_HOLD_S + 0.5)  # a watch ended by the server is resumed from the last version, not listed again
        assert any("watch=1" in path and "resourceVersion=" in path for path, _ in api.requests)
        assert sum(1 for path, _ in api.requests if path.endswith("/endpointslices")) == lists_before + 1

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        api.close()
    assert not [p.name for p in config.iterdir() if p.name.startswith(".")]  # no temporary file left
    text = (tmp_path / "controller.log").read_text()
    assert "config " in text and "watch ended: too old resource version" in text, text

    # Envoy accepts the edge's bootstrap with the files the controller wrote
    boot = configcheck.patch_paths(edge.bootstrap(), {edge.CONFIG_DIR: str(config)})
    assert asyncio.run(validate.check(boot)) is None
