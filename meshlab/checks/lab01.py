"""Checks of lab 01 (edge proxy): Ingress host/path rules, Exact vs Prefix, no retries, a quiz.

Every check is behavioural where it can be: it sends real requests through the lab's edge or
reads the edge Envoy's admin API, and compares with the learner's answer. Each check is split
into a probe (talks to the lab) and a pure `judge_*` function (unit-tested with fake inputs).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, Iterable, Mapping

from ..envoy.admin import Admin
from . import quiz
from .base import CheckResult, exercise, one_line

LAB = "01-edge-proxy-lab"
NOT_FOUND = "HTTP 404"
NO_ENDPOINT = "HTTP 503"  # the edge's answer when a route's cluster has no ready pod
TIMEOUT = 5.0
SETTLE_S = 3.0  # an applied Ingress reaches the edge a moment later: keep probing this long
EDGE_START_S = 15.0  # with no Ingress of its class the edge goes away; the next one starts it again

# ---- talking to the lab -----------------------------------------------------------------------

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a web proxy


def probe(url: str, path: str, host: str | None = None, timeout: float = TIMEOUT) -> str:
    """Who answered one GET: the app's service name (from its JSON), else 'HTTP <status>'."""
    request = urllib.request.Request(url.rstrip("/") + path)
    if host:
        request.add_header("Host", host)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read() if exc.fp else b""
    except Exception as exc:  # refused, timed out: say so, never raise
        reason = getattr(exc, "reason", None)
        return f"no answer ({one_line(reason if isinstance(reason, BaseException) else exc)})"
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("service"):
        return str(body["service"])
    return f"HTTP {status}"


def edge_admin_url(lab) -> str:
    """The admin URL of the lab's edge proxy."""
    for proxy in lab.proxies():
        if proxy.role == "edge" and proxy.admin_url:
            return proxy.admin_url
    raise LookupError("the lab has no edge proxy with an admin API (is stage 1 up?)")


def envoy_stats(admin_url: str, timeout: float = TIMEOUT) -> dict[str, int]:
    """Every counter and gauge of an Envoy, from its admin API (`/stats?format=json`)."""
    return Admin(admin_url, timeout).stats()


def stat_sum(stats: Mapping[str, int], suffix: str, contains: str = "") -> int:
    """Sum of the `cluster.*` stats ending in `.suffix` (and containing `contains`)."""
    return sum(v for k, v in stats.items()
               if k.startswith("cluster.") and k.endswith("." + suffix) and contains in k)


def edge_clusters(stats: Mapping[str, int]) -> list[str]:
    """The upstream clusters the edge knows (one per Service port an Ingress points at)."""
    return sorted(k[len("cluster."):-len(".upstream_rq_total")] for k in stats
                  if k.startswith("cluster.") and k.endswith(".upstream_rq_total"))


def settled(measure, done, seconds: float | None = None, step: float = 0.2):
    """measure() until done(value) or `seconds` pass (the edge reloads a moment after lab.apply)."""
    deadline = time.monotonic() + (SETTLE_S if seconds is None else seconds)
    while True:
        value = measure()
        if done(value) or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def _table(rows: list[tuple[str, str, str]]) -> str:
    width = max(len(f"Host {h} GET {p}") for h, p, _ in rows)
    return "\n".join(f"{f'Host {h} GET {p}':<{width}}  -> {who}" for h, p, who in rows)


# ---- exercise 1: an Ingress with host and path rules ------------------------------------------

HOST = "shop.local"
INGRESS_PROBES = (  # (host, path, who must answer)
    (HOST, "/", "frontend"),
    (HOST, "/api/catalog", "catalog"),
    (HOST, "/api/catalog/items/7", "catalog"),
    (HOST, "/about", "frontend"),
    ("other.example", "/", NOT_FOUND),
    ("other.example", "/api/catalog", NOT_FOUND),
)


def judge_ingress(seen: Mapping[tuple[str, str], str], empty: Iterable[str] = (),
                  classless: Iterable[str] = ()) -> CheckResult:
    """Pass when every probe was answered by the expected service (or 404). `empty`: the edge's clusters
    with no endpoint (a backend naming a wrong Service or port); `classless`: Ingresses with no
    ingressClassName, which the edge controller (class `edge`) ignores."""
    want = [(h, p, who) for h, p, who in INGRESS_PROBES]
    got = [(h, p, seen.get((h, p), "not sent")) for h, p, _ in INGRESS_PROBES]
    wrong = [(h, p, g, w) for (h, p, w), (_, _, g) in zip(want, got) if g != w]
    received = _table([(h, p, g + ("" if g == w else f"   <- want {w}")) for (h, p, w), (_, _, g) in zip(want, got)])
    if not wrong:
        return CheckResult(True, _table(want), received)
    host, path, who, _ = wrong[0]
    classless = sorted(classless)
    if who.startswith("no answer"):
        why = "the edge did not answer: is the lab up? (lab.up(stage='edge'))"
    elif classless:
        why = (f"Ingress {', '.join(classless)} has no `ingressClassName`: the edge controller serves class "
               "`edge` only, and ignores it (as any controller whose class is not the default would)")
    elif who == NO_ENDPOINT:
        clusters = ", ".join(sorted(empty)) or "?"
        why = (f"Host {host} {path} got HTTP 503: that path's backend has no ready pod behind it (the edge's "
               f"cluster {clusters} has no endpoints): check the Service name and port in its `backend`")
    elif host != HOST and who != NOT_FOUND:
        why = (f"{host} was answered by {who}: some Ingress still matches every host "
               "(the stage's Ingress `shop` has no host; replace it by naming yours `shop`)")
    elif who == NOT_FOUND:
        why = f"no rule matched Host {host} {path}: check the host and the paths"
    else:
        why = f"Host {host} {path} went to {who}"
    return CheckResult(False, _table(want), received + f"\nFirst problem: {why}")


def empty_edge_clusters(lab) -> list[str]:
    """The edge's clusters with no endpoint (local backend: from its admin API); [] when unknown."""
    try:
        return sorted(name for name, hosts in Admin(edge_admin_url(lab), TIMEOUT).clusters().items() if not hosts)
    except Exception:
        return []


def classless_ingresses(lab) -> list[str]:
    """Names of the lab's Ingresses without ingressClassName (where the backend lists its objects)."""
    try:
        return sorted(i["metadata"]["name"] for i in lab.backend.objects("Ingress")
                      if not (i.get("spec") or {}).get("ingressClassName"))
    except Exception:
        return []


@exercise(LAB, "ingress-host-path", hints=[
    "Write one Ingress with a rule for `host: shop.local` and two paths, `/` (frontend) and "
    "`/api/catalog` (catalog), both `pathType: Prefix`; then run the cell with lab.apply(ingress_yaml).",
    "Name it `shop` (metadata.name) so it replaces the stage's Ingress: that one has no host, so it "
    "answers every host and other.example would never get a 404. Keep `ingressClassName: edge`.",
    "Each path: `- path: /api/catalog`, `pathType: Prefix`, `backend: {service: {name: catalog, "
    "port: {number: 9080}}}`; the `/` path is the same with frontend. Both go under "
    "`rules: [{host: shop.local, http: {paths: [...]}}]`.",
])
def ingress_host_path(lab) -> CheckResult:
    """Real requests through the edge: Host shop.local routes by path, other hosts get 404."""
    url = lab.url

    def probe_all():
        return {(h, p): probe(url, p, h) for h, p, _ in INGRESS_PROBES}

    seen = settled(probe_all, lambda value: judge_ingress(value).ok)
    if any(who.startswith("no answer") for who in seen.values()):  # the edge starting (an Ingress it serves is back)
        settled(probe_all, lambda value: not any(w.startswith("no answer") for w in value.values()), EDGE_START_S)
        seen = settled(probe_all, lambda value: judge_ingress(value).ok)
    if judge_ingress(seen).ok:
        return judge_ingress(seen)
    empty = empty_edge_clusters(lab) if NO_ENDPOINT in seen.values() else []
    return judge_ingress(seen, empty, classless_ingresses(lab))


# ---- exercise 2: Exact vs Prefix -----------------------------------------------------------------

PATHS_HOST = "paths.local"
PATHS_DEMO = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: paths-demo
spec:
  ingressClassName: edge
  rules:
  - host: paths.local
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: frontend, port: {number: 9080}}}
      - path: /api/catalog
        pathType: Prefix
        backend: {service: {name: catalog, port: {number: 9080}}}
      - path: /api/reviews
        pathType: Exact
        backend: {service: {name: reviews, port: {number: 9080}}}
"""
PREDICT_PATHS = ("/api/catalog/42", "/api/catalog/", "/api/catalogue", "/api/reviews", "/api/reviews/",
                 "/api/reviews/42")
SERVICES = ("frontend", "catalog", "reviews")


def judge_paths(predictions: Any, actual: Mapping[str, str], demo_ok: bool = True) -> CheckResult:
    """Pass when every prediction names the service that really answered that path."""
    expected = "for each path, the service that really answers it (frontend, catalog or reviews)"
    if not demo_ok:
        return CheckResult(False, "the paths-demo Ingress serving Host paths.local (/api/catalog -> catalog)",
                           f"Host paths.local GET /api/catalog -> {actual.get('/api/catalog', 'not sent')}\n"
                           "Run the cell that applies paths_demo first.")
    if not isinstance(predictions, Mapping):
        return CheckResult(False, expected, f"predictions is a {type(predictions).__name__}, not a dict")
    missing = [p for p in PREDICT_PATHS if not predictions.get(p)]
    if len(missing) == len(PREDICT_PATHS):
        return CheckResult(False, expected, "no predictions yet: fill in the dict `predictions`")
    rows, wrong = [], []
    for path in PREDICT_PATHS:
        guess = str(predictions.get(path) or "").strip().lower() or "(none)"
        real = actual.get(path, "not sent")
        rows.append(f"{path:<17} you: {guess:<9} edge: {real}" + ("" if guess == real else "   <- differs"))
        if guess != real:
            wrong.append(path)
    if not wrong:
        return CheckResult(True, expected, "\n".join(rows))
    return CheckResult(False, expected, "\n".join(rows) + f"\n{len(wrong)} of {len(PREDICT_PATHS)} differ")


@exercise(LAB, "exact-vs-prefix", hints=[
    "Prefix matches whole path elements (split at '/'): /api/catalog matches /api/catalog and "
    "/api/catalog/anything, but not /api/catalogue.",
    "Exact matches one string only: /api/reviews/ (with a trailing slash) is already a different path.",
    "A request that no catalog or reviews rule matches falls through to the `/` Prefix rule: frontend.",
])
def exact_vs_prefix(lab, predictions) -> CheckResult:
    """Send each path with Host paths.local and compare who answered with the predictions."""
    url = lab.url
    settled(lambda: probe(url, "/api/catalog", PATHS_HOST), lambda who: who == "catalog")
    actual = {p: probe(url, p, PATHS_HOST) for p in PREDICT_PATHS + ("/api/catalog",)}
    return judge_paths(predictions, actual, demo_ok=actual["/api/catalog"] == "catalog")


# ---- exercise 3: a failing east-west call, and nobody retries ---------------------------------------

NO_RETRY_FIELDS = {
    "success_rate": "share of the client requests that succeeded",
    "failed_requests": "client requests that failed",
    "failed_ratings_calls": "reviews -> ratings calls that failed",
    "edge_forwarded": "requests the edge sent to the apps during the run (/stats, after - before)",
    "edge_retries": "retries the edge made (/stats: upstream_rq_retry)",
    "edge_ratings_calls": "calls to ratings the edge saw (/stats)",
    "edge_clusters": "the edge's upstream clusters, by name (/stats: cluster.<name>.upstream_rq_total)",
}


def truth_from(result, stats: Mapping[str, int]) -> dict:
    """What really happened: from the TrafficResult and the edge's current /stats."""
    ratings = (getattr(result, "calls", None) or {}).get("reviews->ratings", {})
    statuses = getattr(result, "statuses", None) or {}
    return {"requests": result.requests, "success_rate": result.success_rate, "failed_requests": result.failed,
            "failed_ratings_calls": ratings.get("failed", 0), "ratings_calls": ratings.get("total", 0),
            "edge_forwarded": result.requests, "edge_retries": stat_sum(stats, "upstream_rq_retry"),
            "edge_ratings_calls": stat_sum(stats, "upstream_rq_total", "ratings"),
            "edge_clusters": edge_clusters(stats), "not_found": statuses.get(404, 0)}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _cluster_names(value: Any) -> list[str] | None:
    """Cluster names from a list/set of names (`cluster.X.upstream_rq_total` spelled out is fine too)."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple, set, frozenset)):
        return None
    names = []
    for item in value:
        name = str(item).strip()
        name = name[len("cluster."):] if name.startswith("cluster.") else name
        names.append(name.split(".upstream_rq")[0])
    return sorted(set(names))


def _differs(key: str, got: Any, want: Any) -> str | None:
    """Why a figure is not what the run shows (never the run's figure itself); None when it is."""
    if key == "edge_clusters":
        names = _cluster_names(got)
        if names is None:
            return "give a list of cluster names, as they appear in the edge's /stats"
        if names == list(want):
            return None
        missing, extra = sorted(set(want) - set(names)), sorted(set(names) - set(want))
        return ("the edge has no cluster " + ", ".join(extra) if extra else
                f"the edge has {len(missing)} more cluster(s): look at every key cluster.<name>.upstream_rq_total")
    number = _number(got)
    if number is None:
        return "give a number (not a string or a bool)"
    if abs(number - want) <= (0.005 if key == "success_rate" else 0):
        return None
    return f"{'more' if number > want else 'less'} than the run shows"


def judge_no_retry(answers: Any, truth: Mapping[str, Any]) -> CheckResult:
    """Compare the learner's figures with what the traffic and the edge's counters say. A wrong figure
    is named with what to measure, never with the run's own number."""
    if not isinstance(answers, Mapping):
        return CheckResult(False, "a dict of answers", f"answers is a {type(answers).__name__}")
    if all(answers.get(k) is None for k in NO_RETRY_FIELDS):
        return CheckResult(False, "your figures for: " + ", ".join(NO_RETRY_FIELDS), "nothing filled in yet")
    if truth["requests"] == 0:
        return CheckResult(False, "a traffic run in `result`", "result has no requests: run the traffic cell")
    if truth.get("not_found") and truth["failed_ratings_calls"] == 0:
        return CheckResult(False, "requests that reach the shop through your Ingress (Host shop.local)",
                           f"{truth['not_found']} of {truth['requests']} requests got HTTP 404 from the edge: no "
                           "Ingress rule matched Host shop.local, so no request reached the apps",
                           hints=["Go back to exercise 1: your Ingress `shop` needs a rule for host shop.local "
                                  "(and ingressClassName: edge) and its check must pass; then run the traffic cell "
                                  "of this exercise again."])
    if truth["failed_ratings_calls"] == 0:
        return CheckResult(False, "ratings failing during the run (some reviews -> ratings calls failed)",
                           f"no ratings call failed in `result` ({truth['ratings_calls']} calls)",
                           hints=["Run the cell with lab.inject('ratings', errors=0.5), then the traffic cell again."])
    for key, meaning in NO_RETRY_FIELDS.items():
        got = answers.get(key)
        if got is None:
            return CheckResult(False, f"{key}: {meaning}", f"{key} = None (not filled in yet)")
        why = _differs(key, got, truth[key])
        if why:
            return CheckResult(False, f"{key}: {meaning}", f"{key} = {got!r}: {why}")
    lines = [f"{truth['failed_ratings_calls']} failed ratings calls -> {truth['failed_requests']} failed client "
             f"requests ({truth['success_rate']:.1%} success): every failure reached the client, nobody retried.",
             f"The edge forwarded {truth['edge_forwarded']} requests (one per client request), retried "
             f"{truth['edge_retries']}, and saw {truth['edge_ratings_calls']} of the {truth['ratings_calls']} "
             f"ratings calls; its only upstreams: {', '.join(truth['edge_clusters']) or 'none'}."]
    if truth["failed_requests"] != truth["failed_ratings_calls"]:
        return CheckResult(False, "as many failed client requests as failed ratings calls (no retry anywhere)",
                           "\n".join(lines[:1]) + "\nThey differ: something retried or fell back.")
    return CheckResult(True, "your figures match the traffic and the edge's counters", "\n".join(lines))


@exercise(LAB, "no-retry", hints=[
    "Everything you need is in `result` (success_rate, failed, calls['reviews->ratings']) and in "
    "the two /stats snapshots `before` and `after`.",
    "The edge counts per cluster: `cluster.<name>.upstream_rq_total` and `cluster.<name>.upstream_rq_retry`. "
    "Subtract `before` from `after` for what happened during the run; sum over the edge's clusters.",
    "success_rate = result.success_rate; failed_requests = result.failed; failed_ratings_calls = "
    "result.calls['reviews->ratings']['failed']; edge_forwarded = the sum of the upstream_rq_total deltas; "
    "edge_retries and edge_ratings_calls: sums over keys ending in upstream_rq_retry / containing 'ratings'; "
    "edge_clusters = the <name> of every key cluster.<name>.upstream_rq_total in `after`.",
])
def no_retry(lab, result, answers) -> CheckResult:
    """The learner's figures against the traffic result and the edge's own counters."""
    try:
        stats = envoy_stats(edge_admin_url(lab))
    except Exception as exc:
        return CheckResult(False, "the edge Envoy's admin API answering /stats",
                           f"could not read it: {one_line(exc)} (this exercise needs the local backend's Envoy edge)")
    return judge_no_retry(answers, truth_from(result, stats))


# ---- exercise 4: a judgement quiz ------------------------------------------------------------------

QUIZ = {  # question -> (right letter, {letter: why it is wrong})
    "q1": ("a", {"b": "a sidecar in every pod is stage 4: far more than publishing two routes needs",
                 "c": "a control plane (stage 5) manages east-west traffic; the need here is north-south only",
                 "d": "a proxy per node (stage 3) is for traffic between services, not into the cluster"}),
    "q2": ("b", {"a": "the edge only sees requests entering the cluster; reviews -> ratings never passes it",
                 "c": "a Service only balances connections (L4): it has no notion of a failed request to retry",
                 "d": "a Deployment says how to run pods; retrying there means changing the application's code"}),
    "q3": ("a", {"b": "reviews -> ratings is an east-west call: the edge never sees it",
                 "c": "the edge does not know ratings pods exist: its only upstreams are the Ingress's backends",
                 "d": "frontend -> catalog happens inside the cluster, out of the edge's sight"}),
    "q4": ("c", {"a": "an edge proxy gives no L7 control between the monolith and the services",
                 "b": "a sidecar in every pod costs one proxy per pod, and a VM monolith has no pods",
                 "d": "a retry library means changing the monolith's code, which the question rules out"}),
}


def judge_quiz(answers: Any) -> CheckResult:
    """This lab's quiz, judged by the shared quiz judge."""
    return quiz.judge(answers, QUIZ)


@exercise(LAB, "which-stage", hints=[
    "Ask of each option: does the traffic in question pass through that proxy? The edge sees north-south "
    "traffic only.",
    "Look at the trade-offs of each stage: meshlab.widgets.StageExplorer(stage=3) for the per-node proxy.",
    "The seed: an edge proxy is simple (这种改造十分简单) but cannot manage service-to-service traffic "
    "(无法管理服务间流量); a per-node proxy suits large monoliths on VMs (更适合基于物理机/虚拟机的大型单体应用).",
])
def which_stage(answers) -> CheckResult:
    """A multiple-choice quiz, checked with feedback on each wrong choice."""
    return judge_quiz(answers)
