"""Checks of lab 04 (sidecar proxy / fabric): shift 20% of reviews to v2 by hot-reloading one
sidecar under load, add a retry by hand to exactly the sidecars that need it, count the configs
a fabric makes you keep by hand, and kill one sidecar.

Traffic splits are judged with an exact binomial test (`checks.stats.split_matches`) on
`required_samples` requests, so a correct split fails less than once in a million runs.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any, Iterable, Mapping

from ..stages import envoyconf, shop, sidecar
from ..checks.stats import normalise, required_samples, split_matches
from .base import CheckResult, exercise
from .lab02 import (MIN_SUCCESS, NOT_TRIED_YET, SETTLE_S, configmap_yaml, grew, route_in, running_routes,
                    skips_tried_pods, stats_of, wait_routes, with_routes)
from .lab03 import judge_lost

LAB = "04-sidecar-fabric-lab"
SPLIT = {"v1": 80, "v2": 20, "v3": 0}
MIN_LOAD = 50  # requests the load must carry across the reload
RETRY_REQUESTS = 300


def sidecar_configmap(service: str, version: str, **routes: Any) -> str:
    """YAML of the sidecar ConfigMap of one service version (`sidecar-reviews-v2`), with your routes
    for the services it calls (`reviews=...`, `ratings=...`: YAML text; empty keeps the stage's route)."""
    return configmap_yaml(with_routes(sidecar.config_map(service, version), "outbound", routes))


def configmap_of(pod) -> str:
    """The sidecar ConfigMap a pod reads, from its labels (app, version)."""
    return sidecar.configmap_name(pod.labels.get("app", pod.service), pod.labels.get("version", "v1"))


def weights_of(route: Mapping | None) -> dict[str, int] | None:
    """version -> weight of a route to a service's version clusters (`reviews-v2` -> v2)."""
    if not route:
        return None
    if route.get("cluster"):
        return {str(route["cluster"]).rsplit("-", 1)[-1]: 1}
    clusters = (route.get("weighted_clusters") or {}).get("clusters") or []
    return {str(c.get("name", "?")).rsplit("-", 1)[-1]: int(c.get("weight") or 0) for c in clusters}


def same_split(weights: Mapping[str, int] | None, expected: Mapping[str, float] = SPLIT) -> bool:
    """True when the weights give every version the expected share (a missing version gets 0)."""
    if not weights or sum(weights.values()) <= 0:
        return False
    got, want = normalise(weights), normalise(expected)
    return all(abs(got.get(v, 0.0) - want.get(v, 0.0)) < 1e-9 for v in set(got) | set(want))


def _shares(weights: Mapping[str, int]) -> str:
    total = sum(weights.values()) or 1
    return ", ".join(f"{v} {w} ({100 * w / total:.0f}%)" for v, w in sorted(weights.items()))


# ---- exercise 1: shift 20% of reviews to v2, under load --------------------------------------------------

SHIFT_EXPECTED = ("frontend's sidecar splits reviews v1/v2/v3 80/20/0, reloaded under load with no failed request; "
                  "the versions that really answer fit that split")


def shift_problem(weights: Mapping[str, int] | None, during) -> CheckResult | None:
    """What is wrong before any traffic is needed: the running weights, the load across the reload."""
    if weights is None:
        return CheckResult(False, SHIFT_EXPECTED,
                           "frontend's sidecar did not answer /config_dump: is the lab up at stage 4?")
    if not same_split(weights):
        return CheckResult(False, SHIFT_EXPECTED, f"frontend's sidecar routes reviews: {_shares(weights)}")
    if during is None or not hasattr(during, "requests"):
        return CheckResult(False, SHIFT_EXPECTED, "no load result: run the hot-reload cell (it sets `during`)")
    if during.requests < MIN_LOAD:
        return CheckResult(False, SHIFT_EXPECTED, f"only {during.requests} requests ran under load: keep the load "
                           f"running across the change (at least {MIN_LOAD})")
    if during.failed:
        first = f": {during.errors[0]}" if during.errors else ""
        return CheckResult(False, SHIFT_EXPECTED, f"{during.failed} of {during.requests} requests failed under "
                           f"load{first}")
    if not (getattr(during, "versions", {}) or {}).get("reviews", {}).get("v3"):
        return CheckResult(False, SHIFT_EXPECTED, f"the load never reached reviews v3 ({during.requests} requests): "
                           "it started after the change, so it did not see the reload",
                           hints=["Start over: lab.apply(sidecar_configmap('frontend', 'v1')) brings back the "
                                  "1/1/1 split; then run the hot-reload cell once."])
    return None


def judge_shift(weights: Mapping[str, int] | None, during, counts: Mapping[str, int] | None) -> CheckResult:
    """Pass when frontend's sidecar splits reviews 80/20/0, the change was made under load with no
    failed request, and the split of real traffic fits 80/20/0 (exact binomial test)."""
    problem = shift_problem(weights, during)
    if problem is not None:
        return problem
    if not counts:
        return CheckResult(False, SHIFT_EXPECTED, "no traffic reached reviews during the check")
    ok, _, why = split_matches(counts, SPLIT)
    load = f"under load: {during.requests} requests, 0 failed, across the reload"
    return CheckResult(ok, SHIFT_EXPECTED, f"{load}\nafter: {why}")


@exercise(LAB, "shift-reviews-20", hints=[
    "The split happens in the caller's sidecar: only frontend calls reviews, so only sidecar-frontend-v1 changes. "
    "Write its route for reviews with `weighted_clusters`.",
    "Keep the three clusters reviews-v1, reviews-v2, reviews-v3 and give them weights 80, 20 and 0; keep "
    "`timeout: 3s` beside `weighted_clusters`.",
    "reviews_route: weighted_clusters: {clusters: [{name: reviews-v1, weight: 80}, {name: reviews-v2, weight: 20}, "
    "{name: reviews-v3, weight: 0}]}, timeout: 3s. Then run the hot-reload cell once.",
])
def shift_reviews_20(lab, during) -> CheckResult:
    """frontend's running route for reviews; the load result of the reload; then real traffic."""
    seen = wait_routes(lab, "outbound", "reviews", lambda r: same_split(weights_of(r)), role="sidecar", pod="frontend")
    route = next((r for r in seen.values() if r is not None), None)
    problem = shift_problem(weights_of(route), during)
    if problem is not None:
        return problem
    result = lab.traffic(n=required_samples(SPLIT), concurrency=8, progress=False)
    return judge_shift(weights_of(route), during, dict(result.versions.get("reviews") or {}))


# ---- exercise 2: a retry by hand, in exactly the sidecars that need it ----------------------------------

def callers_of(service: str) -> set[str]:
    """The sidecar ConfigMaps of every service version that calls `service` (from the shop's shape)."""
    return {sidecar.configmap_name(name, version) for name, version, _, upstreams in shop.SHOP if service in upstreams}


def names_of(edit: Any) -> tuple[set[str], list[str]]:
    """ConfigMap names from what the learner listed: ('reviews', 'v2') pairs or 'sidecar-reviews-v2' names."""
    known = {sidecar.configmap_name(s, v) for s, vs in envoyconf.versions().items() for v in vs}
    if edit is None or isinstance(edit, (str, bytes)) or not isinstance(edit, Iterable):
        edit = [edit] if isinstance(edit, str) else []
    names, unknown = set(), []
    for item in edit:
        name = sidecar.configmap_name(*item) if isinstance(item, (tuple, list)) and len(item) == 2 else str(item)
        name = name if name.startswith("sidecar-") else f"sidecar-{name}"
        (names.add(name) if name in known else unknown.append(str(item)))
    return names, unknown


def retrying(routes: Mapping[str, Mapping | None]) -> set[str]:
    """ConfigMaps (keys) whose sidecars run a retry policy for ratings."""
    return {name for name, route in routes.items() if route and route.get("retry_policy")}


def judge_by_hand(edit: Any, routes: Mapping[str, Mapping | None], truth: Mapping[str, Any] | None) -> CheckResult:
    """`routes`: ConfigMap -> the ratings route its sidecars run. Pass when exactly the callers of
    ratings retry, `edit` names them, and real traffic with a failing ratings pod (nearly) all succeeds."""
    need = callers_of("ratings")
    expected = (f"the sidecars of exactly the callers of ratings ({', '.join(sorted(need))}) retry calls to "
                f"ratings on a pod not tried yet, `edit` lists them, and at least {MIN_SUCCESS:.0%} of requests "
                "succeed")
    names, unknown = names_of(edit)
    if unknown:
        return CheckResult(False, expected, f"these name no sidecar ConfigMap: {', '.join(unknown)} "
                           "(write ('reviews', 'v2') or 'sidecar-reviews-v2')")
    if not names:
        return CheckResult(False, expected, "nothing in `edit` yet: list the sidecars you change")
    if not routes:
        return CheckResult(False, expected, "no sidecar answered /config_dump: is the lab up at stage 4?")
    running = retrying(routes)
    if names - running:
        return CheckResult(False, expected, f"{', '.join(sorted(names - running))}: listed in `edit`, but its sidecars "
                           "run no retry policy for ratings (did the apply cell run?)")
    if running - names:
        return CheckResult(False, expected,
                           f"{', '.join(sorted(running - names))} retries ratings but is not in `edit`")
    if need - names:
        return CheckResult(False, expected, f"{', '.join(sorted(need - names))} also calls ratings, and its sidecars "
                           "do not retry: its calls to a failing pod still fail")
    if names - need:
        return CheckResult(False, expected, f"{', '.join(sorted(names - need))} never calls ratings: its sidecars "
                           "never use that route, so editing it was not needed")
    careless = sorted(n for n in names if not skips_tried_pods((routes.get(n) or {}).get("retry_policy")))
    if careless:
        return CheckResult(False, expected, f"{', '.join(careless)}: the retry_policy for ratings has no "
                           f"previous_hosts predicate; {NOT_TRIED_YET}")
    if truth is None or not truth.get("requests"):
        return CheckResult(False, expected, "no traffic could be sent through the lab")
    line = (f"{truth['success_rate']:.1%} of {truth['requests']} requests succeeded; the sidecars of "
            f"{', '.join(sorted(names))} retried {truth['retries']} calls to ratings")
    if truth["retries"] == 0:
        return CheckResult(False, "a ratings pod failing while the check runs", line + ": nothing failed to retry",
                           hints=["Run the cell with lab.inject('ratings', errors=0.5, pod=flaky) again."])
    if truth["success_rate"] < MIN_SUCCESS:
        return CheckResult(False, expected, line + "\nsome retries failed again: num_retries 2, retry_on 5xx")
    return CheckResult(True, expected, line + f"\none policy, {len(names)} ConfigMaps edited by hand")


@exercise(LAB, "ratings-retry-by-hand", hints=[
    "A call is retried by the sidecar of the pod that *makes* it (its outbound listener). Which pods call ratings?",
    "frontend calls catalog and reviews; reviews v2 and v3 call ratings; nobody else calls anyone. So "
    "edit = [('reviews', 'v2'), ('reviews', 'v3')].",
    "ratings_route: cluster: ratings-v1, timeout: 3s, retry_policy: {retry_on: '5xx,connect-failure', "
    "num_retries: 2, retry_host_predicate: [previous_hosts, as in lab 02], host_selection_retry_max_attempts: 3}.",
])
def ratings_retry_by_hand(lab, edit) -> CheckResult:
    """Which sidecars run a ratings retry (their /config_dump); then real traffic and their retry counters."""
    names, _ = names_of(edit)
    proxies = [p for p in lab.proxies() if p.role == "sidecar" and p.admin_url]
    deadline = time.monotonic() + SETTLE_S
    pods = {p.name: p for p in lab.pods()}
    while True:
        routes: dict[str, Mapping | None] = {}
        for proxy in proxies:
            pod = pods.get(proxy.pod)
            found = running_routes(proxy.admin_url, "outbound")
            if pod is not None and found is not None:
                routes[configmap_of(pod)] = found.get("ratings")
        if names <= retrying(routes) or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    first = judge_by_hand(edit, routes, {"requests": 1, "retries": 1, "success_rate": 1.0})
    if not first.ok:
        return first
    callers = [p for p in proxies if any(p.pod.startswith(name[len("sidecar-"):] + "-") for name in names)]
    before = stats_of(callers)
    result = lab.traffic(n=RETRY_REQUESTS, concurrency=4, progress=False)
    truth = {"requests": result.requests, "success_rate": result.success_rate,
             "retries": grew(before, stats_of(callers), "upstream_rq_retry", "ratings")}
    return judge_by_hand(edit, routes, truth)


# ---- exercise 3: count the configs -------------------------------------------------------------------------

COUNT_FIELDS = {
    "configmaps": "sidecar ConfigMaps in the lab (one per service version)",
    "sidecars": "sidecar proxies running (one per app pod)",
    "edited_by_hand": "ConfigMaps whose sidecars now run something other than the stage's config "
                      "(your edits of exercises 1 and 2)",
    "stage2_configmaps": "ConfigMaps you would edit for the same two changes in stage 2 (the router mesh)",
}


@functools.lru_cache(maxsize=None)
def _stage_routes(service: str, version: str) -> str:
    """The outbound routes of a service version's sidecar in the stage's config, as /config_dump shows them
    (JSON text, callee -> route)."""
    config = sidecar.config_map(service, version)
    return json.dumps({callee: route_in(config, "outbound", callee) for callee in envoyconf.versions()},
                      sort_keys=True)


def differs(running: Mapping[str, Mapping | None], service: str, version: str) -> bool:
    """True when a sidecar's running outbound routes differ from the stage's config for it."""
    stage = json.loads(_stage_routes(service, version))
    mine = {callee: route for callee, route in running.items() if callee != "unknown"}
    return json.dumps(mine, sort_keys=True) != json.dumps(stage, sort_keys=True)


def truth_configs(sidecars: Mapping[str, tuple[str, str, Mapping | None]]) -> dict[str, int]:
    """`sidecars`: proxy -> (service, version, its running outbound routes or None)."""
    maps = {(s, v) for s, v, _ in sidecars.values()}
    edited = {(s, v) for s, v, routes in sidecars.values() if routes is not None and differs(routes, s, v)}
    return {"configmaps": len(maps), "sidecars": len(sidecars), "edited_by_hand": len(edited),
            "stage2_configmaps": 1, "edited": sorted(sidecar.configmap_name(s, v) for s, v in edited)}


def judge_configs(answers: Any, truth: Mapping[str, Any]) -> CheckResult:
    """Pass when every count matches the running lab."""
    expected = "your counts equal the lab's: " + ", ".join(COUNT_FIELDS)
    if not isinstance(answers, Mapping):
        return CheckResult(False, expected, f"answers is a {type(answers).__name__}, not a dict")
    if all(answers.get(k) is None for k in COUNT_FIELDS):
        return CheckResult(False, expected, "nothing filled in yet")
    for key, meaning in COUNT_FIELDS.items():
        got = answers.get(key)
        if isinstance(got, bool) or not isinstance(got, int) or got != truth[key]:
            extra = ""
            if key == "edited_by_hand":
                extra = f"\n(the sidecars that differ from the stage read: {', '.join(truth['edited']) or 'none'})"
            return CheckResult(False, f"{key}: {meaning}", f"{key} = {got!r}" + extra)
    return CheckResult(True, expected, f"{truth['sidecars']} sidecars read {truth['configmaps']} ConfigMaps; two "
                       f"policy changes took {truth['edited_by_hand']} edits by hand, where the router mesh needed "
                       f"{truth['stage2_configmaps']}. A control plane (stage 5) makes it one object again.")


@exercise(LAB, "count-configs", hints=[
    "Count from the lab: lab.proxies() (role 'sidecar'), and the ConfigMaps named sidecar-<service>-<version> "
    "in lab.manifests().",
    "One ConfigMap per service version: frontend v1, catalog v1, reviews v1/v2/v3, ratings v1. One sidecar per "
    "app pod: ratings has two pods sharing one ConfigMap.",
    "edited_by_hand: exercise 1 changed frontend's ConfigMap, exercise 2 those of reviews v2 and v3. In stage 2 "
    "both changes go into the one router ConfigMap.",
])
def count_configs(lab, answers) -> CheckResult:
    """The learner's counts against the sidecars' running configs."""
    pods = {p.name: p for p in lab.pods()}
    sidecars = {}
    for proxy in lab.proxies():
        pod = pods.get(proxy.pod)
        if proxy.role == "sidecar" and pod is not None:
            routes = running_routes(proxy.admin_url, "outbound") if proxy.admin_url else None
            sidecars[proxy.name] = (pod.labels.get("app", pod.service), pod.labels.get("version", "v1"), routes)
    return judge_configs(answers, truth_configs(sidecars))


# ---- exercise 4: kill one sidecar -----------------------------------------------------------------------------

def failing_calls(radius) -> set[str]:
    """'caller->callee' of every call that failed after the kill."""
    return {f"{r.caller}->{r.callee}" for r in radius.rows if r.after_failed}


def _calls(answer: Any) -> set[str]:
    if answer is None or isinstance(answer, (str, bytes)) or not isinstance(answer, Iterable):
        answer = [answer] if isinstance(answer, str) else []
    return {"->".join(part.strip().lower() for part in str(a).replace("→", "->").split("->")) for a in answer}


def judge_sidecar_blast(radius, lost: Any, failing: Any) -> CheckResult:
    """Pass when one sidecar was killed, only calls to (or from) its pod failed, and the learner's
    `lost` pods and `failing` calls are what the blast radius measured."""
    if radius is not None and (getattr(radius, "scope", "") != "pod" or len(getattr(radius, "killed", [])) != 1):
        return CheckResult(False, "a blast radius of one sidecar: kill=dict(proxy='sidecar', pod=<one pod>)",
                           f"radius killed {', '.join(radius.killed) or 'nothing'} (scope {radius.scope})")
    pods = judge_lost(lost, radius)
    if not pods.ok:
        return pods
    truth = failing_calls(radius)
    got = _calls(failing)
    expected = "the calls that failed after the kill, as 'caller->callee'"
    if got != truth:
        return CheckResult(False, expected, f"you: {', '.join(sorted(got)) or 'none'}\n"
                           f"measured: {', '.join(sorted(truth)) or 'none'}\n{radius}")
    killed, services = set(radius.killed_pods), set(radius.killed_services)
    stray = [r for r in radius.rows if r.after_failed and r.callee not in services and r.pod not in killed]
    if stray:
        return CheckResult(False, "only calls to or from the killed sidecar's pod fail",
                           f"{stray[0].caller} ({stray[0].pod}) -> {stray[0].callee} failed too\n{radius}")
    return CheckResult(True, "one dead sidecar cuts off its own pod, and nothing else",
                       f"{pods.received}\nfailing calls: {', '.join(sorted(truth)) or 'none'}")


@exercise(LAB, "sidecar-blast", hints=[
    "A sidecar carries every call into and out of its own pod, and nothing else.",
    "With reviews v2's sidecar dead, frontend's calls routed to reviews-v2 fail; nothing reaches reviews v2, so "
    "it makes no call to ratings at all.",
    "lost = {reviews_v2}: the pod in the summary line `lost connectivity: pods ...` of `radius`; failing = "
    "{'frontend->reviews'}: the rows of its table with failures after the kill.",
])
def sidecar_blast(radius, lost, failing) -> CheckResult:
    """The learner's predictions against the blast radius measured in the notebook."""
    return judge_sidecar_blast(radius, lost, failing)
