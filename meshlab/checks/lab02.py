"""Checks of lab 02 (router mesh): a retry policy and a per-try timeout at the router, a quiz on
the single point of failure. Also the helpers labs 02-04 share to edit a proxy's routes in its
ConfigMap and to read the routes it really runs (admin API `/config_dump`).

As in lab 01, each check is a probe (talks to the lab: real traffic, the routers' admin API) and
a pure `judge_*` function that the unit tests feed with fake inputs.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any, Callable, Mapping

import yaml

from .. import manifests, settle
from ..backends.base import MeshlabError
from ..stages import router
from .base import CheckResult, exercise
from .quiz import judge as quiz_judge
from .lab01 import envoy_stats, stat_sum

LAB = "02-router-mesh-lab"
SETTLE_S = 3.0  # a ConfigMap applied a moment ago: give the proxies this long to reload it
RETRY_REQUESTS = 300
MIN_SUCCESS = 0.97  # with retries on another pod nearly every request succeeds; with none, ~83%
SLOW_MS = 1000  # the delay injected into one ratings pod in exercise 2
TIMEOUT_REQUESTS = 90
P90_SHARE = 0.6  # exercise 2 passes when p90 latency is below this share of SLOW_MS


# ---- editing routes in an Envoy ConfigMap -------------------------------------------------------------

def configmap_yaml(*objects: dict) -> str:
    """Kubernetes objects as YAML, the files of a ConfigMap shown as blocks you can read."""
    return manifests.dump(list(objects))


def _virtual_hosts(listener: Mapping) -> list[dict]:
    for chain in listener.get("filter_chains") or []:
        for flt in chain.get("filters") or []:
            config = (flt.get("typed_config") or {}).get("route_config")
            if config:
                return config.get("virtual_hosts") or []
    return []


def parse_route(text: Any, what: str = "your route") -> dict | None:
    """A route action from YAML text (or a dict); None when the text holds nothing. Bad YAML raises one
    MeshlabError line with the line and column in the text, as lab.apply does for a manifest."""
    try:
        value = yaml.safe_load(text) if isinstance(text, str) else text
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{what}, line {mark.line + 1} column {mark.column + 1}" if mark else what
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise MeshlabError(f"{where}: invalid YAML: {problem}",
                           "indent every key under retry_policy by the same spaces, and put ':' after each key") from None
    if value is None:
        return None
    if isinstance(value, Mapping) and set(value) == {"route"}:  # written with its `route:` key: fine
        value = value["route"]
    if not isinstance(value, Mapping):
        raise MeshlabError(f"{what}: a route must be a YAML mapping such as 'cluster: ratings-v1', "
                           f"not {type(value).__name__}", "write one key per line: cluster, timeout, retry_policy")
    return dict(value)


def with_routes(configmap: dict, listener: str, routes: Mapping[str, Any]) -> dict:
    """A copy of an Envoy ConfigMap whose listener `listener` routes each named service with the
    given route action (YAML text or dict; None or empty text keeps the ConfigMap's own route)."""
    out = copy.deepcopy(configmap)
    lds = yaml.safe_load(out["data"]["lds.yaml"])
    found = {}
    for resource in lds["resources"]:
        if resource.get("name") == listener:
            found = {vh["name"]: vh for vh in _virtual_hosts(resource)}
    for service, text in routes.items():
        if service not in found:
            raise KeyError(f"listener {listener!r} has no virtual host {service!r} (it has {', '.join(found)})")
        action = parse_route(text, f"the route for {service}")
        if action is not None:
            found[service]["routes"][0]["route"] = action
    head = "".join(line + "\n" for line in out["data"]["lds.yaml"].splitlines() if line.startswith("#"))
    out["data"]["lds.yaml"] = head + yaml.safe_dump(lds, sort_keys=False, default_flow_style=False, width=100)
    return out


def route_in(configmap: dict, listener: str, service: str) -> dict:
    """The route action a ConfigMap gives one service on one listener."""
    lds = yaml.safe_load(configmap["data"]["lds.yaml"])
    for resource in lds["resources"]:
        if resource.get("name") == listener:
            for vh in _virtual_hosts(resource):
                if vh["name"] == service:
                    return vh["routes"][0]["route"]
    raise KeyError(f"no route for {service!r} on listener {listener!r}")


def show_route(route: Mapping | None) -> str:
    """A route action as short YAML."""
    if route is None:
        return "(none)"
    return yaml.safe_dump(dict(route), sort_keys=False, default_flow_style=False, width=100).rstrip()


def router_configmap(ratings: Any = None) -> str:
    """YAML of the router's ConfigMap with no retry policy anywhere (a bare router), and with your
    route for ratings when given (YAML text). `lab.apply()` it: the routers reload it in place."""
    return configmap_yaml(with_routes(router.config_map(retries=0), "router", {"ratings": ratings}))


# ---- reading what the proxies really run ------------------------------------------------------------

def running_routes(admin_url: str, listener: str) -> dict[str, dict] | None:
    """service -> route action of one Envoy's active listener (from /config_dump); None if no answer."""
    text = settle.active_config(admin_url)
    if not text:
        return None
    for item in json.loads(text):
        config = (item or {}).get("listener") or {}
        if config.get("name") == listener:
            return {vh.get("name"): ((vh.get("routes") or [{}])[0].get("route") or {}) for vh in _virtual_hosts(config)}
    return {}


def proxies_of(lab, role: str | None = None, pod: str | None = None) -> list:
    """The lab's proxies with an admin API, by role and/or pod (a name or a Deployment-style prefix)."""
    return [p for p in lab.proxies() if p.admin_url and (role is None or p.role == role)
            and (pod is None or p.pod == pod or p.pod.startswith(f"{pod}-"))]


def wait_routes(lab, listener: str, service: str, done: Callable[[dict], bool], role: str | None = None,
                pod: str | None = None, seconds: float | None = None) -> dict[str, dict | None]:
    """proxy name -> its running route for `service`, polled until done(route) holds for every proxy
    or `seconds` pass (a proxy reloads a moment after lab.apply)."""
    deadline = time.monotonic() + (SETTLE_S if seconds is None else seconds)
    while True:
        seen = {}
        for proxy in proxies_of(lab, role, pod):
            routes = running_routes(proxy.admin_url, listener)
            seen[proxy.name] = None if routes is None else routes.get(service)
        if (seen and all(r is not None and done(r) for r in seen.values())) or time.monotonic() >= deadline:
            return seen
        time.sleep(0.2)


def running_route(lab, service: str, role: str | None = None, pod: str | None = None,
                  listener: str | None = None) -> str:
    """The route one proxy (the first matching) runs for `service`, as YAML: to look at after an apply."""
    listener = listener or ("router" if role == "router" else "node-proxy" if role == "node" else "outbound")
    for proxy in proxies_of(lab, role, pod):
        routes = running_routes(proxy.admin_url, listener)
        if routes is not None:
            return f"# {proxy.name}, route for {service}:\n{show_route(routes.get(service))}"
    return "(no proxy answered)"


def stats_of(proxies) -> dict[str, int]:
    """The counters of several Envoys, summed (a proxy that does not answer counts nothing)."""
    total: dict[str, int] = {}
    for proxy in proxies:
        try:
            stats = envoy_stats(proxy.admin_url)
        except Exception:
            continue
        for name, value in stats.items():
            if isinstance(value, int) and not isinstance(value, bool):  # counters and gauges, not text readouts
                total[name] = total.get(name, 0) + value
    return total


def grew(before: Mapping[str, int], after: Mapping[str, int], suffix: str, contains: str = "") -> int:
    """How much the `cluster.*` counters ending in `suffix` (and containing `contains`) grew."""
    return stat_sum(after, suffix, contains) - stat_sum(before, suffix, contains)


def seconds(value: Any) -> float | None:
    """A duration from Envoy config ('0.250s', '3s', 0.25, {'seconds': 1, 'nanos': 5e8}) in seconds."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping):
        return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
    text = str(value).strip()
    try:
        if text.endswith("ms"):
            return float(text[:-2]) / 1000
        return float(text[:-1]) if text.endswith("s") else float(text)
    except ValueError:
        return None


def _measure(lab, role: str, n: int, concurrency: int) -> tuple[Any, dict, dict]:
    proxies = proxies_of(lab, role)
    before = stats_of(proxies)
    result = lab.traffic(n=n, concurrency=concurrency, progress=False)
    return result, before, stats_of(proxies)


def _routers_silent() -> CheckResult:
    return CheckResult(False, "the routers' admin API answering /config_dump",
                       "no router answered: is the lab up at stage 2? (lab.up(stage='router'))")


# ---- exercise 1: a retry policy at the router --------------------------------------------------------

def skips_tried_pods(policy: Mapping | None) -> bool:
    """True when a retry policy sends each retry to a pod not tried yet (the previous_hosts predicate)."""
    predicates = (policy or {}).get("retry_host_predicate") or []
    return any("previous_hosts" in json.dumps(p) for p in predicates if isinstance(p, Mapping))


NOT_TRIED_YET = ("without it a retry may go straight back to the pod that just failed: add `retry_host_predicate: "
                 "[{name: envoy.retry_host_predicates.previous_hosts, typed_config: {'@type': type.googleapis.com/"
                 "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate}}]` (and "
                 "`host_selection_retry_max_attempts: 3`) to the retry_policy")


def retry_problem(route: Mapping, expected: str) -> CheckResult | None:
    """What is wrong with a route's retry policy before any traffic is needed; None when nothing is."""
    policy = route.get("retry_policy")
    if not policy:
        return CheckResult(False, expected, f"the routers' route for ratings has no retry_policy:\n{show_route(route)}")
    if "num_retries" in policy and int(policy.get("num_retries") or 0) < 1:
        return CheckResult(False, expected, f"num_retries is {policy.get('num_retries')}: no retry will happen",
                           hints=["Set `num_retries: 2` inside retry_policy."])
    if not skips_tried_pods(policy):
        return CheckResult(False, expected, f"the retry_policy has no previous_hosts predicate: {NOT_TRIED_YET}\n"
                           f"{show_route(route)}")
    return None


def judge_retries(routes: list, truth: Mapping[str, Any] | None) -> CheckResult:
    """Pass when the routers run a retry policy for ratings that picks a pod not tried yet and, with one
    ratings pod failing half its requests, (nearly) every client request succeeds while the routers retried."""
    expected = (f"the routers retry failed calls to ratings on a pod not tried yet: with one ratings pod failing "
                f"half its requests, at least {MIN_SUCCESS:.0%} of requests succeed (a bare router: about 83%)")
    if not routes or all(r is None for r in routes):
        return _routers_silent()
    route = next(r for r in routes if r is not None)
    problem = retry_problem(route, expected)
    if problem is not None:
        return problem
    policy = route["retry_policy"]
    if truth is None or not truth.get("requests"):
        return CheckResult(False, expected, "no traffic could be sent through the lab")
    line = (f"{truth['success_rate']:.1%} of {truth['requests']} requests succeeded; the routers retried "
            f"{truth['retries']} calls to ratings")
    if truth["retries"] == 0 and truth["success_rate"] >= MIN_SUCCESS:
        return CheckResult(False, "a ratings pod failing while the check runs (the routers retry its failures)",
                           line + ": no call to ratings failed, so nothing was tested",
                           hints=["Run the cell with lab.inject('ratings', errors=0.5, pod=flaky) again, then check."])
    if truth["success_rate"] < MIN_SUCCESS:
        why = ("retry_on must cover the failure: the fault answers HTTP 500 (`5xx`)" if truth["retries"] == 0 else
               "some retries failed again: num_retries 2, retry_on covering 5xx")
        return CheckResult(False, expected, f"{line}\nretry_policy: {json.dumps(policy)}\n{why}")
    return CheckResult(True, expected, line + ": the failures never reached the apps")


@exercise(LAB, "router-retries", hints=[
    "Add a `retry_policy` to the route for ratings: Envoy's RetryPolicy, with `retry_on` (which failures "
    "to retry) and `num_retries` (how many times). It goes beside `cluster:` and `timeout:`.",
    "The injected fault answers HTTP 500, which `retry_on: 5xx` covers (add `connect-failure` for pods "
    "that refuse connections); `num_retries: 2` is plenty.",
    "Send each retry to another pod: `retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts, "
    "typed_config: {'@type': type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3."
    "PreviousHostsPredicate}}]` plus `host_selection_retry_max_attempts: 3`: the policy the stage's own router "
    "runs (lesson 02, section 2). Or apply the stage's whole ConfigMap: `from meshlab import manifests`, "
    "`from meshlab.stages import router`, then lab.apply(manifests.dump([router.config_map(retries=2)])).",
])
def router_retries(lab) -> CheckResult:
    """The routers' running route for ratings, then real traffic with the routers' retry counters."""
    seen = wait_routes(lab, "router", "ratings", lambda r: bool(r.get("retry_policy")), role="router")
    routes = list(seen.values())
    route = next((r for r in routes if r is not None), None)
    if route is None or retry_problem(route, "") is not None:
        return judge_retries(routes, None)
    result, before, after = _measure(lab, "router", RETRY_REQUESTS, 4)
    truth = {"requests": result.requests, "success_rate": result.success_rate, "failed": result.failed,
             "retries": grew(before, after, "upstream_rq_retry", "ratings")}
    return judge_retries(routes, truth)


# ---- exercise 2: a per-try timeout ---------------------------------------------------------------------

def timeout_problem(route: Mapping, expected: str, slow_ms: int = SLOW_MS) -> CheckResult | None:
    """What is wrong with a route's timeouts before any traffic is needed; None when nothing is."""
    policy = route.get("retry_policy") or {}
    per_try, whole = seconds(policy.get("per_try_timeout")), seconds(route.get("timeout"))
    if per_try is None:
        if whole is not None and whole * 1000 < slow_ms:
            return CheckResult(False, expected, f"{show_route(route)}\nThe route `timeout` ({whole:g} s) ends the "
                               "whole call: reviews gets a 504 and the request fails. A per-try timeout ends one "
                               "attempt, and the retry goes to the other pod.",
                               hints=["Put `per_try_timeout: 0.25s` inside retry_policy, and keep the route's "
                                      "`timeout` long (3s): it caps all attempts together."])
        return CheckResult(False, expected, f"the routers' route for ratings has no retry_policy.per_try_timeout:\n"
                           f"{show_route(route)}")
    if per_try * 1000 >= slow_ms:
        return CheckResult(False, expected, f"per_try_timeout is {per_try:g} s: not shorter than the slow pod's "
                           f"{slow_ms} ms, so the router still waits for it")
    if whole is not None and whole <= per_try:
        return CheckResult(False, expected, f"{show_route(route)}\nThe route `timeout` ({whole:g} s) is not longer "
                           f"than the per-try timeout ({per_try:g} s): it ends the whole call when the first attempt "
                           "times out, before any retry can start. Keep the route's `timeout: 3s`.",
                           hints=["The route's `timeout` caps all attempts together: keep it at 3s, and put only "
                                  "`per_try_timeout: 0.25s` inside retry_policy."])
    return retry_problem(route, expected)


def judge_timeout(routes: list, truth: Mapping[str, Any] | None, slow_ms: int = SLOW_MS) -> CheckResult:
    """Pass when an attempt to the slow ratings pod is cut short and retried on another pod: every
    request succeeds and p90 latency stays well below the slow pod's delay."""
    limit = P90_SHARE * slow_ms
    expected = (f"one ratings pod answers after {slow_ms} ms; the routers give up on it after a short per-try "
                f"timeout and retry on the other pod: at least {MIN_SUCCESS:.0%} succeed, p90 under {limit:.0f} ms")
    if not routes or all(r is None for r in routes):
        return _routers_silent()
    route = next(r for r in routes if r is not None)
    problem = timeout_problem(route, expected, slow_ms)
    if problem is not None:
        return problem
    per_try = seconds(route["retry_policy"]["per_try_timeout"])
    if truth is None or not truth.get("requests"):
        return CheckResult(False, expected, "no traffic could be sent through the lab")
    line = (f"{truth['success_rate']:.1%} of {truth['requests']} requests succeeded, p90 {truth['p90']:.0f} ms; "
            f"{truth['per_try_timeouts']} attempts to ratings timed out and were retried")
    if truth.get("route_timeouts"):
        return CheckResult(False, expected, f"{line}; {truth['route_timeouts']} calls to ratings hit the route's "
                           "`timeout` and failed as a whole: keep the route's `timeout: 3s`")
    if truth["per_try_timeouts"] == 0:
        return CheckResult(False, "a slow ratings pod while the check runs", line + ": nothing was slow",
                           hints=["Run the cell with lab.inject('ratings', latency_ms=SLOW_MS, pod=slow) again."])
    if truth["success_rate"] < MIN_SUCCESS:
        return CheckResult(False, expected, f"{line}\nsome retries ran out: num_retries 2, and retry_on covering "
                           "timeouts (5xx)")
    if truth["p90"] >= limit:
        return CheckResult(False, expected, f"{line}\np90 is still {truth['p90']:.0f} ms: make per_try_timeout "
                           "shorter (0.25s)")
    return CheckResult(True, expected, line + f": a slow pod now costs {per_try:g} s, not {slow_ms / 1000:g} s")


@exercise(LAB, "router-timeout", hints=[
    "Envoy has two timeouts on a route: `timeout` for the whole call (all attempts together) and, inside "
    "retry_policy, `per_try_timeout` for one attempt. Only the second lets a retry try another pod.",
    "Start from your route of exercise 1 and add `per_try_timeout: 0.25s` to its retry_policy; keep the "
    "route's `timeout: 3s`.",
    "retry_policy: {retry_on: '5xx,connect-failure', num_retries: 2, per_try_timeout: 0.25s, "
    "retry_host_predicate: [previous_hosts, as in exercise 1], host_selection_retry_max_attempts: 3}.",
])
def router_timeout(lab) -> CheckResult:
    """The routers' running route for ratings, then real traffic with one slow ratings pod."""
    seen = wait_routes(lab, "router", "ratings",
                       lambda r: seconds((r.get("retry_policy") or {}).get("per_try_timeout")) is not None,
                       role="router")
    routes = list(seen.values())
    route = next((r for r in routes if r is not None), None)
    if route is None or timeout_problem(route, "") is not None:
        return judge_timeout(routes, None)
    result, before, after = _measure(lab, "router", TIMEOUT_REQUESTS, 6)
    truth = {"requests": result.requests, "success_rate": result.success_rate, "p90": result.latency_ms["p90"],
             "per_try_timeouts": grew(before, after, "upstream_rq_per_try_timeout", "ratings"),
             "route_timeouts": grew(before, after, "upstream_rq_timeout", "ratings")}
    return judge_timeout(routes, truth)


# ---- exercise 3: the single point of failure ---------------------------------------------------------------

QUIZ = {  # question -> (right letter, {letter: why it is wrong})
    "q1": ("b", {"a": "the edge never passes the router, but frontend's own calls do: it answers every request "
                      "with an error",
                 "c": "reviews v1 is reached through the router too: with the router gone nothing east-west works",
                 "d": "both replicas were killed, and every east-west call needs one of them"}),
    "q2": ("c", {"a": "Envoy runs fine as many replicas; the lab runs two",
                 "b": "the Service balances over both replicas: each one serves traffic",
                 "d": "the replicas run on different nodes (see lab.proxies())"}),
    "q3": ("a", {"b": "no app changed: 无需对原有的单体应用和新的微服务应用做什么改造 (no change to the apps)",
                 "c": "routing by Host is exactly what the router does, for any number of services",
                 "d": "one proxy per pod is stage 4; the router layer is a few replicas for all services"}),
    "q4": ("c", {"a": "count the (router@...) hops in a path that ends at ratings",
                 "b": "frontend -> reviews passes the router, and reviews -> ratings passes it again",
                 "d": "each call passes one router, and this path has two calls"}),
}


def judge_quiz(answers: Any, quiz: Mapping = QUIZ) -> CheckResult:
    """This lab's quiz, judged by the shared quiz judge."""
    return quiz_judge(answers, quiz)


@exercise(LAB, "router-spof", hints=[
    "Look at the blast radius you measured in the lesson: `lab.blast_radius(kill=dict(proxy='router'))`.",
    "Every app sends every call to http://router:8080; the replicas share one Deployment, one Service and "
    "one ConfigMap.",
    "Count the (router@...) hops in a path through reviews v2 or v3 to ratings; and the seed: 当服务多了管理起来"
    "就很麻烦 (once there are many services, it becomes hard to manage).",
])
def router_spof(answers) -> CheckResult:
    """A multiple-choice quiz, checked with feedback on each wrong choice."""
    return judge_quiz(answers)
