"""Checks of lab 06: pass on right answers, NOT DONE YET (never an exception) on empty or wrong ones.

The judges are pure and get fake inputs: traffic results whose traces are built here (apps in cluster-1,
cluster-2 or outside both). The checks run against a fake fleet: a tiny model of the two-cluster shop (where
reviews answers from, whether calls stay local, what a kill of cluster-1's reviews does) that answers
`lab.traffic`, `lab.pods`, `lab.kill`, `lab.restore` and a background load the way the real lab does, so each
typical wrong answer is written as the behaviour its YAML gives.
"""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest

from meshlab.checks import base, lab06
from meshlab.checks.base import check
from meshlab.traffic import TrafficResult
from checkhints import assert_hints_get_more_specific

C1, C2 = "cluster-1", "cluster-2"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHLAB_DATA", str(tmp_path / "data"))
    for name, value in (("POLL_S", 0.0), ("WARMUP_S", 0.0), ("SETTLE_S", 0.0), ("SWITCH_TIMEOUT_S", 0.5),
                        ("BACK_TIMEOUT_S", 0.2), ("HEALTHY_TIMEOUT_S", 0.0), ("RECOVER_S", 0.0)):
        monkeypatch.setattr(lab06, name, value)
    for state in (base._failures, base._revealed, base._hints):
        state.clear()


# ---- traces ---------------------------------------------------------------------------------------------

def app(service, cluster, node="node-1", version="v1"):
    """An app hop; cluster None = the legacy host outside both clusters (no sidecar, no cluster=)."""
    pod = f"{service}-{version}-abc-{(cluster or 'x')[-1]}"
    hop = {"kind": "app", "name": pod, "pod": pod, "service": service, "version": version,
           "node": node if cluster else "legacy-host"}
    return {**hop, "cluster": cluster} if cluster else hop


def path(*apps, count=1):
    """edge -> apps..., each app in a cluster with its sidecar's hops (in, carrying the caller's identity; out)."""
    hops = [{"kind": "proxy", "name": "edge-1", "role": "edge", "node": "node-1"}]
    previous = None
    for i, hop in enumerate(apps):
        if hop.get("cluster"):
            side = {"kind": "proxy", "name": hop["pod"], "role": "sidecar", "node": hop["node"],
                    "cluster": hop["cluster"]}
            peer = {"peer": f"spiffe://cluster.local/ns/default/sa/shop-{previous}"} if previous else {}
            hops.append({**side, "dir": "in", **peer})
        hops.append(hop)
        if hop.get("cluster") and i < len(apps) - 1:
            hops.append({**side, "dir": "out"})
        previous = hop["service"]
    return {"hops": hops, "count": count}


FRONTEND = app("frontend", C1, "node-1")
LOCAL = path(FRONTEND, app("reviews", C1, "node-2", "v2"), app("ratings", C1, "node-3"), count=30)
TWICE = path(FRONTEND, app("reviews", C2, "node-1", "v3"), app("ratings", C1, "node-2"), count=9)  # node-1 == node-1
ONCE = path(FRONTEND, app("reviews", C1, "node-1", "v2"), app("ratings", C2, "node-3"), count=12)
REMOTE = path(FRONTEND, app("reviews", C2, "node-2"), count=11)
CATALOG = path(FRONTEND, app("catalog", C1, "node-3"), count=100)
PAYMENTS = path(FRONTEND, app("payments", None), count=100)
SHOP = [CATALOG, PAYMENTS, LOCAL, TWICE, ONCE, REMOTE]


def result(requests=100, failed=0, paths=(), errors=None):
    errors = errors or (["HTTP 502 from frontend: frontend -> reviews: 503"] if failed else [])
    return TrafficResult(requests=requests, ok=requests - failed, failed=failed, paths=list(paths), errors=list(errors),
                         statuses=Counter({200: requests - failed, 502: failed}))


def reviews_from(counts: dict, failed=0, requests=None, errors=None):
    """Traffic whose reviews calls were answered by these clusters ({cluster: count})."""
    paths = [path(FRONTEND, app("reviews", c, "node-1"), count=n) for c, n in counts.items() if n]
    return result(requests or sum(counts.values()) + failed, failed, paths, errors)


TIMEOUT = "timeout after 5s"  # what lab.traffic records for a request with no answer in time


# ---- the learner's functions for exercise 1, right and wrong ----------------------------------------------

def right(hops):
    apps = [h for h in hops if h["kind"] == "app"]
    return [f"{a['service']}->{b['service']}" for a, b in zip(apps, apps[1:])
            if a.get("cluster", "outside") != b.get("cluster", "outside")]


def as_tuples(hops):
    return [tuple(x.split("->")) for x in right(hops)]


def by_node(hops):  # node names repeat in every cluster
    apps = [h for h in hops if h["kind"] == "app"]
    return [f"{a['service']}->{b['service']}" for a, b in zip(apps, apps[1:]) if a["node"] != b["node"]]


def clusters_only(hops):  # forgets the legacy host outside both clusters
    apps = [h for h in hops if h["kind"] == "app"]
    return [f"{a['service']}->{b['service']}" for a, b in zip(apps, apps[1:])
            if a.get("cluster") and b.get("cluster") and a["cluster"] != b["cluster"]]


def every_hop(hops):  # reads proxy hops as calls too: the edge has no cluster=
    return [f"{a.get('service', a['name'])}->{b.get('service', b['name'])}" for a, b in zip(hops, hops[1:])
            if a.get("cluster") != b.get("cluster")]


def first_only(hops):  # stops at the first crossing
    return right(hops)[:1]


def backwards(hops):
    return ["->".join(reversed(x.split("->"))) for x in right(hops)]


def every_call(hops):
    apps = [h for h in hops if h["kind"] == "app"]
    return [f"{a['service']}->{b['service']}" for a, b in zip(apps, apps[1:])]


def raises(hops):
    return [h["cluster"] for h in hops]  # KeyError: the edge has no cluster


def untouched(hops):
    pass  # YOUR CODE HERE


PODS = {h["pod"]: h["cluster"] for p in SHOP for h in p["hops"] if h.get("kind") == "app" and h.get("cluster")}


def test_the_truth_from_traces_and_pods():
    assert lab06.crossings(TWICE["hops"], PODS) == ["frontend->reviews", "reviews->ratings"]
    assert lab06.crossings(LOCAL["hops"], PODS) == []
    assert lab06.crossings(PAYMENTS["hops"], PODS) == ["frontend->payments"]
    assert lab06.by_node(TWICE["hops"]) == ["reviews->ratings"]
    assert lab06.place(app("payments", None)) == "outside"
    moved = {**PODS, TWICE["hops"][5]["pod"]: C1}  # the lab's pods say where a pod runs, not the hop's stamp
    assert lab06.crossings(TWICE["hops"], moved) == []
    assert lab06.label(TWICE["hops"], PODS) == ("frontend v1 [cluster-1] -> reviews v3 [cluster-2] -> "
                                                "ratings v1 [cluster-1]")
    assert lab06.crossing_path(result(paths=SHOP), PODS) == TWICE["hops"]
    assert lab06.crossing_path(result(paths=[LOCAL, CATALOG]), PODS) == []
    table = lab06.hop_table(TWICE["hops"])
    assert "cluster-2" in table and "spiffe://cluster.local/ns/default/sa/shop-frontend" in table


@pytest.mark.parametrize("answer", [right, as_tuples])
def test_crossings_right_answers_pass(answer):
    result_ = lab06.judge_crossings(answer, result(paths=SHOP), PODS)
    assert result_.ok, result_
    assert "right on all 6 distinct paths" in result_.received and "32 traced requests crossed" in result_.received


@pytest.mark.parametrize("answer, why", [
    (untouched, "it returned None"),  # the untouched lab
    (None, "not a function"),
    (by_node, "comparing node names"),
    (clusters_only, "payments has no cluster="),
    (every_hop, "not calls between the shop's services: edge-1->frontend"),
    (first_only, "these crossed and are missing: reviews->ratings"),
    (backwards, "missing: frontend->reviews, reviews->ratings; should not be there: reviews->frontend"),
    (every_call, "these stayed in one place: frontend->reviews"),
    (raises, "raised KeyError"),
])
def test_crossings_typical_mistakes_fail_and_say_why(answer, why):
    result_ = lab06.judge_crossings(answer, result(paths=SHOP), PODS)
    assert not result_.ok
    assert why in result_.received


def test_answers_are_read_kindly():
    assert lab06.read_answer(["Frontend -> Reviews", ("reviews", "ratings"), "reviews→ratings"]) == [
        "frontend->reviews", "reviews->ratings", "reviews->ratings"]
    assert lab06.read_answer("frontend->payments") == ["frontend->payments"]
    assert lab06.read_answer(x for x in ["a->b"]) == ["a->b"]
    assert lab06.read_answer({"frontend": "reviews"}) is None and lab06.read_answer([1, 2]) is None
    assert lab06.read_answer(None) is None


def test_crossings_need_a_crossing_to_read():
    result_ = lab06.judge_crossings(right, result(paths=[CATALOG, PAYMENTS, LOCAL]), PODS)
    assert not result_.ok and "no call crossed between the clusters" in result_.received
    assert "no traced request" in lab06.judge_crossings(right, result(100, 100, []), PODS).received


def test_crossings_check_reads_fresh_traffic_of_the_lab():
    fleet = FakeFleet()
    assert check("crossed-networks", fleet, right).ok
    assert fleet.sent == [lab06.SAMPLE]
    assert not check("crossed-networks", fleet, untouched).ok
    local = FakeFleet(local=True)  # a locality DestinationRule keeps reviews home: nothing crosses
    assert "no call crossed" in check("crossed-networks", local, right).received


# ---- a fake fleet -----------------------------------------------------------------------------------------

def pod(name, service, cluster, ready=True):
    return SimpleNamespace(name=name, service=service, cluster=cluster, ready=ready, phase="Running",
                           labels={"app": service})


class FakeLoad:
    """A background load over a FakeFleet: every snapshot sends ten more requests."""

    def __init__(self, fleet):
        self.fleet, self.paths, self.requests, self.failed = fleet, Counter(), 0, 0

    def _send(self, n=10):
        for _ in range(n):
            cluster, ok = self.fleet.answer()
            self.requests += 1
            self.failed += not ok
            if ok:
                self.paths[cluster] += 1

    def snapshot(self):
        self._send()
        return reviews_from(dict(self.paths), self.failed, self.requests)

    def result(self):
        return self.snapshot()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class FakeFleet:
    """The shop on two clusters: where reviews answers from, and what killing cluster-1's copy does.

    local: a locality rule is in effect (else reviews splits evenly: 3 pods in each cluster); switch: when
    cluster-1's copy is dead, cluster-2 answers (else nothing does: a `distribute` that keeps region-1);
    failures: requests that fail between the kill and the switch; back: after restore(), reviews comes home;
    rules: the DestinationRules stored; outage: the cluster killed whole, if any; timeouts: {n: k}, k requests of
    the n-th lab.traffic call time out (a one-off, as seen right after an earlier run of the failover check)."""

    url = "http://edge"

    def __init__(self, local=False, switch=True, failures=2, back=True, rules=(), timeouts=None):
        self.local, self.switch, self.failures, self.back = local, switch, failures, back
        self.rules = list(rules)
        self.timeouts = dict(timeouts or {})
        self.dead: set[str] = set()
        self.outage = ""
        self.sent: list[int] = []
        self.served = 0
        self.backend = SimpleNamespace(objects=lambda kind: list(self.rules) if kind == "DestinationRule" else [])

    def pods(self):
        pods = [pod("frontend-v1-a", "frontend", C1), pod("catalog-v1-a", "catalog", C1)]
        pods += [pod(f"reviews-v{i}-{c[-1]}", "reviews", c) for c in (C1, C2) for i in (1, 2, 3)]
        for p in pods:
            p.ready = p.name not in self.dead and p.cluster != self.outage
        return pods

    def proxy_status(self):
        return [SimpleNamespace(pod=p.name, state="SYNCED" if p.ready else "NOT CONNECTED") for p in self.pods()]

    def answer(self) -> tuple[str, bool]:
        """(cluster that answered reviews, ok) for one request."""
        self.served += 1
        if not self.dead:
            return (C1 if self.local or self.served % 2 else C2), True
        if self.failures > 0:
            self.failures -= 1
            return C1, False
        return (C2, True) if self.switch else (C1, False)

    def traffic(self, n=100, concurrency=4, **options):
        self.sent.append(n)
        stuck = self.timeouts.get(len(self.sent), 0)
        if not stuck:
            return self._answers(n)
        sent = self._answers(n - stuck)
        return result(n, sent.failed + stuck, sent.paths, sent.errors + [TIMEOUT])

    def _answers(self, n):
        if self.local:
            counts = Counter()
            failed = 0
            for _ in range(n):
                cluster, ok = self.answer()
                counts[cluster] += ok
                failed += not ok
            return reviews_from(dict(counts), failed, n)
        return result(n, 0, SHOP) if not self.dead else reviews_from({C2: n})

    def kill(self, pod=None, **options):
        self.dead.add(pod)
        return [pod]

    def restore(self):
        if self.back:
            self.dead.clear()
        self.outage = ""


@pytest.fixture
def fake_load(monkeypatch):
    monkeypatch.setattr(lab06, "background", lambda url, concurrency=2, **options: FakeLoad(current[0]))
    current: list = [None]
    return current


def failover_check(fleet, fake_load):
    fake_load[0] = fleet
    return check("locality-failover", fleet)


GOOD_RULE = {"kind": "DestinationRule", "spec": {"host": "reviews", "trafficPolicy": {
    "loadBalancer": {"localityLbSetting": {"enabled": True, "failover": [{"from": "region-1", "to": "region-2"}]}},
    "outlierDetection": {"consecutive5xxErrors": 1, "interval": "1s", "maxEjectionPercent": 100}}}}
NO_OUTLIER = {"kind": "DestinationRule", "spec": {"host": "reviews", "trafficPolicy": {
    "loadBalancer": {"localityLbSetting": {"enabled": True, "failover": [{"from": "region-1", "to": "region-2"}]}}}}}
DISABLED = {"kind": "DestinationRule", "spec": {"host": "reviews", "trafficPolicy": {
    "loadBalancer": {"localityLbSetting": {"enabled": False}}, "outlierDetection": {"consecutive5xxErrors": 1}}}}


# ---- exercise 3: locality-failover ------------------------------------------------------------------------

def test_failover_right_answer_passes(fake_load):
    fleet = FakeFleet(local=True, rules=[GOOD_RULE])
    result_ = failover_check(fleet, fake_load)
    assert result_.ok, result_
    assert "killed reviews-v1-1, reviews-v2-1, reviews-v3-1 under load: 2 of" in result_.received
    assert "back in cluster-1" in result_.received and not fleet.dead  # restored


@pytest.mark.parametrize("fleet, why", [
    (FakeFleet(), "there is no DestinationRule for host reviews"),  # the untouched lab
    (FakeFleet(rules=[NO_OUTLIER]), "has no outlierDetection"),  # Istio ignores locality without it
    (FakeFleet(rules=[DISABLED]), "enabled is false"),
    (FakeFleet(rules=[{**GOOD_RULE, "spec": {**GOOD_RULE["spec"], "host": "ratings"}}]),
     "no DestinationRule for host reviews"),  # a rule for the wrong host
])
def test_failover_not_local_fails_before_killing_anything(fleet, why, fake_load):
    result_ = failover_check(fleet, fake_load)
    assert not result_.ok and "calls do not stay in cluster-1" in result_.received and why in result_.received
    assert fleet.dead == set() and fleet.sent[-1] == 100  # nothing killed: the answer is wrong already


@pytest.mark.parametrize("fleet, why", [
    (FakeFleet(local=True, switch=False), "never answered from cluster-2"),  # distribute keeps region-1 only
    (FakeFleet(local=True, failures=40), "more than 12 failed"),  # outlier detection far too slow
    (FakeFleet(local=True, back=False), "did not come back to cluster-1"),
])
def test_failover_typical_mistakes_fail_and_say_why(fleet, why, fake_load):
    result_ = failover_check(fleet, fake_load)
    assert not result_.ok
    assert why in result_.received


def tuned(**outlier):
    """GOOD_RULE with its outlierDetection changed (a value None removes the field)."""
    fields = {**GOOD_RULE["spec"]["trafficPolicy"]["outlierDetection"], **outlier}
    policy = {**GOOD_RULE["spec"]["trafficPolicy"], "outlierDetection": {k: v for k, v in fields.items() if v is not None}}
    return {**GOOD_RULE, "spec": {**GOOD_RULE["spec"], "trafficPolicy": policy}}


@pytest.mark.parametrize("rule, field, why", [
    (tuned(consecutive5xxErrors=50), "consecutive5xxErrors", "is 50: a reviews pod that fails while it stays ready"),
    (tuned(consecutive5xxErrors=5), "consecutive5xxErrors", "about 15 requests fail"),
    (tuned(consecutive5xxErrors=None), "consecutive5xxErrors", "is 5 (not set: Istio's default)"),
    (tuned(consecutive5xxErrors=0), "consecutive5xxErrors", "turns ejection on 5xx errors off"),
    (tuned(consecutive5xxErrors="lots"), "consecutive5xxErrors", "write a small whole number"),
    (tuned(interval="30s"), "interval", "is 30s: Envoy's detector sweeps"),
    (tuned(interval="2m"), "interval", "is 120s"),
    (tuned(interval="soon"), "interval", "write a duration"),
    (tuned(maxEjectionPercent=None), "maxEjectionPercent", "is 10 (not set: Istio's default)"),
    (tuned(maxEjectionPercent=50), "maxEjectionPercent", "at least 75"),
])
def test_badly_tuned_outlier_detection_is_refused_naming_the_field(rule, field, why, fake_load):
    fleet = FakeFleet(local=True, rules=[rule])  # calls stay local and a kill would even fail over
    result_ = failover_check(fleet, fake_load)
    assert not result_.ok and f"outlierDetection.{field} " in result_.received and why in result_.received, result_
    assert fleet.dead == set()  # judged from the rule: nothing killed


@pytest.mark.parametrize("outlier", [
    {"consecutive5xxErrors": 1, "interval": "1s", "baseEjectionTime": "30s", "maxEjectionPercent": 100},  # the solution
    {"consecutive5xxErrors": 2, "interval": "500ms", "maxEjectionPercent": 75},
    {"consecutive5xxErrors": 4, "interval": "10s", "maxEjectionPercent": 80, "consecutiveGatewayErrors": 1},
    {"consecutive5xxErrors": 1, "maxEjectionPercent": 100},  # Istio's default interval, 10s, is short enough
])
def test_well_tuned_outlier_detection_is_judged_by_the_kill(outlier):
    rule = {**GOOD_RULE, "spec": {**GOOD_RULE["spec"], "trafficPolicy": {
        **GOOD_RULE["spec"]["trafficPolicy"], "outlierDetection": outlier}}}
    assert lab06.judge_outlier([rule], local=3) is None
    assert lab06.judge_outlier([rule], local=0) is None and lab06.judge_outlier([], local=3) is None
    assert lab06.judge_outlier([NO_OUTLIER], local=3) is None  # judge_local says what is missing there


@pytest.mark.parametrize("text, seconds", [("1s", 1.0), ("500ms", 0.5), ("1.5m", 90.0), ("2h", 7200.0), (" 10s ", 10.0),
                                           ("10", None), ("s", None), (None, None), (3, None)])
def test_duration_s(text, seconds):
    assert lab06.duration_s(text) == seconds


def test_failover_check_restores_even_when_it_fails(fake_load):
    fleet = FakeFleet(local=True, switch=False)
    failover_check(fleet, fake_load)
    assert not fleet.dead


def test_a_lone_timeout_before_the_kill_is_sent_again_once(fake_load):
    fleet = FakeFleet(local=True, rules=[GOOD_RULE], timeouts={2: 1})  # 1: wait_healthy's probe; 2: the sample
    result_ = failover_check(fleet, fake_load)
    assert result_.ok, result_
    assert fleet.sent[:3] == [20, lab06.BEFORE_N, lab06.BEFORE_N]  # the spoiled sample, and one more
    assert "back in cluster-1" in result_.received


def test_a_timeout_in_both_samples_fails_without_blaming_a_one_off(fake_load):
    fleet = FakeFleet(local=True, rules=[GOOD_RULE], timeouts={2: 1, 3: 1})
    result_ = failover_check(fleet, fake_load)
    assert not result_.ok
    assert ("1 of 100 requests failed before anything was killed (timeout after 5s), and 1 of 100 timed out in the "
            "sample before it, so it is not a one-off") in result_.received
    assert "lab.traffic(n=100).errors" in result_.received
    assert fleet.sent[:3] == [20, 100, 100] and len(fleet.sent) == 3 and not fleet.dead  # nothing killed


@pytest.mark.parametrize("fleet, why", [
    (FakeFleet(local=True, rules=[GOOD_RULE], timeouts={2: 2}), "2 of 100 requests failed before anything"),
    (FakeFleet(rules=[], timeouts={2: 1}), "calls do not stay in cluster-1; there is no DestinationRule"),
])
def test_more_than_a_lone_timeout_is_judged_at_once(fleet, why, fake_load):
    result_ = failover_check(fleet, fake_load)
    assert not result_.ok and why in result_.received, result_
    assert fleet.sent == [20, 100] and not fleet.dead  # no second sample, nothing killed


def test_only_a_lone_timeout_in_a_local_sample_is_sent_again():
    assert lab06.lone_timeout(reviews_from({C1: 99}, failed=1, errors=[TIMEOUT]))
    assert not lab06.lone_timeout(reviews_from({C1: 99}, failed=1))  # a 502: an answer, say why at once
    assert not lab06.lone_timeout(reviews_from({C1: 98}, failed=2, errors=[TIMEOUT]))
    assert not lab06.lone_timeout(reviews_from({C1: 50, C2: 49}, failed=1, errors=[TIMEOUT]))  # not local anyway
    assert not lab06.lone_timeout(reviews_from({C1: 100}))


def test_failover_judge():
    home = reviews_from({C1: 100})
    away = reviews_from({C2: 50})
    done = lab06.Failover(["r1", "r2", "r3"], 120, 3, 0.4, 0.3)
    assert lab06.judge_failover(home, done, away, (1.5, reviews_from({C1: 50}))).ok
    assert "failed before anything was killed" in lab06.judge_failover(reviews_from({C1: 90}, failed=10)).received
    assert "the failover was not measured" in lab06.judge_failover(home).received
    assert "cluster-1 1" in lab06.judge_failover(home, done, reviews_from({C1: 1, C2: 49}), (1, home)).received
    assert "2 of 52 failed" in lab06.judge_failover(home, done, reviews_from({C2: 50}, failed=2), (1, home)).received
    assert "no traffic" in lab06.judge_failover(home, done, None, None).received
    assert "no traffic could be sent" in lab06.judge_failover(None).received
    slow = lab06.Failover(["r1"], 200, 13, 2.0)
    assert "Eject a dead pod at its first error" in lab06.judge_failover(home, slow, away, (1, home)).hint


# ---- exercise 2: cluster-outage ---------------------------------------------------------------------------

EVERYONE = ["frontend", "catalog", "reviews", "ratings", "payments"]
RIGHT = {C2: {"failed": "none", "answering": EVERYONE}, C1: {"failed": "all", "answering": []}}
QUIZ = {"q1": "b", "q2": "c", "q3": "a"}
HEALTHY = result(200, 0, [path(FRONTEND, app("catalog", C1), count=200),
                          path(FRONTEND, app("payments", None), count=200),
                          path(FRONTEND, app("reviews", C1, version="v2"), app("ratings", C2), count=150),
                          path(FRONTEND, app("reviews", C2), count=50)])
TWO_DOWN = result(200, 2, [path(FRONTEND, app("catalog", C1), count=198),
                           path(FRONTEND, app("payments", None), count=198),
                           path(FRONTEND, app("reviews", C1, version="v2"), app("ratings", C1), count=198)])
ONE_DOWN = result(200, 200, [], errors=["ClientConnectorError: Cannot connect to host 127.13.0.1:8080"])


def measured(healthy=HEALTHY, two=TWO_DOWN, one=ONE_DOWN):
    return {"healthy": healthy, C2: two, C1: one}


def test_outage_right_answer_passes():
    result_ = check("cluster-outage", FakeFleet(), RIGHT, QUIZ, measured())
    assert result_.ok, result_
    assert "cluster-2 down: 2 of 200 failed = none" in result_.received and "3/3 right" in result_.received


MEASURED = ["2 of 200 failed", "200 of 200 failed", "= none", "= all", "answering:"]  # the figures of measured()


@pytest.mark.parametrize("prediction, told", [
    ({**RIGHT, C1: {"failed": "some", "answering": ["reviews", "ratings", "payments"]}},
     ["cluster-2 down: your prediction matches the measurement",
      "cluster-1 down: 'failed' is not the share you measured (you said some); 'answering' is not the set of "
      "services that answered (you said reviews, ratings, payments)"]),
    ({**RIGHT, C1: {"failed": "none", "answering": []}},
     ["cluster-1 down: 'failed' is not the share you measured (you said none)\n"]),  # answering is right: not named
    ({**RIGHT, C2: {"failed": "none", "answering": ["frontend", "catalog", "payments"]}},
     ["cluster-2 down: 'answering' is not the set of services that answered (you said frontend, catalog, payments)",
      "cluster-1 down: your prediction matches"]),
    ({C2: {"failed": "all", "answering": []}, C1: {"failed": "none", "answering": EVERYONE}},  # the two swapped
     ["cluster-2 down: 'failed' is not the share you measured (you said all); 'answering' is not the set of services "
      "that answered (you said none)", "cluster-1 down: 'failed' is not the share you measured (you said none); "
      "'answering' is not the set of services that answered (you said frontend, catalog, reviews, ratings, payments)"]),
])
def test_a_wrong_prediction_is_told_which_half_not_the_measured_answer(prediction, told):
    result_ = check("cluster-outage", FakeFleet(), prediction, QUIZ, measured())
    assert not result_.ok
    for text in told:
        assert text in result_.received, result_
    for figure in MEASURED:
        assert figure not in result_.received, (figure, result_.received)
    assert "the measured figures show here once the prediction is right" in result_.received


def test_a_right_prediction_sees_the_measured_figures_even_with_the_quiz_wrong():
    result_ = lab06.judge_outage(RIGHT, {**QUIZ, "q3": "c"}, measured())
    assert not result_.ok and "the prediction is right; the quiz" in result_.received
    assert "cluster-1 down: 200 of 200 failed = all (you said all); answering: none (you said none)" in result_.received
    assert "healthy: 200/200 ok; answering: frontend, catalog, reviews, ratings, payments" in result_.received


def test_outage_accepts_shares_as_numbers_and_ignores_services_never_reached():
    numbers = {C2: {"failed": 0, "answering": EVERYONE}, C1: {"failed": 1.0, "answering": ()}}
    assert lab06.judge_outage(numbers, QUIZ, measured()).ok
    no_ratings = result(200, 0, [path(FRONTEND, app("reviews", C1), count=200)])  # reviews v1 calls nobody
    assert lab06.judge_outage(RIGHT, QUIZ, measured(healthy=no_ratings, two=no_ratings)).ok


@pytest.mark.parametrize("prediction, answers, runs, why", [
    ({C2: {"failed": "", "answering": []}, C1: {"failed": "", "answering": []}}, QUIZ, {}, "no prediction yet"),
    (RIGHT, QUIZ, {}, "no outage measured yet"),
    (RIGHT, QUIZ, {"healthy": HEALTHY, C2: TWO_DOWN}, "it has: cluster-2, healthy"),
    ({**RIGHT, C2: {"failed": "some", "answering": EVERYONE}}, QUIZ, measured(), "cluster-2: failed"),  # copies fail
    ({**RIGHT, C1: {"failed": "some", "answering": ["reviews", "ratings", "payments"]}}, QUIZ, measured(),
     "cluster-1: failed, cluster-1: answering"),  # cluster-2 keeps serving reviews and ratings
    ({**RIGHT, C1: {"failed": "none", "answering": EVERYONE}}, QUIZ, measured(), "cluster-1: failed"),  # it fails over
    ({**RIGHT, C2: {"failed": "none", "answering": ["frontend", "catalog", "payments"]}}, QUIZ, measured(),
     "cluster-2: answering"),  # reviews and ratings lost with cluster-2
    ({**RIGHT, C1: {"failed": "half", "answering": []}}, QUIZ, measured(), "write 'none', 'some' or 'all'"),
    ({**RIGHT, C1: {"failed": "all", "answering": ["edge"]}}, QUIZ, measured(), "names no service of the shop: edge"),
    ({C2: RIGHT[C2]}, QUIZ, measured(), "prediction['cluster-1'] is missing"),
    (RIGHT, QUIZ, measured(two=HEALTHY), "was cluster-2 down"),  # measured without killing it
    (RIGHT, QUIZ, measured(one=HEALTHY), "was cluster-1 down"),
    (RIGHT, QUIZ, measured(healthy=result(200, 5, HEALTHY.paths)), "with the lab healthy"),
    (RIGHT, QUIZ, measured(two=result(20, 0, TWO_DOWN.paths)), "20 requests; send at least 100"),
    (RIGHT, {**QUIZ, "q1": "a"}, measured(), "serving all along"),
    (RIGHT, {**QUIZ, "q2": "b"}, measured(), "its only caller, the edge, died"),
    (RIGHT, {"q1": "", "q2": "", "q3": ""}, measured(), "no answers yet"),
    ([], QUIZ, measured(), "not a dict"),
])
def test_outage_typical_mistakes_fail_and_say_why(prediction, answers, runs, why):
    result_ = check("cluster-outage", FakeFleet(), prediction, answers, runs)
    assert not result_.ok
    assert why in result_.received


def test_outage_some_is_some():
    some = result(200, 60, TWO_DOWN.paths)
    assert lab06.category(some) == "some" and lab06.category(TWO_DOWN) == "none" and lab06.category(ONE_DOWN) == "all"
    predicted = {**RIGHT, C2: {"failed": "some", "answering": EVERYONE}}
    assert lab06.judge_outage(predicted, QUIZ, measured(two=some)).ok


def test_wait_healthy_says_what_is_wrong():
    fleet = FakeFleet()
    assert lab06.wait_healthy(fleet) == []
    fleet.outage = C2
    problems = lab06.wait_healthy(fleet, timeout=0)
    assert "pod reviews-v1-2 (cluster-2) not ready" in problems and "sidecar reviews-v1-2 NOT CONNECTED" in problems


def test_outage_wants_the_lab_whole_again():
    fleet = FakeFleet()
    fleet.outage = C1  # not restored
    result_ = check("cluster-outage", fleet, RIGHT, QUIZ, measured())
    assert not result_.ok and "not ready" in result_.received


# ---- every exercise -----------------------------------------------------------------------------------------

IDS = ["cluster-outage", "crossed-networks", "locality-failover"]
ANSWER_IN_LAST_HINT = {  # the last hint gives the answer away; the first ones do not
    "cluster-outage": "'q1': 'b'",
    "crossed-networks": "zip(apps, apps[1:])",
    "locality-failover": "maxEjectionPercent: 100",
}


def test_every_exercise_has_hints_that_get_more_specific():
    assert_hints_get_more_specific(lab06.LAB, IDS, ANSWER_IN_LAST_HINT)


def test_checks_never_raise_on_nonsense():
    for exercise_id, args in [("crossed-networks", (None, 42)), ("crossed-networks", ("lab", right)),
                              ("cluster-outage", (None, "abc", 1, {"healthy": 1, C1: 2, C2: 3})),
                              ("cluster-outage", (None, RIGHT, QUIZ, {"healthy": 1, C1: 2, C2: 3})),
                              ("locality-failover", (42,)), ("locality-failover", (None,))]:
        result_ = check(f"{lab06.LAB}/{exercise_id}", *args)
        assert not result_.ok and result_.expected and result_.received
