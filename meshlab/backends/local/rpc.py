"""One JSON request and one JSON answer per connection, over the supervisor's Unix socket."""

from __future__ import annotations

import json
import socket

from ..base import MeshlabError

MAX_REQUEST = 64 << 20  # one request line may carry a whole stage's manifests


def printable(address: str) -> str:
    """An abstract socket address as text for an env var: a leading NUL is written `@` (as `ss` shows it)."""
    return "@" + address[1:] if address.startswith("\0") else address


def call(address: str, method: str, timeout: float = 120.0, **params):
    """Ask the supervisor to do something; its errors come back as MeshlabError."""
    return request(address, method, params, timeout)


def watch(address: str, since: int = 0, wait: float = 30.0) -> dict:
    """The watch API: the lab's state once its revision differs from `since`, or after `wait` seconds."""
    return request(address, "watch", {"since": since, "timeout": wait}, timeout=wait + 15.0)


def request(address: str, method: str, params: dict, timeout: float = 120.0):
    """One request with explicit params (so a param may be called `timeout`); `@name` is an abstract address."""
    if address.startswith("@"):
        address = "\0" + address[1:]
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
