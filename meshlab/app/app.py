#!/usr/bin/env python3
"""The meshlab shop: one program plays every service (frontend, catalog, reviews, ratings).

    python app.py --service reviews --version v2 --port 9080 --upstream http://ratings:9080/

Every traced request appends this app's hop to the `x-meshlab-trace` header, calls every
upstream in parallel with that header, and answers JSON with the chains of hops (`paths`)
and every call made (`calls`). Standard library only, so it runs on a stock python image.
"""

import argparse
import json
import os
import queue
import random
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRACE_HEADER = "x-meshlab-trace"
NODE_HEADER = "x-meshlab-node"  # a health check that names a node: only pods on it answer 200 (stage 3)
PROPAGATED_HEADERS = ("x-request-id", "end-user", "traceparent", "tracestate")
UPSTREAM_TIMEOUT_S = 5.0
FAULT_TYPES = {"error_rate": float, "latency_ms": float, "hang": bool, "crash": bool}


# --- Fault knobs -------------------------------------------------------------------------

class Faults:
    """Runtime fault knobs shared by every request thread."""

    def __init__(self, error_rate=0.0, latency_ms=0.0):
        self._cond = threading.Condition()
        self.state = {"error_rate": error_rate, "latency_ms": latency_ms, "hang": False, "crash": False}

    def update(self, changes):
        """Merge changes such as {"error_rate": 0.5}; raise ValueError on bad input."""
        if not isinstance(changes, dict):
            raise ValueError("expected a JSON object such as {\"error_rate\": 0.5}")
        for key, value in changes.items():
            kind = FAULT_TYPES.get(key)
            if kind is None:
                raise ValueError(f"unknown fault {key!r}; known: {', '.join(FAULT_TYPES)}")
            if kind is bool and not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false")
            if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"{key} must be a number >= 0")
            if key == "error_rate" and value > 1:
                raise ValueError("error_rate must be between 0 and 1")
        with self._cond:
            self.state.update({k: FAULT_TYPES[k](v) for k, v in changes.items()})
            self._cond.notify_all()

    def clear(self):
        """Remove every fault (also releases requests held by `hang`)."""
        with self._cond:
            self.state.update(error_rate=0.0, latency_ms=0.0, hang=False, crash=False)
            self._cond.notify_all()

    def snapshot(self):
        with self._cond:
            return dict(self.state)

    def wait_while_hung(self):
        with self._cond:
            self._cond.wait_for(lambda: not self.state["hang"])


# --- Name resolution through the lab DNS server (local runtime only) ---------------------

def dns_query(server, name, timeout=1.0):
    """Send one DNS A query for `name` to `server` ("host:port"); [] on NXDOMAIN or failure."""
    host, _, port = server.rpartition(":")
    query_id = random.randrange(1 << 16)
    try:
        qname = b"".join(bytes([len(label)]) + label.encode("ascii")
                         for label in name.rstrip(".").split(".")) + b"\0"
        # Header: id, flags (recursion desired), 1 question, 0 answers/authority/additional.
        packet = struct.pack("!6H", query_id, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!2H", 1, 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(packet, (host, int(port)))
            data = sock.recv(4096)
        reply_id, flags, _, answers = struct.unpack("!4H", data[:8])
        if reply_id != query_id or flags & 0xF:  # low 4 bits: rcode, 3 = NXDOMAIN
            return []
        pos = skip_name(data, 12) + 4  # the echoed question: name, type, class
        ips = []
        for _ in range(answers):
            pos = skip_name(data, pos)
            rtype, _, _, length = struct.unpack("!HHIH", data[pos:pos + 10])
            pos += 10
            if rtype == 1 and length == 4:
                ips.append(socket.inet_ntoa(data[pos:pos + 4]))
            pos += length
        return ips
    except (OSError, ValueError, UnicodeError, IndexError, struct.error):
        return []


def skip_name(data, pos):
    """Position just after the (possibly compressed) domain name starting at `pos`."""
    while data[pos]:
        if data[pos] >= 0xC0:  # a 2-byte pointer ends the name
            return pos + 2
        pos += data[pos] + 1
    return pos + 1


def is_ip(text):
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
            return True
        except OSError:
            pass
    return False


def use_lab_dns(server):
    """Resolve names through the lab DNS server first, then the normal resolver."""
    system_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if name and family in (0, socket.AF_INET) and not is_ip(name):
            ips = dns_query(server, name)
            if ips:
                return [info for ip in ips for info in system_getaddrinfo(
                    ip, port, socket.AF_INET, type, proto, flags | socket.AI_NUMERICHOST)]
        return system_getaddrinfo(host, port, family, type, proto, flags)

    socket.getaddrinfo = getaddrinfo  # urllib -> http.client -> socket.create_connection uses it


# --- The trace protocol ------------------------------------------------------------------

def parse_hop(text):
    """'kind=app;service=reviews' -> {'kind': 'app', 'service': 'reviews'}."""
    hop = {}
    for pair in text.split(";"):
        key, _, value = pair.partition("=")
        if key.strip():
            hop[key.strip()] = value.strip()
    return hop


def clean(value):
    """Strip the characters that separate hops and pairs."""
    return "".join("_" if ch in ",;= " else ch for ch in str(value))


def upstream_name(url):
    """http://reviews.default.svc:9080/ -> 'reviews' (an IP stays an IP)."""
    host = urllib.parse.urlsplit(url).hostname or url
    return host if is_ip(host) else host.split(".")[0]


def resolve(url):
    """Look the URL's host up as a direct call would (the answer is not needed: the proxy dials)."""
    parts = urllib.parse.urlsplit(url)
    try:
        socket.getaddrinfo(parts.hostname, parts.port or 80, socket.AF_INET, socket.SOCK_STREAM)
    except (OSError, ValueError, UnicodeError):
        pass  # the proxy answers for a name that does not resolve


class App:
    """One service instance: identity, fault knobs, upstreams."""

    def __init__(self, service, version, upstreams, faults):
        self.service, self.version, self.upstreams, self.faults = service, version, upstreams, faults
        self.identity = {"service": service, "version": version,
                         "pod": os.environ.get("POD_NAME") or socket.gethostname(),
                         "node": os.environ.get("NODE_NAME") or "unknown"}
        if os.environ.get("CLUSTER_NAME"):
            self.identity["cluster"] = os.environ["CLUSTER_NAME"]
        # Captured (MESHLAB_CAPTURED): HTTP_PROXY stands in for iptables capture, under which the app still resolves
        # the callee's name before its connection is redirected; a proxy URL alone would skip that lookup.
        self.captured = bool(os.environ.get("MESHLAB_CAPTURED")) and bool(urllib.request.getproxies().get("http"))
        self.hop = ";".join(f"{k}={clean(v)}" for k, v in {"kind": "app", **self.identity}.items())

    def serve(self, trace, headers):
        """Answer one traced request: apply faults, then call every upstream in parallel."""
        if self.faults.snapshot()["crash"]:
            os._exit(1)
        self.faults.wait_while_hung()
        faults = self.faults.snapshot()
        if faults["latency_ms"]:
            time.sleep(faults["latency_ms"] / 1000)
        chain = trace + [self.hop]
        if random.random() < faults["error_rate"]:
            return self.body(500, [[parse_hop(h) for h in chain]], [], error="injected fault (error_rate)")
        if not self.upstreams:
            return self.body(200, [[parse_hop(h) for h in chain]], [])
        with ThreadPoolExecutor(len(self.upstreams)) as pool:
            results = list(pool.map(lambda url: self.call(url, chain, headers), self.upstreams))
        paths = [path for result_paths, _, _ in results for path in result_paths]
        calls = [call for _, result_calls, _ in results for call in result_calls]
        return self.body(200 if all(ok for _, _, ok in results) else 502, paths, calls)

    def health(self, asking_node=None):
        """(status, body) of /healthz. A health check that names a node (stage 3's node proxies) gets 200
        only from a pod on that node: the proxy learns which pods are its own, as Linkerd 1's localnode filter."""
        node = self.identity["node"]
        if asking_node and asking_node != node:
            return 503, {"ok": False, "node": node, "why": f"this pod runs on {node}, not {asking_node}"}
        return 200, {"ok": True}

    def call_from_here(self, query):
        """`kubectl exec POD -- curl URL`: one call made by this pod (through its proxy, if it has one)."""
        url = (query.get("url") or [""])[0]
        if not url.startswith("http://"):
            return {"status": 0, "error": "give url=http://service:port/path"}
        headers = dict(h.split(":", 1) for h in query.get("header") or [] if ":" in h)
        paths, calls, ok = self.call(url, [self.hop], {k.strip().lower(): v.strip() for k, v in headers.items()})
        return {"from": self.identity, "url": url, "status": calls[0]["status"], "ok": ok, "paths": paths,
                "error": calls[0].get("error", "")}

    def body(self, status, paths, calls, **extra):
        return status, {**self.identity, "status": status, "paths": paths, "calls": calls, **extra}

    def call(self, url, chain, headers):
        """GET one upstream with the trace; return (paths, calls, ok)."""
        request = urllib.request.Request(url, headers={**headers, TRACE_HEADER: ",".join(chain)})
        started, error = time.monotonic(), None
        if self.captured:
            resolve(url)
        try:  # urlopen honours HTTP_PROXY: then the proxy gets an absolute-form request
            with urllib.request.urlopen(request, timeout=UPSTREAM_TIMEOUT_S) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as e:  # a non-2xx answer: keep its body, it may carry a trace
            status, raw = e.code, e.read()
        except (OSError, ValueError) as e:  # no answer at all: refused, unknown host, timeout
            timed_out = isinstance(e, TimeoutError) or isinstance(getattr(e, "reason", None), TimeoutError)
            status, raw, error = (504 if timed_out else 503), b"", str(getattr(e, "reason", e))
        ms = round((time.monotonic() - started) * 1000, 1)
        try:
            reply = json.loads(raw)
        except ValueError:
            reply = None
        reply = reply if isinstance(reply, dict) else {}
        name = reply.get("service") or upstream_name(url)
        ok = 200 <= status < 300
        paths = reply.get("paths") or [[parse_hop(h) for h in chain]]
        # A chain that already ends in an error was located deeper down; otherwise it ends here.
        if not ok and not any(path and path[-1].get("kind") == "error" for path in paths):
            paths = [path + [{"kind": "error", "target": name, "status": status}] for path in paths]
        call = {"from": self.service, "to": name, "status": status, "ms": ms}
        if error:
            call["error"] = error
        return paths, [call] + list(reply.get("calls") or []), ok


# --- HTTP server -------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    """Serves any GET path as a traced request, plus /healthz and /_meshlab/* endpoints."""

    protocol_version = "HTTP/1.1"  # keep-alive, so proxies can reuse connections to us
    disable_nagle_algorithm = True  # headers and body go out as two writes; don't stall 40 ms on the second
    app = None  # set by main()

    def route(self):
        # Absolute-form request lines (from clients that think we are a proxy) work too.
        return urllib.parse.urlsplit(getattr(self, "path", "")).path or "/"

    def do_GET(self):
        path = self.route()
        if path == "/healthz":
            return self.reply(*self.app.health(self.headers.get(NODE_HEADER)))
        if path == "/_meshlab/info":
            return self.reply(200, {**self.app.identity, "upstreams": self.app.upstreams,
                                    "pid": os.getpid()})
        if path == "/_meshlab/fault":
            return self.reply(200, self.app.faults.snapshot())
        if path == "/_meshlab/call":
            return self.reply(200, self.app.call_from_here(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)))
        lines = self.headers.get_all(TRACE_HEADER) or []
        trace = [hop.strip() for line in lines for hop in line.split(",") if hop.strip()]
        headers = {h: self.headers[h] for h in PROPAGATED_HEADERS if self.headers.get(h)}
        self.reply(*self.app.serve(trace, headers))

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.route() != "/_meshlab/fault":
            return self.reply(405, {"error": "only /_meshlab/fault accepts POST"})
        try:
            self.app.faults.update(json.loads(raw or b"{}"))
        except ValueError as e:
            return self.reply(400, {"error": str(e)})
        self.reply(200, self.app.faults.snapshot())

    def do_DELETE(self):
        if self.route() != "/_meshlab/fault":
            return self.reply(405, {"error": "only /_meshlab/fault accepts DELETE"})
        self.app.faults.clear()
        self.reply(200, self.app.faults.snapshot())

    def reply(self, status, body):
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the caller gave up (e.g. during a hang)
            self.close_connection = True

    def log_request(self, code="-", size="-"):
        if self.route() != "/healthz":  # readiness probes would drown the log
            super().log_request(code, size)


class Server(ThreadingHTTPServer):
    """A connection is served by an idle worker thread if one waits, else by a new one; a worker idle for
    IDLE_S exits. Never a fixed-size pool: proxies keep many keep-alive connections open, each holds a worker.
    Reused threads make a new connection as cheap to accept as in a Go or Java service (a thread start is not)."""

    IDLE_S = 60.0
    request_queue_size = 128  # the default backlog of 5 drops connects under load

    def __init__(self, *args, **kwargs):
        self._lock = threading.Lock()
        self._idle = []  # the inboxes of idle workers, the most recently idle last
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        with self._lock:
            if self._idle:
                return self._idle.pop().put((request, client_address))
        threading.Thread(target=self._work, args=((request, client_address),), daemon=True).start()

    def _work(self, job):
        inbox = queue.SimpleQueue()
        while job:
            self.process_request_thread(*job)  # serves the connection, then closes it
            with self._lock:
                self._idle.append(inbox)
            try:
                job = inbox.get(timeout=self.IDLE_S)
            except queue.Empty:
                with self._lock:  # a connection may have been handed over just now: then serve it
                    job = None if self._remove(inbox) else inbox.get_nowait()

    def _remove(self, inbox):
        if inbox in self._idle:
            self._idle.remove(inbox)
            return True
        return False


def bind_address(pod_ip):
    """The pod IP when pods share the host's loopback (local runtime); else every address, so a
    sidecar in the same network namespace reaches the app at 127.0.0.1."""
    if pod_ip.startswith("127.") or pod_ip == "::1":
        return pod_ip
    return "0.0.0.0"


def parse_args(argv):
    parser = argparse.ArgumentParser(description="meshlab sample shop service")
    parser.add_argument("--service", required=True, help="frontend, catalog, reviews or ratings")
    parser.add_argument("--version", default="v1")
    parser.add_argument("--port", type=int, default=9080, help="0 picks a free port")
    parser.add_argument("--upstream", action="append", default=[], help="URL to call (repeatable)")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 500")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every request")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if os.environ.get("MESHLAB_DNS"):
        use_lab_dns(os.environ["MESHLAB_DNS"])
    faults = Faults()
    try:
        faults.update({"error_rate": args.error_rate, "latency_ms": args.latency_ms})
    except ValueError as e:
        sys.exit(f"app.py: {e}")
    Handler.app = App(args.service, args.version, args.upstream, faults)
    bind = bind_address(os.environ.get("POD_IP", ""))
    Server.address_family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    server = Server((bind, args.port), Handler)
    print(f"{args.service} {args.version} listening on {bind}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
