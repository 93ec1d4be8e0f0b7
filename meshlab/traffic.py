"""Load generator: send real HTTP requests and summarise success, latency and traced paths."""

from __future__ import annotations

import asyncio
import html
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit, urlunsplit

import aiohttp

MAX_ERROR_SAMPLES = 5


@dataclass(repr=False)
class TrafficResult:
    """What a batch of requests saw: counts, latency, statuses and the paths they took."""

    requests: int = 0
    ok: int = 0
    failed: int = 0
    latency_ms: Dict[str, float] = field(default_factory=lambda: {"p50": 0.0, "p90": 0.0, "p99": 0.0})
    statuses: Counter = field(default_factory=Counter)  # 0 = no HTTP answer (refused, timeout)
    paths: List[dict] = field(default_factory=list)  # [{"hops": [hop, ...], "count": n}], most seen first
    versions: Dict[str, Counter] = field(default_factory=dict)  # {"reviews": {"v1": 30, ...}}
    calls: Dict[str, dict] = field(default_factory=dict)  # {"frontend->reviews": {"total": n, "failed": m}}
    errors: List[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def success_rate(self) -> float:
        return self.ok / self.requests if self.requests else 0.0

    def to_dict(self) -> dict:
        """A JSON-ready summary."""
        return {
            "requests": self.requests, "ok": self.ok, "failed": self.failed,
            "success_rate": self.success_rate, "latency_ms": dict(self.latency_ms),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "paths": self.paths, "versions": {s: dict(v) for s, v in self.versions.items()},
            "calls": self.calls, "errors": list(self.errors), "duration_s": self.duration_s,
        }

    def _summary(self) -> str:
        return (f"{self.requests} requests in {self.duration_s:.1f}s: {self.ok} ok, {self.failed} failed "
                f"({self.success_rate:.1%} success); latency ms p50 {self.latency_ms['p50']:.1f} "
                f"p90 {self.latency_ms['p90']:.1f} p99 {self.latency_ms['p99']:.1f}")

    def _statuses_text(self) -> str:
        return "  ".join(f"{code or 'no answer'}: {n}" for code, n in sorted(self.statuses.items()))

    def _versions_text(self, service: str) -> str:
        return ", ".join(f"{v} {n}" for v, n in sorted(self.versions[service].items()))

    def __repr__(self) -> str:
        return f"<TrafficResult {self._summary()}>"

    def __str__(self) -> str:
        lines = [self._summary(), f"statuses: {self._statuses_text()}"]
        lines += [f"{service}: {self._versions_text(service)}" for service in sorted(self.versions)]
        if self.paths:
            lines.append(" count  path")
            lines += [f"{p['count']:6d}  {chain_label(p['hops'])}" for p in self.paths]
        lines += [f"error: {e}" for e in self.errors]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = "".join(
            f"<tr><td style='text-align:right'>{p['count']}</td>"
            f"<td style='text-align:right'>{p['count'] / max(self.requests, 1):.0%}</td>"
            f"<td style='text-align:left' title='{esc(json.dumps(p['hops']))}'>{esc(chain_label(p['hops']))}</td></tr>"
            for p in self.paths)
        parts = [f"<p><b>{esc(self._summary())}</b><br>statuses: {esc(self._statuses_text())}</p>"]
        if self.versions:
            parts.append("<p>" + "<br>".join(f"{esc(s)}: {esc(self._versions_text(s))}"
                                             for s in sorted(self.versions)) + "</p>")
        if rows:
            parts.append("<table><tr><th>count</th><th>share</th><th style='text-align:left'>path</th></tr>"
                         f"{rows}</table>")
        if self.errors:
            parts.append("<p>errors:<br>" + "<br>".join(esc(e) for e in self.errors) + "</p>")
        return "".join(parts)


def normalize_hop(hop: dict) -> dict:
    """A trace hop with `kind` and `name` always present (name = pod for apps, target for errors)."""
    hop = {str(k): v for k, v in hop.items()}
    kind = hop.get("kind") or ("app" if "service" in hop else "proxy" if "role" in hop else "unknown")
    if kind == "app":
        name = hop.get("pod") or hop.get("service")
    elif kind == "error":
        name = hop.get("target")
    else:
        name = hop.get("name")
    rest = {k: v for k, v in hop.items() if k not in ("kind", "name")}
    return {"kind": kind, "name": str(name or "?"), **rest}


def hop_label(hop: dict) -> str:
    """Short text for one hop: 'reviews v2@node-2', '(sidecar@node-2)', 'x ratings 503'."""
    node = f"@{hop['node']}" if hop.get("node") and hop.get("node") != "unknown" else ""
    if hop["kind"] == "app":
        return f"{hop.get('service', hop['name'])} {hop.get('version', '')}".strip() + node
    if hop["kind"] == "proxy":
        return f"({hop.get('role', 'proxy')}{node})"
    if hop["kind"] == "error":
        return f"x {hop['name']} {hop.get('status', '')}".strip()
    return hop["name"]


def chain_label(hops: List[dict]) -> str:
    return " -> ".join(hop_label(h) for h in hops)


def percentile(sorted_values: List[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil without floats drifting
    return round(sorted_values[int(rank) - 1], 2)


class _Tally:
    """Accumulates request outcomes; written by the load thread, read by anyone."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started = time.perf_counter()
        self.latencies: List[float] = []
        self.ok = 0
        self.statuses: Counter = Counter()
        self.chains: Counter = Counter()
        self.chain_hops: Dict[str, List[dict]] = {}
        self.versions: Dict[str, Counter] = {}
        self.calls: Dict[str, dict] = {}
        self.errors: List[str] = []

    def add(self, status: int, ms: float, body: Any, error: Optional[str]) -> None:
        body = body if isinstance(body, dict) else None
        ok = 200 <= status < 300 and body is not None
        with self.lock:
            self.latencies.append(ms)
            self.statuses[status] += 1
            self.ok += ok
            if body is not None:
                self._add_trace(body)
            if not ok and error and error not in self.errors and len(self.errors) < MAX_ERROR_SAMPLES:
                self.errors.append(error)

    def _add_trace(self, body: dict) -> None:
        seen = set()
        for chain in body.get("paths") or []:
            if not isinstance(chain, list):
                continue
            hops = [normalize_hop(h) for h in chain if isinstance(h, dict)]
            key = json.dumps(hops, sort_keys=True)
            self.chains[key] += 1
            self.chain_hops.setdefault(key, hops)
            seen.update((h["service"], h["version"]) for h in hops
                        if h["kind"] == "app" and h.get("service") and h.get("version"))
        for service, version in seen:  # once per request, however many chains pass through
            self.versions.setdefault(service, Counter())[version] += 1
        for call in body.get("calls") or []:
            if isinstance(call, dict):
                entry = self.calls.setdefault(f"{call.get('from')}->{call.get('to')}", {"total": 0, "failed": 0})
                entry["total"] += 1
                entry["failed"] += not (isinstance(call.get("status"), int) and 200 <= call["status"] < 300)

    def result(self) -> TrafficResult:
        with self.lock:
            latencies = sorted(self.latencies)
            return TrafficResult(
                requests=len(latencies), ok=self.ok, failed=len(latencies) - self.ok,
                latency_ms={f"p{q}": percentile(latencies, q) for q in (50, 90, 99)},
                statuses=Counter(self.statuses),
                paths=[{"hops": self.chain_hops[k], "count": n} for k, n in self.chains.most_common()],
                versions={s: Counter(v) for s, v in self.versions.items()},
                calls={k: dict(v) for k, v in self.calls.items()}, errors=list(self.errors),
                duration_s=round(time.perf_counter() - self.started, 3))


def _error_text(status: int, body: Any, text: str) -> str:
    """One line saying why a request failed."""
    if not isinstance(body, dict):
        return f"HTTP {status}: {' '.join(text.split())[:120] or '(empty body)'}"
    failing = [f"{c.get('from')} -> {c.get('to')}: {c.get('status')}" for c in body.get("calls") or []
               if isinstance(c, dict) and c.get("status") != 200]
    detail = "; ".join(([body["error"]] if body.get("error") else []) + failing)
    return f"HTTP {status} from {body.get('service', '?')}" + (f": {detail}" if detail else "")


class _Load:
    """Runs requests from its own thread and event loop (safe to start from a Jupyter kernel)."""

    def __init__(self, url: str, *, n: Optional[int], seconds: Optional[float], concurrency: int,
                 path: str, host: Optional[str], headers: Optional[dict], timeout: float,
                 keepalive: bool, progress: Any):
        self.url = _target(url, path)
        self.headers = dict(headers or {})
        if host:
            self.headers["Host"] = host
        self.n, self.seconds, self.concurrency = n, seconds, max(1, concurrency)
        self.timeout, self.keepalive, self.bar = timeout, keepalive, progress
        self.tally = _Tally()
        self.stopping = threading.Event()
        self.started = 0
        self.crash: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._main, name="meshlab-traffic", daemon=True)

    def start(self) -> "_Load":
        self.thread.start()
        return self

    def wait(self) -> TrafficResult:
        """Block until done (Ctrl-C stops the load, then re-raises)."""
        try:
            while self.thread.is_alive():
                self.thread.join(0.1)
        except KeyboardInterrupt:
            self.stopping.set()
            self.thread.join()
            raise
        finally:
            if self.bar is not None:
                self.bar.close()
        if self.crash is not None:
            raise self.crash
        return self.tally.result()

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as e:  # surfaced to the caller's thread by wait()
            self.crash = e

    async def _run(self) -> None:
        self.deadline = time.monotonic() + self.seconds if self.seconds is not None else None
        # force_close by default: one connection per request, so per-connection balancers
        # (Service ClusterIPs) spread requests the way a learner expects.
        connector = aiohttp.TCPConnector(limit=self.concurrency, force_close=not self.keepalive)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout)) as s:
            await asyncio.gather(*(self._worker(s) for _ in range(self.concurrency)))

    def _take(self) -> bool:
        if self.stopping.is_set() or (self.deadline is not None and time.monotonic() >= self.deadline):
            return False
        if self.n is not None and self.started >= self.n:
            return False
        self.started += 1  # only the loop thread touches this
        return True

    async def _worker(self, session: aiohttp.ClientSession) -> None:
        while self._take():
            await self._one(session)
            if self.bar is not None:
                self.bar.update(1)

    async def _one(self, session: aiohttp.ClientSession) -> None:
        begin, status, body, text, error = time.perf_counter(), 0, None, "", None
        try:
            async with session.get(self.url, headers=self.headers, allow_redirects=False) as response:
                status, text = response.status, await response.text(errors="replace")
            try:
                body = json.loads(text)
            except ValueError:
                pass
            error = _error_text(status, body, text)
        except asyncio.TimeoutError:
            error = f"timeout after {self.timeout:g}s"
        except (aiohttp.ClientError, OSError, ValueError) as e:
            error = f"{type(e).__name__}: {e}"
        self.tally.add(status, (time.perf_counter() - begin) * 1000, body, error)


def _target(url: str, path: str) -> str:
    """The URL to hit: `path` replaces the URL's path unless left at "/"."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if path != "/" or not parts.path:
        parts = parts._replace(path=path if path.startswith("/") else f"/{path}")
    return urlunsplit(parts)


def _bar(progress: Any, total: Optional[int]):
    from tqdm.auto import tqdm

    wanted = progress if progress is not None else (total is not None and total >= 500)
    return tqdm(total=total, unit="req", desc="traffic") if wanted else None


def run(url: str, n: int = 100, concurrency: int = 4, path: str = "/", host: Optional[str] = None,
        timeout: float = 5.0, progress: Optional[bool] = None, headers: Optional[dict] = None,
        keepalive: bool = False) -> TrafficResult:
    """Send `n` GET requests, `concurrency` at a time, and summarise what happened."""
    return _Load(url, n=n, seconds=None, concurrency=concurrency, path=path, host=host, headers=headers,
                 timeout=timeout, keepalive=keepalive, progress=_bar(progress, n)).start().wait()


def run_for(url: str, seconds: float, concurrency: int = 4, path: str = "/", host: Optional[str] = None,
            timeout: float = 5.0, progress: Optional[bool] = None, headers: Optional[dict] = None,
            keepalive: bool = False) -> TrafficResult:
    """Send requests continuously for `seconds` and summarise what happened."""
    return _Load(url, n=None, seconds=seconds, concurrency=concurrency, path=path, host=host, headers=headers,
                 timeout=timeout, keepalive=keepalive, progress=_bar(bool(progress), None)).start().wait()


class BackgroundLoad:
    """Load running in the background until stopped: `with background(url) as load: ...; load.result()`."""

    def __init__(self, load: _Load):
        self._load = load
        self._final: Optional[TrafficResult] = None

    def snapshot(self) -> TrafficResult:
        """What has happened so far, without stopping."""
        return self._load.tally.result()

    def result(self) -> TrafficResult:
        """Stop sending (in-flight requests finish) and return the final result."""
        if self._final is None:
            self._load.stopping.set()
            self._final = self._load.wait()
        return self._final

    stop = result

    def __enter__(self) -> "BackgroundLoad":
        return self

    def __exit__(self, *exc) -> None:
        self.result()


def background(url: str, concurrency: int = 2, path: str = "/", host: Optional[str] = None,
               timeout: float = 5.0, headers: Optional[dict] = None, keepalive: bool = False,
               seconds: Optional[float] = None) -> BackgroundLoad:
    """Start continuous load now; stop it with .result() or by leaving the `with` block."""
    load = _Load(url, n=None, seconds=seconds, concurrency=concurrency, path=path, host=host, headers=headers,
                 timeout=timeout, keepalive=keepalive, progress=None)
    return BackgroundLoad(load.start())
