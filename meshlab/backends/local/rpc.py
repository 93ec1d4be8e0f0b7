"""One JSON request and one JSON answer per connection, over the supervisor's Unix socket."""

from __future__ import annotations

import json
import socket

from ..base import MeshlabError

MAX_REQUEST = 64 << 20  # one request line may carry a whole stage's manifests


def call(address: str, method: str, timeout: float = 120.0, **params):
    """Ask the supervisor to do something; its errors come back as MeshlabError."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
        sock.sendall(json.dumps({"method": method, "params": params}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    if not data:
        raise ConnectionError("the lab's supervisor closed the connection")
    answer = json.loads(data)
    if not answer.get("ok"):
        raise MeshlabError(answer.get("error", "error"), answer.get("hint", ""))
    return answer.get("result")


def reachable(address: str) -> bool:
    """True when a supervisor answers on this address."""
    try:
        return call(address, "ping", timeout=2.0) == "pong"
    except (OSError, ConnectionError, ValueError, MeshlabError):
        return False


def encode_answer(result=None, error: Exception | None = None) -> bytes:
    """The server's one-line answer."""
    if error is None:
        return json.dumps({"ok": True, "result": result}).encode() + b"\n"
    return json.dumps({"ok": False, "error": getattr(error, "message", str(error)),
                       "hint": getattr(error, "hint", "")}).encode() + b"\n"
