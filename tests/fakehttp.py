"""Tiny HTTP servers for tests: a quiet handler base, and a server that runs while in a `with`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that answers with one call and logs nothing."""

    def send_body(self, status: int, body) -> None:
        """Answer `body` (text, bytes, or data sent as JSON) with a Content-Length."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class Server:
    """A threaded HTTP server on a loopback address; started by `with`, gone after it."""

    def __init__(self, handler, host: str = "127.0.0.1"):
        self.server = ThreadingHTTPServer((host, 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.url = f"http://{host}:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
