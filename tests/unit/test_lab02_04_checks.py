"""Checks of labs 02-04: pass on right answers, NOT DONE YET (never an exception) on empty or wrong ones.

The judges are pure and get fake inputs (routes as /config_dump shows them, traffic results, blast
radii built from fake traces); the checks themselves run against a fake lab whose proxies serve an
Envoy-style admin API (/config_dump, /stats) from a tiny HTTP server, so no lab is needed here.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from fakehttp import QuietHandler, Server

from meshlab import manifests
from meshlab.backends.base import MeshlabError
from meshlab.blast import BlastRadius
from meshlab.checks import base, lab02, lab03, lab04
from meshlab.checks.base import check
from meshlab.checks.stats import required_samples
from meshlab.stages import router, sidecar
from meshlab.traffic import TrafficResult
from checkhints import assert_hints_get_more_specific

ROOT = Path(__file__).resolve().parents[2]
PREVIOUS_HOSTS = [{"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}]
BARE = {"cluster": "ratings-v1", "timeout": "3s"}
RETRY = {**BARE, "retry_policy": {"retry_on": "5xx,connect-failure", "num_retries": 2,
                                  "retry_host_predicate": PREVIOUS_HOSTS, "host_selection_retry_max_attempts": "3"}}
PER_TRY = {**RETRY, "retry_policy": {**RETRY["retry_policy"], "per_try_timeout": "0.250s"}}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(lab02, "SETTLE_S", 0.0)
    monkeypatch.setattr(lab04, "SETTLE_S", 0.0)
    for state in (base._failures, base._revealed, base._hints):
        state.clear()


# ---- a fake lab whose proxies serve an admin API ---------------------------------------------------

def listener(name, routes):
    """A listener as /config_dump shows it: one virtual host per service, with its route action."""
    hosts = [{"name": s, "domains": [s], "routes": [{"match": {"prefix": "/"}, "route": r}]} for s, r in routes.items()]
    return {"name": name, "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                         "typed_config": {"route_config": {"virtual_hosts": hosts}}}]}]}


class FakeAdmin(Server):
    """An HTTP server playing Envoy admin APIs: /config_dump and /stats?format=json, per proxy path prefix."""

    def __init__(self):
        self.listeners: dict[str, list] = {}  # proxy -> listeners
        self.stats: dict[str, Counter] = {}
        admin = self

        class Handler(QuietHandler):
            def do_GET(self):
                proxy, _, page = self.path.lstrip("/").partition("/")
                proxy = urllib.parse.unquote(proxy)
                if page.startswith("config_dump"):
                    active = [{"active_state": {"listener": lis}} for lis in admin.listeners.get(proxy, [])]
                    return self.send_body(200, {"configs": [{"dynamic_listeners": active}]})
                if page.startswith("stats"):
                    stats = [{"name": k, "value": v} for k, v in admin.stats.get(proxy, {}).items()]
                    return self.send_body(200, {"stats": stats + [{"name": "server.version", "value": "text"}]})
                self.send_body(404, "")

        super().__init__(Handler)


class FakeLab:
    """Proxies (with admin URLs on a FakeAdmin), pods, and a traffic() that returns a canned result
    and bumps the proxies' counters the way a run would."""

    def __init__(self, admin, proxies, pods=(), result=None, bump=None):
        self.admin, self._proxies, self._pods = admin, proxies, list(pods)
        self.result, self.bump, self.sent = result, bump or {}, []

    def proxies(self):
        return self._proxies

    def pods(self):
        return self._pods

    def traffic(self, n=100, concurrency=4, **options):
        self.sent.append(n)
        for proxy, counters in self.bump.items():
            self.admin.stats.setdefault(proxy, Counter()).update(counters)
        return self.result


def proxy(admin, name, role, pod=None, node="node-1"):
    return SimpleNamespace(name=name, role=role, pod=pod or name, node=node, state="running",
                           admin_url=f"{admin.url}/{urllib.parse.quote(name, safe='')}")


def pod(name, service, version, node="node-1", ready=True):
    labels = {"app": service, "version": version} if version else {"app": service}
    return SimpleNamespace(name=name, service=service, version=version, node=node, ready=ready, labels=labels)


def traffic(requests=300, failed=0, p90=30.0, reviews=None):
    return TrafficResult(requests=requests, ok=requests - failed, failed=failed,
                         latency_ms={"p50": 10.0, "p90": p90, "p99": p90}, statuses=Counter({200: requests - failed}),
                         versions={"reviews": Counter(reviews or {"v1": 100})})


# ---- shared helpers: editing and reading routes -------------------------------------------------------

def test_router_configmap_puts_your_route_in_the_real_configmap():
    text = lab02.router_configmap("cluster: ratings-v1\ntimeout: 3s\nretry_policy: {retry_on: 5xx, num_retries: 2}\n")
    docs = manifests.load(text)
    manifests.validate(docs)  # a valid Kubernetes ConfigMap, ready for lab.apply
    assert [d["metadata"]["name"] for d in docs] == [router.CONFIGMAP]
    assert "lds.yaml: |" in text  # readable blocks, not escaped strings
    route = lab02.route_in(docs[0], "router", "ratings")
    assert route["retry_policy"] == {"retry_on": "5xx", "num_retries": 2}
    assert "retry_policy" not in lab02.route_in(docs[0], "router", "reviews")  # a bare router elsewhere
    bare = manifests.load(lab02.router_configmap())[0]
    assert lab02.route_in(bare, "router", "ratings") == BARE
    untouched = manifests.load(lab02.router_configmap("\n# YOUR YAML HERE\n"))[0]  # the generated lab's answer
    assert lab02.route_in(untouched, "router", "ratings") == BARE


def test_routes_may_be_written_with_their_route_key_and_bad_ones_say_why():
    wrapped = manifests.load(lab02.router_configmap("route:\n  cluster: ratings-v1\n  timeout: 1s\n"))[0]
    assert lab02.route_in(wrapped, "router", "ratings") == {"cluster": "ratings-v1", "timeout": "1s"}
    with pytest.raises(MeshlabError, match="the route for ratings: a route must be a YAML mapping"):
        lab02.router_configmap("- cluster: ratings-v1")
    with pytest.raises(KeyError, match="no virtual host 'payments'"):
        lab02.with_routes(router.config_map(), "router", {"payments": "cluster: x"})


BADLY_INDENTED = """
cluster: ratings-v1
timeout: 3s
retry_policy:
  retry_on: 5xx,connect-failure
   num_retries: 2
"""


def test_a_badly_indented_route_is_one_line_with_its_place_not_a_yaml_traceback():
    for make in (lambda: lab02.router_configmap(BADLY_INDENTED),
                 lambda: lab04.sidecar_configmap("reviews", "v2", ratings=BADLY_INDENTED)):
        with pytest.raises(MeshlabError) as caught:
            make()
        text = str(caught.value)
        assert text.startswith("the route for ratings, line 6 column 15: invalid YAML") and "\n" not in text
        assert "indent" in caught.value.hint


def test_sidecar_configmap_edits_one_sidecar_only():
    text = lab04.sidecar_configmap("frontend", "v1", reviews="weighted_clusters: {clusters: [{name: reviews-v1, "
                                   "weight: 80}, {name: reviews-v2, weight: 20}]}\ntimeout: 3s")
    doc = manifests.load(text)[0]
    assert doc["metadata"]["name"] == "sidecar-frontend-v1"
    assert lab04.weights_of(lab02.route_in(doc, "outbound", "reviews")) == {"v1": 80, "v2": 20}
    assert lab02.route_in(doc, "outbound", "ratings") == lab02.route_in(sidecar.config_map("frontend", "v1"),
                                                                        "outbound", "ratings")


@pytest.mark.parametrize("value, want", [("0.250s", 0.25), ("3s", 3.0), ("250ms", 0.25), (0.5, 0.5),
                                         ({"seconds": 1, "nanos": 500000000}, 1.5), (None, None), ("soon", None)])
def test_seconds(value, want):
    assert lab02.seconds(value) == want


def test_running_routes_read_the_admin_api():
    with FakeAdmin() as admin:
        admin.listeners["r1"] = [listener("router", {"ratings": RETRY, "reviews": BARE})]
        r1 = proxy(admin, "r1", "router")
        assert lab02.running_routes(r1.admin_url, "router")["ratings"] == RETRY
        assert lab02.running_routes(r1.admin_url, "outbound") == {}
        lab = FakeLab(admin, [r1])
        assert "num_retries: 2" in lab02.running_route(lab, "ratings", role="router")
    assert lab02.running_routes("http://127.0.0.1:9", "router") is None


# ---- lab 02, exercise 1: router-retries -----------------------------------------------------------------

GOOD_RUN = {"requests": 300, "success_rate": 1.0, "failed": 0, "retries": 60}


def test_retries_right_answer_passes():
    result = lab02.judge_retries([RETRY, RETRY], GOOD_RUN)
    assert result.ok and "retried 60" in result.received


@pytest.mark.parametrize("routes, run, why", [
    ([BARE, BARE], None, "has no retry_policy"),  # untouched lab
    ([{**BARE, "retry_policy": {"retry_on": "5xx", "num_retries": 0}}], GOOD_RUN, "num_retries is 0"),
    ([{**BARE, "retry_policy": {"retry_on": "5xx", "num_retries": 1}}],
     {**GOOD_RUN, "success_rate": 0.94, "retries": 40}, "previous_hosts"),  # retries land on the bad pod again
    ([{**BARE, "retry_policy": {"retry_on": "5xx", "num_retries": 2}}], GOOD_RUN,
     "previous_hosts"),  # passed on luck before: the task asks for a pod not tried yet
    ([{**BARE, "retry_policy": {**RETRY["retry_policy"], "retry_on": "connect-failure"}}],
     {**GOOD_RUN, "success_rate": 0.83, "retries": 0}, "5xx"),  # retries the wrong failures
    ([RETRY], {**GOOD_RUN, "retries": 0}, "nothing was tested"),  # the fault was restored
    ([None, None], None, "no router answered"),
    ([], None, "no router answered"),
])
def test_retries_typical_mistakes_fail_and_say_why(routes, run, why):
    result = lab02.judge_retries(routes, run)
    assert not result.ok
    assert why in result.received


def test_retries_check_against_fake_routers():
    with FakeAdmin() as admin:
        routers = [proxy(admin, f"router-{i}", "router", node=f"node-{i}") for i in (1, 2)]
        for r in routers:
            admin.listeners[r.name] = [listener("router", {"ratings": BARE})]
        bump = {r.name: {"cluster.ratings-v1.upstream_rq_retry": 30} for r in routers}
        lab = FakeLab(admin, routers, result=traffic(300), bump=bump)
        untouched = check("router-retries", lab)
        assert not untouched.ok and lab.sent == []  # no traffic is sent for a config that cannot pass
        for r in routers:
            admin.listeners[r.name] = [listener("router", {"ratings": RETRY})]
        done = check("router-retries", lab)
        assert done.ok and lab.sent == [lab02.RETRY_REQUESTS], done
        assert "retried 60" in done.received
        lab.result = traffic(300, failed=40)
        assert not check("router-retries", lab).ok
    assert not check("router-retries", None).ok
    assert not check("router-retries", SimpleNamespace(proxies=lambda: [])).ok


# ---- lab 02, exercise 2: router-timeout -----------------------------------------------------------------

GOOD_TIMEOUT = {"requests": 90, "success_rate": 1.0, "p90": 280.0, "per_try_timeouts": 30}


def test_timeout_right_answer_passes():
    result = lab02.judge_timeout([PER_TRY], GOOD_TIMEOUT)
    assert result.ok and "0.25 s" in result.received


@pytest.mark.parametrize("routes, run, why", [
    ([BARE], None, "no retry_policy.per_try_timeout"),  # untouched
    ([RETRY], None, "no retry_policy.per_try_timeout"),  # exercise 1's answer only
    ([{"cluster": "ratings-v1", "timeout": "0.250s"}], None, "ends the whole call"),  # the route timeout
    ([{**RETRY, "retry_policy": {**RETRY["retry_policy"], "per_try_timeout": "2s"}}], None, "not shorter"),
    ([PER_TRY], {**GOOD_TIMEOUT, "per_try_timeouts": 0}, "nothing was slow"),
    ([{**PER_TRY, "retry_policy": {"retry_on": "5xx", "num_retries": 2, "per_try_timeout": "0.25s"}}],
     {**GOOD_TIMEOUT, "success_rate": 0.9}, "previous_hosts"),
    ([{**PER_TRY, "timeout": "0.2s"}], None, "route `timeout` (0.2 s) is not longer"),
    ([{**PER_TRY, "timeout": "0.25s"}], None, "before any retry can start"),  # the issue's case: equal timeouts
    ([PER_TRY], {**GOOD_TIMEOUT, "per_try_timeouts": 0, "route_timeouts": 30, "success_rate": 0.7},
     "hit the route's `timeout`"),
    ([{**PER_TRY, "retry_policy": {**PER_TRY["retry_policy"], "per_try_timeout": "0.9s"}}],
     {**GOOD_TIMEOUT, "p90": 950.0}, "p90 is still"),
])
def test_timeout_typical_mistakes_fail_and_say_why(routes, run, why):
    result = lab02.judge_timeout(routes, run)
    assert not result.ok
    assert why in result.received


def test_timeout_equal_to_the_per_try_timeout_is_caught_before_any_traffic():
    with FakeAdmin() as admin:
        r = proxy(admin, "router-1", "router")
        admin.listeners[r.name] = [listener("router", {"ratings": {**PER_TRY, "timeout": "0.25s"}})]
        lab = FakeLab(admin, [r], result=traffic(90, p90=280.0))
        result = check("router-timeout", lab)
        assert not result.ok and lab.sent == [] and "nothing was slow" not in result.received
        assert "timeout: 3s" in result.hints[0] or "3s" in result.hint


def test_retries_without_previous_hosts_send_no_traffic():
    with FakeAdmin() as admin:
        r = proxy(admin, "router-1", "router")
        admin.listeners[r.name] = [listener("router", {"ratings": {**BARE, "retry_policy": {
            "retry_on": "5xx", "num_retries": 2}}})]
        lab = FakeLab(admin, [r], result=traffic(300))
        result = check("router-retries", lab)
        assert not result.ok and lab.sent == [] and "pod not tried yet" in result.expected


def test_timeout_route_timeout_gets_its_own_hint():
    result = check("router-timeout", SimpleNamespace(proxies=lambda: []))
    assert not result.ok
    wrong = lab02.judge_timeout([{"cluster": "ratings-v1", "timeout": "0.25s"}], None)
    assert "per_try_timeout" in wrong.hints[0]


def test_timeout_check_against_fake_routers():
    with FakeAdmin() as admin:
        r = proxy(admin, "router-1", "router")
        admin.listeners[r.name] = [listener("router", {"ratings": PER_TRY})]
        lab = FakeLab(admin, [r], result=traffic(90, p90=280.0),
                      bump={r.name: {"cluster.ratings-v1.upstream_rq_per_try_timeout": 25}})
        assert check("router-timeout", lab).ok
        assert lab.sent == [lab02.TIMEOUT_REQUESTS]
        lab.result = traffic(90, p90=1010.0)
        assert not check("router-timeout", lab).ok


# ---- quizzes (labs 02 and 03) --------------------------------------------------------------------------------

QUIZZES = [(lab02.QUIZ, "router-spof", lab02.LAB), (lab03.QUIZ, "per-node-quiz", lab03.LAB)]


@pytest.mark.parametrize("quiz, exercise_id, lab", QUIZZES)
def test_quiz_right_answers_pass_and_each_wrong_choice_explains_itself(quiz, exercise_id, lab):
    key = {q: right for q, (right, _) in quiz.items()}
    assert check(exercise_id, key).ok
    assert check(exercise_id, {q: f" {a.upper()}) " for q, a in key.items()}).ok
    for q, (right, why) in quiz.items():
        assert set(why) == set("abcd") - {right}
        for letter, reason in why.items():
            result = check(exercise_id, {**key, q: letter})
            assert not result.ok and reason in result.received


@pytest.mark.parametrize("quiz, exercise_id, lab", QUIZZES)
def test_quiz_empty_or_odd_answers_are_not_done(quiz, exercise_id, lab):
    assert "no answers yet" in check(exercise_id, {q: None for q in quiz}).received
    assert not check(exercise_id, "abcd").ok
    assert not check(exercise_id, {**{q: r for q, (r, _) in quiz.items()}, "q1": "z"}).ok


@pytest.mark.parametrize("quiz, exercise_id, lab", QUIZZES)
def test_quiz_matches_the_notebook(quiz, exercise_id, lab):
    nb = json.loads((ROOT / "solutions" / f"{lab}.ipynb").read_text(encoding="utf-8"))
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    for q in quiz:
        block = re.search(rf"\*\*{q}\.\*\*(.*?)(?=\*\*q\d\.\*\*|\Z)", text, re.S)
        assert block, f"{q} is not in the notebook"
        assert re.findall(r"^- ([a-d])\)", block.group(1), re.M) == list("abcd")


# ---- lab 03: blast radius of a node proxy ---------------------------------------------------------------

def app(service, version, pod, node):
    return {"kind": "app", "name": pod, "service": service, "version": version, "pod": pod, "node": node}


def hop(role, name, node):
    return {"kind": "proxy", "name": name, "role": role, "node": node}


FRONT, CAT = app("frontend", "v1", "frontend-1", "node-2"), app("catalog", "v1", "catalog-1", "node-1")
R1, R2, R3 = (app("reviews", "v1", "reviews-v1-1", "node-2"), app("reviews", "v2", "reviews-v2-1", "node-3"),
              app("reviews", "v3", "reviews-v3-1", "node-1"))
RA, RB = app("ratings", "v1", "ratings-a", "node-1"), app("ratings", "v1", "ratings-b", "node-3")
ERR = {"kind": "error", "name": "ratings", "target": "ratings", "status": 503}


def result_of(*chains):
    return TrafficResult(requests=len(chains), ok=len(chains), paths=[{"hops": list(c), "count": 10} for c in chains])


NODE3_BEFORE = result_of([FRONT, CAT], [FRONT, R1], [FRONT, R2, RA], [FRONT, R2, RB], [FRONT, R3, RA], [FRONT, R3, RB])
# node-3's proxy dies. Calls leave through the caller's node proxy and enter through the callee's: frontend's
# calls to reviews v2 fail; reviews v3 still reaches ratings, but only ratings-a (ratings-b is on node-3).
NODE3_AFTER = result_of([FRONT, CAT], [FRONT, R1], [FRONT, {**ERR, "name": "reviews", "target": "reviews"}],
                        [FRONT, R3, RA], [FRONT, R3, RA])


def node3_radius(after=NODE3_AFTER):
    return BlastRadius({"proxy": "node", "node": "node-3"}, ["node-proxy-c/envoy"], "node",
                       {"node-proxy-c": "node-3"}, [], NODE3_BEFORE, after)


def test_cut_off_from_a_measured_radius():
    radius = node3_radius()
    assert radius.lost_pods == ["ratings-b", "reviews-v2-1"]  # every app pod on node-3, as the seed says
    assert lab03.cut_off(radius) == {"reviews-v2-1", "ratings-b"}
    assert f"lost connectivity: pods ratings-b, reviews-v2-1; nodes node-3" in str(radius)  # the same facts
    assert lab03.pod_nodes(radius.before)["ratings-b"] == "node-3"


def test_node_blast_right_prediction_passes_in_any_spelling():
    assert check("node-proxy-blast", node3_radius(), {"reviews-v2-1", "ratings-b"}).ok
    assert check("node-proxy-blast", node3_radius(), ["reviews-v2", "ratings-b"]).ok  # a unique prefix
    assert check("node-proxy-blast", node3_radius(), [SimpleNamespace(name="reviews-v2-1"),
                                                      SimpleNamespace(name="ratings-b")]).ok  # PodInfos


def test_node_blast_accepts_the_seeds_reading_every_pod_on_the_node():
    on_node_3 = {h["pod"] for path in NODE3_BEFORE.paths for h in path["hops"] if h.get("node") == "node-3"}
    assert check("node-proxy-blast", node3_radius(), on_node_3).ok


@pytest.mark.parametrize("lost, why", [
    ({"reviews-v2-1"}, "also cut off: ratings-b"),  # only the callers on the node: calls *into* it pass it too
    ({"ratings-a", "ratings-b"}, "also cut off: reviews-v2-1"),
    ({"ratings-a", "ratings-b", "reviews-v2-1"}, "not cut off: ratings-a"),  # every ratings pod
    ({"frontend-1", "catalog-1", "reviews-v1-1", "reviews-v2-1", "reviews-v3-1", "ratings-a", "ratings-b"},
     "not cut off"),  # the router-mesh answer: everything
    ({"node-proxy-c"}, "is the proxy that was killed"),
    ({"payments-v1"}, "name no pod"),
    (set(), "no prediction yet"),
    (None, "no prediction yet"),
])
def test_node_blast_typical_mistakes_fail_and_say_why(lost, why):
    result = check("node-proxy-blast", node3_radius(), lost)
    assert not result.ok
    assert why in result.received


def test_node_blast_needs_a_node_radius():
    assert "no blast radius" in check("node-proxy-blast", None, {"reviews-v2-1"}).received
    pod_radius = BlastRadius({"pod": "x"}, ["x"], "pod", {}, [], NODE3_BEFORE, NODE3_AFTER)
    assert not check("node-proxy-blast", pod_radius, {"reviews-v2-1", "ratings-b"}).ok


def test_a_pod_that_only_lost_its_callers_may_be_named_or_not():
    """Frontend's node: frontend is cut off; the pods it no longer reaches cannot be told apart from pods that
    are fine (nobody else calls them), so a prediction may name them or leave them out."""
    after = result_of([FRONT, {"kind": "error", "target": "catalog", "status": 503}],
                      [FRONT, {"kind": "error", "target": "reviews", "status": 503}])
    radius = BlastRadius({"proxy": "node", "node": "node-2"}, ["np/envoy"], "node", {"np": "node-2"}, [],
                         NODE3_BEFORE, after)
    assert lab03.cut_off(radius) == {"frontend-1"}
    assert lab03.cannot_tell(radius) == {"catalog-1", "reviews-v1-1", "reviews-v2-1", "reviews-v3-1", "ratings-a",
                                         "ratings-b"}
    assert check("node-proxy-blast", radius, {"frontend-1"}).ok
    both = check("node-proxy-blast", radius, {"frontend-1", "reviews-v1-1"})  # every pod on node-2
    assert both.ok and "cannot tell" in both.received
    assert "also cut off: frontend-1" in check("node-proxy-blast", radius, {"reviews-v1-1"}).received


# ---- lab 03: count-proxies ------------------------------------------------------------------------------

def stage3_pods(ratings=4):
    pods = [pod("frontend-1", "frontend", "v1", "node-2"), pod("catalog-1", "catalog", "v1"),
            pod("reviews-v1-1", "reviews", "v1", "node-2"), pod("reviews-v2-1", "reviews", "v2", "node-3"),
            pod("reviews-v3-1", "reviews", "v3")]
    pods += [pod(f"ratings-{i}", "ratings", "v1", f"node-{i % 3 + 1}") for i in range(ratings)]
    return pods + [pod(f"node-proxy-{i}", "node-proxy", "", f"node-{i}") for i in (1, 2, 3)]


def stage3_proxies():
    return [SimpleNamespace(name=f"node-proxy-{i}", role="node", pod=f"node-proxy-{i}", node=f"node-{i}",
                            admin_url="") for i in (1, 2, 3)] + [SimpleNamespace(name="edge", role="edge", pod="edge",
                                                                                 node="node-1", admin_url="")]


COUNTS = {"app_pods": 9, "node_proxies": 3, "sidecars_needed": 9}


def test_counts_right_answer_passes():
    lab = SimpleNamespace(pods=stage3_pods, proxies=stage3_proxies)
    result = check("count-proxies", lab, COUNTS)
    assert result.ok and "added pods, not proxies" in result.received


@pytest.mark.parametrize("answers, why", [
    ({**COUNTS, "app_pods": 12}, "app_pods = 12: more than the lab runs"),  # counted the node proxies as pods
    ({**COUNTS, "node_proxies": 4}, "node_proxies = 4: more than"),  # counted the edge too
    ({**COUNTS, "sidecars_needed": 3}, "sidecars_needed = 3: fewer than"),  # one per node, not per pod
    ({**COUNTS, "app_pods": "9"}, "app_pods = '9': give a whole number"),
    ({**COUNTS, "node_proxies": None}, "node_proxies = None  (not filled in yet)"),
    ({k: None for k in COUNTS}, "nothing filled in"),
    ([9, 3, 9], "not a dict"),
])
def test_counts_typical_mistakes_fail(answers, why):
    result = lab03.judge_counts(answers, lab03.truth_counts(stage3_pods(), stage3_proxies()))
    assert not result.ok and why in result.received
    assert "= 9" not in result.expected and "= 3" not in result.expected  # what to count, never the figure


def test_counts_need_ratings_scaled_first():
    result = lab03.judge_counts({**COUNTS, "app_pods": 7, "sidecars_needed": 7},
                                lab03.truth_counts(stage3_pods(ratings=2), stage3_proxies()))
    assert not result.ok and "runs 2 ready pods" in result.received and "replicas" in result.hints[0]


# ---- lab 04, exercise 1: shift-reviews-20 --------------------------------------------------------------------

SPLIT_ROUTE = {"weighted_clusters": {"clusters": [{"name": "reviews-v1", "weight": 80},
                                                  {"name": "reviews-v2", "weight": 20},
                                                  {"name": "reviews-v3", "weight": 0}]}, "timeout": "3s"}
EVEN_ROUTE = {"weighted_clusters": {"clusters": [{"name": f"reviews-v{i}", "weight": 1} for i in (1, 2, 3)]},
              "timeout": "3s"}
N = required_samples(lab04.SPLIT)


def during(requests=400, failed=0, v3=60):
    return TrafficResult(requests=requests, ok=requests - failed, failed=failed, errors=["HTTP 503 from edge"][:failed],
                         versions={"reviews": Counter({"v1": 200, "v2": 140, "v3": v3})})


def test_weights_and_splits():
    assert lab04.weights_of(SPLIT_ROUTE) == {"v1": 80, "v2": 20, "v3": 0}
    assert lab04.weights_of({"cluster": "reviews-v2"}) == {"v2": 1}
    assert lab04.same_split({"v1": 8, "v2": 2}) and lab04.same_split({"v1": 80, "v2": 20, "v3": 0})
    assert not lab04.same_split({"v1": 1, "v2": 1, "v3": 1}) and not lab04.same_split({"v1": 20, "v2": 80})
    assert not lab04.same_split(None) and not lab04.same_split({"v1": 0})


def test_shift_right_answer_passes():
    counts = {"v1": round(0.8 * N), "v2": N - round(0.8 * N)}
    result = lab04.judge_shift({"v1": 80, "v2": 20, "v3": 0}, during(), counts)
    assert result.ok and "consistent with the expected split" in result.received


@pytest.mark.parametrize("weights, load, counts, why", [
    ({"v1": 1, "v2": 1, "v3": 1}, during(), None, "v1 1 (33%)"),  # untouched lab
    ({"v1": 20, "v2": 80, "v3": 0}, during(), None, "v2 80 (80%)"),  # the weights swapped
    ({"v1": 80, "v2": 20, "v3": 0}, during(failed=3), None, "3 of 400 requests failed"),  # dropped requests
    ({"v1": 80, "v2": 20, "v3": 0}, during(v3=0), None, "started after the change"),  # load after the reload
    ({"v1": 80, "v2": 20, "v3": 0}, during(requests=20), None, "only 20 requests"),
    ({"v1": 80, "v2": 20, "v3": 0}, None, None, "no load result"),
    ({"v1": 80, "v2": 20, "v3": 0}, during(), {"v1": round(0.7 * N), "v2": N - round(0.7 * N)}, "expected 80.0%"),
    ({"v1": 80, "v2": 20, "v3": 0}, during(), {"v1": 160, "v2": 40}, "at least"),  # too few to tell
    ({"v1": 80, "v2": 20, "v3": 0}, during(), {"v1": round(0.8 * N), "v2": N - round(0.8 * N) - 1, "v3": 1}, "v3"),
    (None, during(), None, "did not answer"),
])
def test_shift_typical_mistakes_fail_and_say_why(weights, load, counts, why):
    result = lab04.judge_shift(weights, load, counts)
    assert not result.ok
    assert why in result.received


def test_shift_check_against_a_fake_frontend_sidecar():
    with FakeAdmin() as admin:
        front = proxy(admin, "frontend-1/envoy", "sidecar", pod="frontend-v1-abc-1")
        admin.listeners[front.name] = [listener("outbound", {"reviews": EVEN_ROUTE})]
        lab = FakeLab(admin, [front], result=traffic(N, reviews={"v1": round(0.8 * N), "v2": N - round(0.8 * N)}))
        assert not check("shift-reviews-20", lab, during()).ok and lab.sent == []
        admin.listeners[front.name] = [listener("outbound", {"reviews": SPLIT_ROUTE})]
        result = check("shift-reviews-20", lab, during())
        assert result.ok and lab.sent == [N], result


# ---- lab 04, exercise 2: ratings-retry-by-hand ---------------------------------------------------------------

def routes(retrying=("reviews-v2", "reviews-v3")):
    return {f"sidecar-{s}": (RETRY if s in retrying else BARE)
            for s in ("frontend-v1", "catalog-v1", "reviews-v1", "reviews-v2", "reviews-v3", "ratings-v1")}


GOOD_HAND = {"requests": 300, "success_rate": 1.0, "retries": 15}
EDIT = [("reviews", "v2"), ("reviews", "v3")]


def test_by_hand_right_answer_passes_in_any_spelling():
    assert lab04.judge_by_hand(EDIT, routes(), GOOD_HAND).ok
    assert lab04.judge_by_hand({"sidecar-reviews-v2", "reviews-v3"}, routes(), GOOD_HAND).ok


@pytest.mark.parametrize("edit, running, run, why", [
    ([], routes(()), None, "nothing in `edit`"),  # untouched lab
    ([("reviews", "v2")], routes(("reviews-v2",)), GOOD_HAND, "sidecar-reviews-v3 also calls ratings"),
    ([("ratings", "v1")], routes(("ratings-v1",)), GOOD_HAND, "also calls ratings"),  # the callee's sidecar
    (EDIT + [("catalog", "v1")], routes(("reviews-v2", "reviews-v3", "catalog-v1")), GOOD_HAND, "never calls ratings"),
    (EDIT, routes(("reviews-v2",)), GOOD_HAND, "run no retry policy"),  # listed, never applied
    ([("reviews", "v2")], routes(), GOOD_HAND, "not in `edit`"),
    ([("payments", "v1")], routes(), GOOD_HAND, "name no sidecar ConfigMap"),
    (EDIT, routes(), {**GOOD_HAND, "retries": 0}, "nothing failed to retry"),
    (EDIT, routes(), {**GOOD_HAND, "success_rate": 0.9}, "some retries failed again"),
    (EDIT, {**routes(), "sidecar-reviews-v3": {**BARE, "retry_policy": {"retry_on": "5xx", "num_retries": 2}}},
     GOOD_HAND, "sidecar-reviews-v3: the retry_policy for ratings has no previous_hosts"),  # passed on luck before
    (EDIT, {}, GOOD_HAND, "no sidecar answered"),
])
def test_by_hand_typical_mistakes_fail_and_say_why(edit, running, run, why):
    result = lab04.judge_by_hand(edit, running, run)
    assert not result.ok
    assert why in result.received


def test_by_hand_check_against_fake_sidecars():
    with FakeAdmin() as admin:
        specs = [("frontend", "v1"), ("catalog", "v1"), ("reviews", "v1"), ("reviews", "v2"), ("reviews", "v3"),
                 ("ratings", "v1")]
        pods = [pod(f"{s}-{v}-abc-1", s, v) for s, v in specs]
        sidecars = [proxy(admin, f"{p.name}/envoy", "sidecar", pod=p.name) for p in pods]
        for sc in sidecars:
            admin.listeners[sc.name] = [listener("outbound", {"ratings": BARE})]
        bump = {"reviews-v2-abc-1/envoy": {"cluster.ratings-v1.upstream_rq_retry": 9}}
        lab = FakeLab(admin, sidecars, pods, result=traffic(300), bump=bump)
        assert not check("ratings-retry-by-hand", lab, EDIT).ok and lab.sent == []
        for name in ("reviews-v2-abc-1/envoy", "reviews-v3-abc-1/envoy"):
            admin.listeners[name] = [listener("outbound", {"ratings": RETRY})]
        result = check("ratings-retry-by-hand", lab, EDIT)
        assert result.ok and "retried 9" in result.received, result


# ---- lab 04, exercise 3: count-configs ------------------------------------------------------------------------

def running_of(service, version, **changes):
    """A sidecar's outbound routes as /config_dump shows them, with some routes changed."""
    config = sidecar.config_map(service, version)
    out = {s: json.loads(json.dumps(lab02.route_in(config, "outbound", s)))
           for s in ("frontend", "catalog", "reviews", "ratings")}
    return {**out, "unknown": {}, **changes}


def fabric(edited=True):
    sidecars = {}
    for s, v in (("frontend", "v1"), ("catalog", "v1"), ("reviews", "v1"), ("reviews", "v2"), ("reviews", "v3"),
                 ("ratings", "v1"), ("ratings", "v1")):
        changes = {}
        if edited and s == "frontend":
            changes = {"reviews": SPLIT_ROUTE}
        if edited and (s, v) in EDIT:
            changes = {"ratings": RETRY}
        sidecars[f"{s}-{v}-{len(sidecars)}/envoy"] = (s, v, running_of(s, v, **changes))
    return sidecars


CONFIGS = {"configmaps": 6, "sidecars": 7, "edited_by_hand": 3, "stage2_configmaps": 1}


def test_configs_truth_and_right_answer():
    assert lab04.truth_configs(fabric(edited=False))["edited_by_hand"] == 0
    truth = lab04.truth_configs(fabric())
    assert truth["edited"] == ["sidecar-frontend-v1", "sidecar-reviews-v2", "sidecar-reviews-v3"]
    assert lab04.judge_configs(CONFIGS, truth).ok


@pytest.mark.parametrize("answers, why", [
    ({**CONFIGS, "configmaps": 7}, "configmaps = 7"),  # counted one per pod
    ({**CONFIGS, "sidecars": 6}, "sidecars = 6"),  # one per ConfigMap
    ({**CONFIGS, "edited_by_hand": 2}, "sidecar-frontend-v1"),  # forgot exercise 1
    ({**CONFIGS, "stage2_configmaps": 3}, "stage2_configmaps = 3"),
    ({**CONFIGS, "sidecars": 7.0}, "sidecars = 7.0"),
    ({k: None for k in CONFIGS}, "nothing filled in"),
    ("6, 7, 3, 1", "not a dict"),
])
def test_configs_typical_mistakes_fail(answers, why):
    result = lab04.judge_configs(answers, lab04.truth_configs(fabric()))
    assert not result.ok and why in result.received


# ---- lab 04, exercise 4: sidecar-blast ---------------------------------------------------------------------------

def sidecar_radius(scope="pod", killed=("reviews-v2-1/envoy",)):
    after = result_of([FRONT, CAT], [FRONT, R1], [FRONT, {"kind": "error", "target": "reviews", "status": 503}],
                      [FRONT, R3, RA], [FRONT, R3, RB])
    return BlastRadius({"proxy": "sidecar", "pod": "reviews-v2-1"}, list(killed), scope, {"reviews-v2-1": "node-3"},
                       ["reviews"], NODE3_BEFORE, after)


def test_sidecar_blast_right_answer_passes():
    result = check("sidecar-blast", sidecar_radius(), {"reviews-v2-1"}, {"frontend -> reviews"})
    assert result.ok, result


@pytest.mark.parametrize("lost, failing, why", [
    ({"reviews-v2-1"}, {"frontend->reviews", "reviews->ratings"}, "measured: frontend->reviews"),
    ({"reviews-v2-1", "ratings-a", "ratings-b"}, {"frontend->reviews"}, "not cut off"),  # thinking per service
    ({"reviews-v1-1", "reviews-v2-1", "reviews-v3-1"}, {"frontend->reviews"}, "not cut off"),
    ({"frontend-1"}, {"frontend->reviews"}, "also cut off: reviews-v2-1"),
    (set(), set(), "no prediction yet"),
    ({"reviews-v2-1"}, set(), "you: none"),
])
def test_sidecar_blast_typical_mistakes_fail(lost, failing, why):
    result = check("sidecar-blast", sidecar_radius(), lost, failing)
    assert not result.ok
    assert why in result.received


def test_sidecar_blast_needs_one_sidecar_killed():
    assert not check("sidecar-blast", sidecar_radius(scope="layer"), {"reviews-v2-1"}, {"frontend->reviews"}).ok
    two = sidecar_radius(killed=("reviews-v2-1/envoy", "ratings-a/envoy"))
    assert "kill=dict(proxy='sidecar'" in check("sidecar-blast", two, {"reviews-v2-1"}, {"frontend->reviews"}).expected
    assert not check("sidecar-blast", None, {"reviews-v2-1"}, {"frontend->reviews"}).ok


def test_sidecar_blast_flags_failures_beyond_the_pod():
    catalog_down = {"kind": "error", "target": "catalog", "status": 503}
    stray_after = result_of([FRONT, catalog_down], [FRONT, R1], [FRONT, R3, RA])
    radius = BlastRadius({"proxy": "sidecar", "pod": "reviews-v2-1"}, ["reviews-v2-1/envoy"], "pod",
                         {"reviews-v2-1": "node-3"}, ["reviews"], NODE3_BEFORE, stray_after)
    truth_lost = sorted(lab03.cut_off(radius))
    failing = {f"{r.caller}->{r.callee}" for r in radius.rows if r.after_failed}
    result = check("sidecar-blast", radius, set(truth_lost), failing)
    assert not result.ok and "catalog failed too" in result.received


# ---- every exercise ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lab, ids", [
    (lab02.LAB, ["router-retries", "router-spof", "router-timeout"]),
    (lab03.LAB, ["count-proxies", "node-proxy-blast", "per-node-quiz"]),
    (lab04.LAB, ["count-configs", "ratings-retry-by-hand", "shift-reviews-20", "sidecar-blast"]),
])
def test_every_exercise_has_hints_that_get_more_specific(lab, ids):
    assert_hints_get_more_specific(lab, ids)


def test_hints_are_shown_one_more_per_failure():
    shown = [check("router-spof", {"q1": "a"}).hint for _ in range(4)]
    hints = base.find(f"{lab02.LAB}/router-spof").hints
    assert shown == [hints[0], hints[1], hints[2], hints[2]]


def test_checks_never_raise_on_nonsense():
    for exercise_id, args in [("router-retries", (42,)), ("router-timeout", ("lab",)), ("node-proxy-blast", (1, 2)),
                              ("count-proxies", (None, None)), ("shift-reviews-20", (None, None)),
                              ("ratings-retry-by-hand", (None, [("reviews", "v2")])), ("count-configs", (None, {})),
                              ("sidecar-blast", ("radius", "x", "y"))]:
        result = check(exercise_id, *args)
        assert not result.ok and result.expected and result.received
