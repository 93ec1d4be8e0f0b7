"""Checks of lab 06 (multi-cluster): name the calls of real traces that crossed a network, predict and measure
what losing a whole cluster costs, and make reviews fail over to cluster-2 when cluster-1's copy dies.

As in labs 01-05, each check is a probe (talks to the lab: real traffic and its traces, the lab's pods, kills
and restores) and a pure `judge_*` function that the unit tests feed with fakes. Nothing here trusts timing
to the millisecond: the failover check counts failed requests under load against a bound and reports the
switch time it measured; the outage check compares a prediction with categories of measured figures, and tells
a wrong prediction only which half of it (the share that failed, or the services still answering) is wrong for
which cluster: the measured figures show once the prediction is right.
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections import Counter
from typing import Any, Callable, Iterable, Mapping

from .. import failover as _failover
from .. import traffic as _traffic
from ..failover import OUTSIDE, Failover, app_hops, cluster_counts
from ..tables import text_table
from .base import CheckResult, exercise, one_line
from .quiz import after as quiz_after

LAB = "06-multicluster-lab"
CLUSTERS = ("cluster-1", "cluster-2")
HOME, OTHER = CLUSTERS
SERVICES = ("frontend", "catalog", "reviews", "ratings", "payments")
SAMPLE = 200  # requests whose traces the crossings check reads
MIN_REQUESTS = 100  # requests each measured run of the outage exercise must have
MAX_FAILED = 12  # failed requests allowed while reviews switches to cluster-2 (and "none" of an outage)
LOAD = 2  # concurrency of the load the failover check keeps up while it kills (2: about 50 requests a second)
POLL_S = 0.1
WARMUP_S = 1.0  # load before the kill
SWITCH_TIMEOUT_S = 15.0  # how long the failover check waits for cluster-2 to answer reviews
SETTLE_S = 1.5  # how long it keeps the load up after the switch, to count late failures
BACK_TIMEOUT_S = 30.0  # how long it waits for reviews to come home after restore()
HEALTHY_TIMEOUT_S = 60.0  # wait_healthy's default
RECOVER_S = 30.0  # how long a check waits for a lab it finds unhealthy
BEFORE_N = 100  # requests of the failover check's sample before anything is killed
DEFAULT_5XX = 5  # Istio's outlierDetection.consecutive5xxErrors when unset
DEFAULT_INTERVAL_S = 10.0  # Istio's outlierDetection.interval when unset
MAX_INTERVAL_S = 10.0  # a longer sweep leaves a recovered pod out that much longer after its ejection
DEFAULT_MAX_EJECTION = 10  # Istio's outlierDetection.maxEjectionPercent when unset
background = _traffic.background  # the load generator (the unit tests put a fake here)


# ---- reading traces ---------------------------------------------------------------------------------------

def place(hop: Mapping, pods: Mapping[str, str] | None = None) -> str:
    """Where an app hop ran: the cluster of its pod (from the lab's pods, else the hop's own cluster= stamp),
    or `outside` for a process of neither cluster (the legacy payments host has no pod and no sidecar)."""
    pod = hop.get("pod") or hop.get("name") or ""
    return (pods or {}).get(pod) or hop.get("cluster") or OUTSIDE


def crossings(hops: Iterable[Mapping], pods: Mapping[str, str] | None = None) -> list[str]:
    """'caller->callee' for every call of a path whose two ends ran in different places (the truth)."""
    apps = app_hops(hops)
    return [f"{a.get('service')}->{b.get('service')}" for a, b in zip(apps, apps[1:])
            if place(a, pods) != place(b, pods)]


def by_node(hops: Iterable[Mapping]) -> list[str]:
    """What comparing node names instead of clusters would answer (a typical mistake: node-1 is in every cluster)."""
    apps = app_hops(hops)
    return [f"{a.get('service')}->{b.get('service')}" for a, b in zip(apps, apps[1:]) if a.get("node") != b.get("node")]


def label(hops: Iterable[Mapping], pods: Mapping[str, str] | None = None) -> str:
    """One path as text, every app with its place: 'frontend v1 [cluster-1] -> reviews v2 [cluster-2]'."""
    return " -> ".join(f"{h.get('service')} {h.get('version', '')}".replace("  ", " ").strip() + f" [{place(h, pods)}]"
                       for h in app_hops(hops))


def hop_table(hops: Iterable[Mapping]) -> str:
    """A traced path as a table, one row per hop, with every field that says where the hop ran."""
    rows = []
    for i, hop in enumerate(hops or [], 1):
        if hop.get("kind") == "app":
            what = f"app {hop.get('service', '?')} {hop.get('version', '')}".strip()
        else:
            what = f"{hop.get('kind', '?')} {hop.get('role', '')} {hop.get('dir', '')}".strip()
        rows.append((i, what, hop.get("pod") or hop.get("name") or "", hop.get("node") or "",
                     hop.get("cluster") or "-", hop.get("peer") or ""))
    return "\n".join(text_table(("#", "hop", "name", "node", "cluster", "peer (verified caller)"), rows))


def crossing_path(result, pods: Mapping[str, str] | None = None) -> list[dict]:
    """The hops of one path of a traffic result that crossed between the two clusters ([] when none did)."""
    for path in getattr(result, "paths", None) or []:
        places = [place(h, pods) for h in app_hops(path.get("hops"))]
        if HOME in places and OTHER in places:
            return [dict(h) for h in path["hops"]]
    return []


def answering(result) -> set[str]:
    """The services that answered at least one call in a traffic result's traces."""
    return {h.get("service") for path in getattr(result, "paths", None) or [] for h in app_hops(path.get("hops"))
            if h.get("service")}


def clusters_seen(result) -> set[str]:
    """The clusters of every app hop in a traffic result's traces."""
    return {h.get("cluster") for path in getattr(result, "paths", None) or [] for h in app_hops(path.get("hops"))
            if h.get("cluster")}


def _first_error(result) -> str:
    errors = getattr(result, "errors", None) or []
    return f" ({errors[0]})" if errors else ""


# ---- waiting for a healthy lab --------------------------------------------------------------------------

def unhealthy(lab) -> list[str]:
    """What is not healthy in a running lab: pods not ready, sidecars not SYNCED (empty when all is well)."""
    problems = [f"pod {p.name} ({getattr(p, 'cluster', '')}) not ready" for p in lab.pods()
                if not p.ready and getattr(p, "phase", "Running") != "Terminating"]
    try:
        table = lab.proxy_status()
    except Exception as exc:  # a control plane that does not answer
        return problems + [f"proxy status: {one_line(exc)}"]
    problems += [f"sidecar {p.pod} {p.state}" for p in table if p.state != "SYNCED"]
    return problems


def wait_healthy(lab, timeout: float | None = None) -> list[str]:
    """Wait until every pod of both clusters is ready and every sidecar SYNCED, and 20 requests through the edge
    succeed; returns what is still wrong at the timeout ([] when healthy)."""
    deadline = time.monotonic() + (HEALTHY_TIMEOUT_S if timeout is None else timeout)
    while True:
        problems = unhealthy(lab)
        if not problems:
            probe = lab.traffic(n=20, concurrency=2, progress=False)
            if not probe.failed:
                return []
            problems = [f"{probe.failed} of {probe.requests} requests failed{_first_error(probe)}"]
        if time.monotonic() >= deadline:
            return problems
        time.sleep(5 * POLL_S)


# ---- exercise 1: which calls crossed a network ------------------------------------------------------------

CROSSED_EXPECTED = ("crossed(hops) returns, for any traced path, every call (caller->callee, by service) whose two "
                    "ends ran in different places: cluster-1, cluster-2, or outside both clusters")


def read_answer(value: Any) -> list[str] | None:
    """The learner's crossings as normalised 'caller->callee' strings (None when it is not a list of them)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        return None
    out = []
    for item in value:
        if isinstance(item, (tuple, list)) and len(item) == 2:
            item = f"{item[0]}->{item[1]}"
        if not isinstance(item, str):
            return None
        out.append("".join(item.split()).lower().replace("→", "->"))
    return out


def _why(truth: list[str], got: list[str], hops: list[dict]) -> str:
    """What a typical wrong answer got wrong, for one path."""
    services = set(SERVICES)
    strange = [g for g in got if "->" not in g or not set(g.split("->")) <= services]
    if strange:
        return (f"these are not calls between the shop's services: {', '.join(strange)}. Name each call "
                "caller->callee by service (app hops only: proxy hops, such as the edge's, make no call of their own)")
    if sorted(got) == sorted(by_node(hops)) and sorted(got) != sorted(truth):
        return ("this is what comparing node names gives. Every cluster has a node-1, node-2 and node-3: the same "
                "node name in two clusters is two machines, and two nodes of one cluster share its network. "
                "Compare where the hops ran (cluster=)")
    missing = [t for t in truth if t not in got]
    extra = [g for g in got if g not in truth]
    if missing == ["frontend->payments"] and not extra:
        return ("payments has no cluster=: it is the legacy service, a plain process outside both clusters with no "
                "sidecar. A call to it leaves the cluster's network too")
    if extra and not missing:
        return f"these stayed in one place: {', '.join(extra)}"
    if missing and not extra:
        return f"these crossed and are missing: {', '.join(missing)} (a path can cross more than once)"
    return f"missing: {', '.join(missing) or '-'}; should not be there: {', '.join(extra) or '-'}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def judge_crossings(crossed: Callable, result, pods: Mapping[str, str]) -> CheckResult:
    """Apply the learner's `crossed(hops)` to every distinct path of a traffic result and compare with the truth.
    `pods`: pod name -> cluster, as the lab lists them."""
    if not callable(crossed):
        return CheckResult(False, CROSSED_EXPECTED, f"`crossed` is a {type(crossed).__name__}, not a function")
    paths = [p for p in getattr(result, "paths", None) or [] if app_hops(p.get("hops"))]
    if not paths:
        return CheckResult(False, CROSSED_EXPECTED, f"no traced request to read{_first_error(result)}: is the lab up? "
                           "(run the set-up cell)")
    truths = [crossings(p["hops"], pods) for p in paths]
    between = sum(int(p.get("count") or 1) for p in paths
                  if {HOME, OTHER} <= {place(h, pods) for h in app_hops(p["hops"])})
    if not between:
        return CheckResult(False, CROSSED_EXPECTED, f"no call crossed between the clusters in {result.requests} "
                           "requests, so there is nothing to check yet. Calls cross when nothing keeps them local: "
                           "delete any DestinationRule for reviews or ratings you applied (lab.delete(YAML)) and run "
                           "this check again")
    order = sorted(range(len(paths)), key=lambda i: (not truths[i], -len(truths[i])))  # the crossing paths first
    for i in order:
        hops = copy.deepcopy(paths[i]["hops"])
        try:
            raw = crossed(hops)
        except Exception as exc:
            return CheckResult(False, CROSSED_EXPECTED, f"crossed(hops) raised {one_line(exc)} on the path "
                               f"{label(paths[i]['hops'], pods)}")
        got = read_answer(raw)
        if got is None:
            return CheckResult(False, CROSSED_EXPECTED, "crossed(hops) must return a list of 'caller->callee' "
                               f"strings; it returned {_short(raw)}")
        if Counter(got) != Counter(truths[i]):
            return CheckResult(False, CROSSED_EXPECTED, f"on the path {label(paths[i]['hops'], pods)}\n"
                               f"expected {sorted(truths[i])}, your crossed() said {sorted(got)}\n"
                               f"{_why(truths[i], got, paths[i]['hops'])}")
    legacy = sum(int(p.get("count") or 1) for p, t in zip(paths, truths) if any(x.endswith("->payments") for x in t))
    return CheckResult(True, CROSSED_EXPECTED, f"right on all {len(paths)} distinct paths of {result.requests} "
                       f"requests ({between} traced requests crossed between the clusters, through an east-west "
                       f"gateway; {legacy} called the legacy host outside them)")


@exercise(LAB, "crossed-networks", hints=[
    "A call is two app hops in a row (caller, then callee); the proxy hops between them are the caller's and the "
    "callee's sidecars. Where did each app run? Every app hop says it.",
    "Compare the `cluster` of consecutive app hops, not their `node`: node-1 exists in both clusters. payments has "
    "no cluster at all (no sidecar, outside both clusters): a call to it crosses too.",
    "apps = [h for h in hops if h['kind'] == 'app']; return [f\"{a['service']}->{b['service']}\" for a, b in "
    "zip(apps, apps[1:]) if a.get('cluster', 'outside') != b.get('cluster', 'outside')]",
])
def crossed_networks(lab, crossed) -> CheckResult:
    """The learner's function, applied to the traces of fresh traffic; the truth from the lab's pods."""
    if not callable(crossed):
        return judge_crossings(crossed, None, {})
    result = lab.traffic(n=SAMPLE, concurrency=4, progress=False)
    pods = {p.name: getattr(p, "cluster", "") for p in lab.pods()}
    return judge_crossings(crossed, result, pods)


# ---- exercise 2: what a whole-cluster outage costs ---------------------------------------------------------

CATEGORIES = ("none", "some", "all")
QUIZ = {  # question -> (right letter, {letter: why it is wrong})
    "q1": ("b", {"a": "cluster-2's copies were serving all along: a share of the calls to reviews and ratings "
                      "crossed into cluster-2 before the outage (exercise 1)",
                 "c": "each control plane is a primary for its own cluster (multi-primary): without its peer it "
                      "keeps running, it only loses the peer's endpoints",
                 "d": "each cluster's intermediate CA is signed by the shared root, and every sidecar trusts the "
                      "root: no peer is needed at run time"}),
    "q2": ("c", {"a": "reviews and ratings are not what failed: no request reaches them",
                 "b": "a DestinationRule configures the callers of frontend, and its only caller, the edge, died with "
                      "cluster-1",
                 "d": "mTLS secures the calls that are made; it does not give customers a way in"}),
    "q3": ("a", {"b": "an east-west gateway forwards only to the pods of its own cluster",
                 "c": "the edge of stage 1 retries nothing; the retries are the sidecars' (Istio's default policy)",
                 "d": "the traces of exercise 1 showed calls crossing into cluster-2 without any DestinationRule"}),
}
OUTAGE_KEYS = ("healthy", *reversed(CLUSTERS))  # healthy, cluster-2, cluster-1
OUTAGE_EXPECTED = ("your prediction for each outage matches what you measured: the share of requests that failed "
                   f"(none: at most {MAX_FAILED}, all, or some) and the services that still answered; and the quiz "
                   "right")


def category(result) -> str:
    """none (at most MAX_FAILED failed: caught in a switch), all (every request failed) or some."""
    if result.failed >= result.requests:
        return "all"
    return "none" if result.failed <= MAX_FAILED else "some"


def read_prediction(prediction: Any) -> tuple[dict[str, tuple[str, set[str]]], str]:
    """({cluster: (failed category, answering services)}, problem) from the learner's prediction."""
    if not isinstance(prediction, Mapping):
        return {}, f"prediction is a {type(prediction).__name__}, not a dict"
    out, problems = {}, []
    if all(isinstance(e, Mapping) and not e.get("failed") and e.get("failed") != 0 and not e.get("answering")
           for e in (prediction.get(c) for c in CLUSTERS)):
        return {}, "no prediction yet: fill in 'failed' and 'answering' for each cluster"
    for cluster in CLUSTERS:
        entry = prediction.get(cluster)
        if not isinstance(entry, Mapping):
            problems.append(f"prediction[{cluster!r}] is missing: a dict with 'failed' and 'answering'")
            continue
        failed = entry.get("failed")
        if isinstance(failed, (int, float)) and not isinstance(failed, bool) and 0 <= failed <= 1:
            failed = "none" if failed == 0 else "all" if failed == 1 else "some"
        failed = str(failed or "").strip().lower()
        if failed not in CATEGORIES:
            problems.append(f"prediction[{cluster!r}]['failed'] is {entry.get('failed')!r}: write 'none', 'some' or "
                            "'all'")
        names = entry.get("answering")
        names = [names] if isinstance(names, str) else list(names or [])
        cleaned = {str(n).strip().lower() for n in names}
        unknown = sorted(cleaned - set(SERVICES))
        if unknown:
            problems.append(f"prediction[{cluster!r}]['answering'] names no service of the shop: {', '.join(unknown)} "
                            f"(the services: {', '.join(SERVICES)})")
        out[cluster] = (failed, cleaned)
    return out, "; ".join(problems)


def _names(services: Iterable[str]) -> str:
    return ", ".join(s for s in SERVICES if s in set(services)) or "none"


def judge_outage(prediction: Any, answers: Any, outage: Any) -> CheckResult:
    """`outage`: {'healthy', 'cluster-2', 'cluster-1'}: traffic results measured with the lab healthy, with cluster-2
    down, with cluster-1 down. A wrong prediction is told which half is wrong for which cluster, not what was
    measured (that would hand over the answer); a right one sees its figures, then the quiz decides."""
    predicted, problem = read_prediction(prediction)
    if problem:
        return CheckResult(False, OUTAGE_EXPECTED, problem)
    if not isinstance(outage, Mapping) or not all(outage.get(k) is not None for k in OUTAGE_KEYS):
        got = sorted(k for k in OUTAGE_KEYS if isinstance(outage, Mapping) and outage.get(k) is not None)
        return CheckResult(False, OUTAGE_EXPECTED, "no outage measured yet: run the experiment so that `outage` holds "
                           f"{', '.join(OUTAGE_KEYS)} (it has: {', '.join(got) or 'nothing'})")
    for key in OUTAGE_KEYS:
        if getattr(outage[key], "requests", 0) < MIN_REQUESTS:
            return CheckResult(False, OUTAGE_EXPECTED, f"outage[{key!r}]: {getattr(outage[key], 'requests', 0)} "
                               f"requests; send at least {MIN_REQUESTS} each time (lab.traffic(n=200))")
    healthy = outage["healthy"]
    if healthy.failed:
        return CheckResult(False, OUTAGE_EXPECTED, f"{healthy.failed} of {healthy.requests} requests failed with "
                           f"the lab healthy{_first_error(healthy)}: restore it (lab.restore(), wait_healthy(lab)) "
                           "and measure again")
    for cluster in CLUSTERS:
        if cluster in clusters_seen(outage[cluster]):
            return CheckResult(False, OUTAGE_EXPECTED, f"outage[{cluster!r}]: pods of {cluster} answered requests: "
                               f"was {cluster} down while you measured? (lab.kill(cluster={cluster!r}))")
    before = answering(healthy)
    ok = f"healthy: {healthy.requests - healthy.failed}/{healthy.requests} ok"
    lines, verdicts, wrong = [f"{ok}; answering: {_names(before)}"], [ok], []
    for cluster in reversed(CLUSTERS):
        run = outage[cluster]
        measured, still = category(run), answering(run) & before
        guess, names = predicted[cluster]
        names &= before  # a service no request reached even when healthy cannot be lost
        lines.append(f"{cluster} down: {run.failed} of {run.requests} failed = {measured} (you said {guess}); "
                     f"answering: {_names(still)} (you said {_names(names)})")
        halves = []  # what a wrong prediction is told: which half, never the measured value
        if guess != measured:
            wrong.append(f"{cluster}: failed")
            halves.append(f"'failed' is not the share you measured (you said {guess})")
        if names != still:
            wrong.append(f"{cluster}: answering")
            halves.append(f"'answering' is not the set of services that answered (you said {_names(names)})")
        verdicts.append(f"{cluster} down: " + ("; ".join(halves) or "your prediction matches the measurement"))
    if wrong:  # the measured figures stay hidden until the prediction is right: predict, then compare
        return CheckResult(False, OUTAGE_EXPECTED, "\n".join(verdicts) + "\nthe prediction differs from the "
                           f"measurement: {', '.join(wrong)}. Look at where each service runs, and at how a request "
                           "comes in; the measured figures show here once the prediction is right")
    return quiz_after(OUTAGE_EXPECTED, "\n".join(lines), "prediction", answers, QUIZ)


@exercise(LAB, "cluster-outage", hints=[
    "Where does each service run (lab.pods(), with .cluster)? And where does every request come in? A request needs "
    "every service on its path, starting with the way in.",
    "cluster-2 runs copies of reviews and ratings only; cluster-1 runs the edge, frontend and catalog, and copies of "
    "reviews and ratings. payments runs outside both, but only frontend calls it. In the experiment: kill, "
    "lab.traffic(n=200), lab.restore(), wait_healthy(lab), one cluster after the other.",
    "prediction = {'cluster-2': {'failed': 'none', 'answering': ['frontend', 'catalog', 'reviews', 'ratings', "
    "'payments']}, 'cluster-1': {'failed': 'all', 'answering': []}}; answers = {'q1': 'b', 'q2': 'c', 'q3': 'a'}",
])
def cluster_outage(lab, prediction, answers, outage) -> CheckResult:
    """The learner's prediction and measurements; then the lab must be whole again."""
    result = judge_outage(prediction, answers, outage)
    if not result.ok:
        return result
    problems = wait_healthy(lab, timeout=RECOVER_S)
    if problems:
        return CheckResult(False, "both clusters whole again after the experiment",
                           f"not yet: {'; '.join(problems[:4])}. Run lab.restore() and wait_healthy(lab)")
    return result


# ---- exercise 3: locality failover, measured under load ---------------------------------------------------

FAILOVER_EXPECTED = ("calls to reviews stay in cluster-1 while its copy is healthy; when every reviews pod of "
                     f"cluster-1 dies under load, at most {MAX_FAILED} requests fail before cluster-2 answers them "
                     "(and outlierDetection would hold that bound for pods failing while still ready); and after "
                     "restore() they come back to cluster-1")


def describe_rules(rules: Iterable[Mapping]) -> str:
    """What is wrong with the DestinationRules for reviews, as far as reading them tells ('' when nothing is)."""
    rules = [r for r in rules or [] if str((r.get("spec") or {}).get("host", "")).split(".")[0] == "reviews"]
    if not rules:
        return ("there is no DestinationRule for host reviews in cluster-1, where frontend runs (lab.apply(yaml) "
                "without cluster= applies to both clusters)")
    policy = (rules[0].get("spec") or {}).get("trafficPolicy") or {}
    locality = (policy.get("loadBalancer") or {}).get("localityLbSetting") or {}
    if not policy.get("outlierDetection"):
        return ("the DestinationRule for reviews has no outlierDetection: without it Istio ignores the locality "
                "settings, and every endpoint, local or behind cluster-2's gateway, gets a share")
    if locality.get("enabled") is False:
        return "localityLbSetting.enabled is false: locality load balancing is off"
    return ""


def reviews_rule(rules: Iterable[Mapping] | None) -> Mapping | None:
    """The first DestinationRule for host reviews (by its short name), or None."""
    return next((r for r in rules or [] if isinstance(r, Mapping)
                 and str((r.get("spec") or {}).get("host", "")).split(".")[0] == "reviews"), None)


def duration_s(value: Any) -> float | None:
    """A protobuf duration as Istio writes it ('1s', '500ms', '1.5m', '1h') in seconds; None when it is none."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*", str(value))
    if not match:
        return None
    return float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def _count(value: Any) -> int | None:
    """A whole number field (Istio's int32/uint32), or None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number == int(number) else None


def judge_outlier(rules: Iterable[Mapping] | None, local: int) -> CheckResult | None:
    """None when the reviews rule's outlierDetection can take every failing local pod out fast enough, else which
    field is wrong. Killed pods also leave the endpoints when they go unready, but a pod that fails while it stays
    ready (its app answers 500) leaves only by ejection: `local` such pods cost local x consecutive5xxErrors failed
    requests, all of them must be ejectable, and a recovered pod comes back only at a sweep of the detector."""
    rule = reviews_rule(rules)
    policy = ((rule or {}).get("spec") or {}).get("trafficPolicy") or {}
    outlier = policy.get("outlierDetection") if isinstance(policy, Mapping) else None
    if not isinstance(outlier, Mapping) or not outlier or local < 1:
        return None  # no rule, or no outlierDetection: judge_local says what is missing

    def wrong(field: str, why: str) -> CheckResult:
        return CheckResult(False, FAILOVER_EXPECTED, f"outlierDetection.{field} {why}", hints=[
            "consecutive5xxErrors: 1 ejects a failing pod at its first error, interval: 1s sweeps every second, "
            "maxEjectionPercent: 100 lets every local pod go."])

    unset = " (not set: Istio's default)"
    errors = _count(outlier.get("consecutive5xxErrors", DEFAULT_5XX))
    said = "" if "consecutive5xxErrors" in outlier else unset
    if errors is None or errors < 0:
        return wrong("consecutive5xxErrors", f"is {outlier.get('consecutive5xxErrors')!r}: write a small whole number")
    if errors == 0:
        return wrong("consecutive5xxErrors", "is 0, which turns ejection on 5xx errors off: a reviews pod that answers "
                     "500 while it stays ready is never ejected, and keeps its share of the calls")
    if errors * local > MAX_FAILED:
        return wrong("consecutive5xxErrors", f"is {errors}{said}: a reviews pod that fails while it stays ready (its "
                     "app answers 500, so nothing removes it from the endpoints; only ejection does) gets "
                     f"{errors} calls in a row before it is ejected: with {local} local pods about {errors * local} "
                     f"requests fail before cluster-2 takes over, and at most {MAX_FAILED} may. Eject a pod at its "
                     "first error or two")
    interval = duration_s(outlier.get("interval", f"{DEFAULT_INTERVAL_S:g}s"))
    said = "" if "interval" in outlier else unset
    if interval is None or interval <= 0:
        return wrong("interval", f"is {outlier.get('interval')!r}: write a duration such as 1s")
    if interval > MAX_INTERVAL_S:
        return wrong("interval", f"is {interval:g}s{said}: Envoy's detector sweeps the endpoints that often, and only "
                     "at a sweep does an ejected pod come back once its baseEjectionTime is over. A recovered "
                     f"cluster-1 reviews would stay out up to {interval:g} s longer. Sweep at least every "
                     f"{MAX_INTERVAL_S:g} s (1s is usual here)")
    percent = _count(outlier.get("maxEjectionPercent", DEFAULT_MAX_EJECTION))
    said = "" if "maxEjectionPercent" in outlier else unset
    needed = math.ceil(100 * local / (local + 1))  # the local pods, and cluster-2's gateway as one endpoint
    if percent is None or percent < needed:
        shown = outlier.get("maxEjectionPercent", DEFAULT_MAX_EJECTION)
        return wrong("maxEjectionPercent", f"is {shown!r}{said}: Envoy ejects at most that share of the {local + 1} "
                     f"endpoints of reviews ({local} local pods and cluster-2's gateway; never fewer than one), so "
                     f"when every local pod fails, some keep getting calls. It must be at least {needed} (100 is "
                     "simplest)")
    return None


def lone_timeout(result) -> bool:
    """Whether a sample's only fault is one request that timed out, and every reviews call it traced stayed in
    cluster-1: a one-off (seen right after an earlier run of this check had killed and restored pods) that says
    nothing about the answer. The failover check sends such a 'before' sample again, once."""
    errors = getattr(result, "errors", None) or []
    return (getattr(result, "failed", 0) == 1 and bool(errors) and all(str(e).startswith("timeout") for e in errors)
            and not cluster_counts(result).get(OTHER))


def sample_before(lab) -> tuple[Any, Any]:
    """(the sample the failover check judges before it kills anything, the sample it replaced or None): BEFORE_N
    requests, sent once more when the first sample's only fault is a lone timeout. The sample judged must still
    have no failed request and every call to reviews answered in cluster-1."""
    first = lab.traffic(n=BEFORE_N, concurrency=4, progress=False)
    if not lone_timeout(first):
        return first, None
    return lab.traffic(n=BEFORE_N, concurrency=4, progress=False), first


def judge_local(before, rules: Iterable[Mapping] | None = None, replaced=None) -> CheckResult | None:
    """None when every reviews call of `before` was answered in cluster-1 with no failure, else why not.
    `replaced`: an earlier sample with a lone timeout that `before` was sent to replace (for the message)."""
    if before is None or not getattr(before, "requests", 0):
        return CheckResult(False, FAILOVER_EXPECTED, "no traffic could be sent through the edge")
    counts = cluster_counts(before)
    if counts.get(OTHER) or (not counts.get(HOME) and not before.failed):
        why = describe_rules(rules) if rules is not None else ""  # not local: that is the answer's fault, first
        return CheckResult(False, FAILOVER_EXPECTED, f"before anything failed, reviews answered from {_split(counts)}: "
                           "calls do not stay in cluster-1" + (f"; {why}" if why else ""))
    if before.failed:
        again = (f", and {replaced.failed} of {replaced.requests} timed out in the sample before it, so it is not a "
                 "one-off" if replaced is not None else "")
        return CheckResult(False, FAILOVER_EXPECTED, f"{before.failed} of {before.requests} requests failed before "
                           f"anything was killed{_first_error(before)}{again}. With nothing killed no request should "
                           "fail: see which call fails in lab.traffic(n=100).errors. A DestinationRule for reviews "
                           "needs no more than loadBalancer and outlierDetection; and if a pod is still down from an "
                           "earlier kill: lab.restore(), then wait_healthy(lab)")
    return None


def judge_failover(before, failover: Failover | None = None, during=None, back: tuple[float, Any] | None = None,
                   rules: Iterable[Mapping] | None = None) -> CheckResult:
    """`before`: traffic with everything healthy; `failover`: the load across the kill of cluster-1's reviews;
    `during`: traffic after the switch; `back`: (seconds, traffic) after restore(), or None if it never came back;
    `rules`: the DestinationRules stored (for the messages only)."""
    not_local = judge_local(before, rules)
    if not_local is not None:
        return not_local
    counts = cluster_counts(before)
    text = f"before: reviews answered {counts[HOME]}/{sum(counts.values())} from {HOME}"
    if failover is None:
        return CheckResult(False, FAILOVER_EXPECTED, f"{text}; the failover was not measured")
    killed = f"killed {', '.join(failover.killed)} under load"
    if failover.switch_s is None:
        return CheckResult(False, FAILOVER_EXPECTED, f"{text}\n{killed}: {failover.failed} of {failover.requests} "
                           f"requests failed, and reviews never answered from {OTHER} within {SWITCH_TIMEOUT_S:g} s"
                           f"{_first_error(failover)}. Does a `distribute` rule keep every call in region-1, or a "
                           "`failover` send region-1 elsewhere than region-2?")
    switched = (f"{killed}: {failover.failed} of {failover.requests} requests failed; {OTHER} answered reviews "
                f"{failover.switch_s:.1f} s after the first kill")
    if failover.failed > MAX_FAILED:
        return CheckResult(False, FAILOVER_EXPECTED, f"{text}\n{switched}: more than {MAX_FAILED} failed. Each failed "
                           "request met a dead pod that was not ejected yet", hints=[
                               "Eject a dead pod at its first error (consecutive5xxErrors: 1, interval: 1s) and let "
                               "every local pod be ejected (maxEjectionPercent: 100: Envoy's default ejects at most "
                               "10% of the pods, and never less than one, at a time)."])
    later = cluster_counts(during) if during is not None else Counter()
    if during is None or during.failed or later.get(HOME) or not later.get(OTHER):
        what = (f"{during.failed} of {during.requests} failed{_first_error(during)}; reviews from {_split(later)}"
                if during is not None else "no traffic")
        return CheckResult(False, FAILOVER_EXPECTED, f"{text}\n{switched}\nthen, with cluster-1's reviews still down: "
                           f"{what}")
    text += f"\n{switched}\nthen: {later[OTHER]}/{during.requests} from {OTHER}, 0 failed"
    if back is None:
        return CheckResult(False, FAILOVER_EXPECTED, f"{text}\nafter restore(), reviews did not come back to {HOME} "
                           f"within {BACK_TIMEOUT_S:g} s")
    seconds, home = back
    return CheckResult(True, FAILOVER_EXPECTED, f"{text}\nafter restore(): back in {HOME} {seconds:.1f} s later "
                       f"({cluster_counts(home)[HOME]}/{home.requests}, 0 failed)")


def _split(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{c} {n}" for c, n in sorted(counts.items())) or "nowhere"


def measure_failover(lab) -> Failover:
    """Kill every reviews pod of cluster-1 while load runs; watch the traces until cluster-2 answers reviews (and a
    little longer), or give up after SWITCH_TIMEOUT_S. The pods stay down until restore() (meshlab/failover.py)."""
    return _failover.measure(lab, "reviews", HOME, OTHER, concurrency=LOAD, warmup_s=WARMUP_S, poll_s=POLL_S,
                             timeout_s=SWITCH_TIMEOUT_S, settle_s=SETTLE_S, background=background)


def come_back(lab) -> tuple[float, Any] | None:
    """restore(), then (seconds until a batch of requests has reviews all in cluster-1 again with none failed,
    that batch), or None after BACK_TIMEOUT_S."""
    begin = time.monotonic()
    lab.restore()
    while time.monotonic() - begin < BACK_TIMEOUT_S:
        result = lab.traffic(n=50, concurrency=4, progress=False)
        counts = cluster_counts(result)
        if not result.failed and counts.get(HOME) and not counts.get(OTHER):
            return time.monotonic() - begin, result
        time.sleep(POLL_S)
    return None


def stored_rules(lab) -> list[dict] | None:
    """The DestinationRules stored in cluster-1 (None when the backend cannot list them)."""
    try:
        return list(lab.backend.objects("DestinationRule"))
    except Exception:
        return None


@exercise(LAB, "locality-failover", hints=[
    "One DestinationRule for host reviews, applied to both clusters: a trafficPolicy with a loadBalancer that has a "
    "localityLbSetting, and outlierDetection (without it, Istio ignores locality settings).",
    "localityLbSetting: {enabled: true, failover: [{from: region-1, to: region-2}]}; outlierDetection must eject a "
    "dead pod at once and may eject them all: consecutive5xxErrors 1, a short interval, maxEjectionPercent 100.",
    "spec: {host: reviews, trafficPolicy: {loadBalancer: {localityLbSetting: {enabled: true, failover: [{from: "
    "region-1, to: region-2}]}}, outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, "
    "maxEjectionPercent: 100}}}",
])
def locality_failover(lab) -> CheckResult:
    """Traffic (local?), then the kill of cluster-1's reviews under load, traffic again, restore and the way home."""
    problems = wait_healthy(lab, timeout=RECOVER_S)
    if problems:
        return CheckResult(False, FAILOVER_EXPECTED, f"the lab is not healthy: {'; '.join(problems[:4])}. Run "
                           "lab.restore() and wait_healthy(lab)")
    before, replaced = sample_before(lab)  # a lone timeout left over from an earlier run is sent again, once
    rules = stored_rules(lab)
    not_local = judge_local(before, rules, replaced)
    if not_local is not None:
        return not_local  # not local to begin with: nothing to kill
    local = sum(1 for p in lab.pods() if p.service == "reviews" and getattr(p, "cluster", "") == HOME)
    badly_tuned = judge_outlier(rules, local)
    if badly_tuned is not None:
        return badly_tuned  # a pod failing while ready would cost too much: no need to kill anything to say so
    try:
        failover = measure_failover(lab)
        during = lab.traffic(n=50, concurrency=4, progress=False) if failover.switch_s is not None else None
    finally:
        back = come_back(lab)
    return judge_failover(before, failover, during, back)
