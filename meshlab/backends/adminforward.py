"""Envoy admin APIs of kind and kube proxies, reachable from this machine: a loopback gateway that starts one
`kubectl port-forward` per proxy pod on first use.

`ProxyInfo.admin_url` on kind and kube is `http://127.0.0.1:<gateway>/<namespace>/<pod>`: listing proxies starts
nothing but this gateway (one loopback socket and a thread, in the process that listed them). The first request
under a pod's URL starts `kubectl port-forward pod/<pod> <local>:<admin port>` (the admin binds the pod's
loopback, which a port-forward reaches), records it in the lab's state file, and relays the request; later
requests reuse that forward while it lives. So a notebook that only lists proxies runs no port-forward, and one
that reads every proxy's admin (settle does) runs one per proxy pod, not one per call. A forward found dead
(connection refused) is started again once. down() stops the forwards and the gateway (ClusterBackend).
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from .base import MeshlabError

UPSTREAM_TIMEOUT = 30.0  # the caller's own timeout (Admin: 3 s) is usually shorter


class AdminGateway:
    """Relays `/<namespace>/<pod>/<admin path>` to that pod's Envoy admin through its port-forward."""

    def __init__(self, start: Callable[[str, str, int], int], forget: Callable[[str, str], None]):
        # start(namespace, pod, admin port) -> a local port that forwards there (started if needed);
        # forget(namespace, pod): stop that forward and drop its record (it stopped answering)
        self.start, self.forget = start, forget
        self.targets: dict[tuple[str, str], int] = {}  # (namespace, pod) -> admin port in the pod
        self.local: dict[tuple[str, str], int] = {}  # (namespace, pod) -> local port of its running forward
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def url(self, namespace: str, pod: str, port: int) -> str:
        """The admin URL of one proxy pod (starts the gateway, not a port-forward)."""
        self.targets[(namespace, pod)] = port
        return f"http://127.0.0.1:{self.serve()}/{namespace}/{pod}"

    def serve(self) -> int:
        """Start the gateway on 127.0.0.1 if it is not running; return its port."""
        with self.lock:
            if self.server is None:
                self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
                self.server.daemon_threads = True
                self.server.gateway = self  # type: ignore[attr-defined]
                self.thread = threading.Thread(target=self.server.serve_forever, name="meshlab-admin-gateway", daemon=True)
                self.thread.start()
            return self.server.server_address[1]

    def drop(self, namespace: str, pod: str) -> None:
        """Forget a pod (its forward was stopped elsewhere)."""
        self.local.pop((namespace, pod), None)

    def close(self) -> None:
        """Stop the gateway (the forwards are the backend's to stop)."""
        with self.lock:
            server, thread, self.server, self.thread = self.server, self.thread, None, None
        self.local.clear()
        if server is not None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    def relay(self, method: str, path: str, body: bytes, content_type: str) -> tuple[int, str, bytes]:
        """(status, content type, body) of one admin request, `path` being /<namespace>/<pod>/<admin path>."""
        parts = urllib.parse.urlsplit(path)
        segments = parts.path.split("/", 3)
        if len(segments) < 3 or (segments[1], segments[2]) not in self.targets:
            return 404, "text/plain", b"no such proxy here: list lab.proxies() for admin URLs\n"
        key = (segments[1], segments[2])
        target = "/" + (segments[3] if len(segments) > 3 else "") + (f"?{parts.query}" if parts.query else "")
        for attempt in (1, 2):
            try:
                port = self.local.get(key) or self.start(*key, self.targets[key])
                self.local[key] = port
                return _call(port, method, target, body, content_type)
            except ConnectionRefusedError:  # the forward died: start it once more
                self.local.pop(key, None)
                self.forget(*key)
                if attempt == 2:
                    return 502, "text/plain", f"kubectl port-forward to pod {key[1]} refuses connections\n".encode()
            except MeshlabError as exc:
                return 502, "text/plain", f"{exc}\n".encode()
            except OSError as exc:  # Envoy itself does not answer (killed, frozen, restarting)
                return 502, "text/plain", f"the admin API of pod {key[1]} does not answer: {exc}\n".encode()
        raise AssertionError("unreachable")


def _call(port: int, method: str, target: str, body: bytes, content_type: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=UPSTREAM_TIMEOUT)
    try:
        conn.request(method, target, body=body or None, headers={"Content-Type": content_type} if content_type else {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", "text/plain"), response.read()
    finally:
        conn.close()


class _Handler(BaseHTTPRequestHandler):
    """One relayed request."""

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, content_type, data = self.server.gateway.relay(self.command, self.path, body,  # type: ignore[attr-defined]
                                                               self.headers.get("Content-Type", ""))
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the caller gave up (its own timeout)

    do_POST = do_GET

    def log_message(self, format, *args) -> None:
        pass
