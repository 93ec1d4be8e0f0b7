"""Checks of lab 05: pass on right answers, NOT DONE YET (never an exception) on empty or wrong ones.

The judges are pure and get fake inputs: traffic results with traces built here, pods with or without
an istio-proxy container, call statuses. The checks themselves run against a fake lab: a tiny model of
a mesh (which pods have sidecars, PeerAuthentication modes, ALLOW policies, the reviews split) that
answers `lab.call`, `lab.traffic` and `lab.proxy_status` the way the real one does, so each typical
wrong answer is written as the policy a learner would apply.
"""

from __future__ import annotations

import random
from collections import Counter
from types import SimpleNamespace

import pytest

from meshlab.checks import base, lab05
from meshlab.checks.base import check
from meshlab.checks.stats import required_samples
from meshlab.traffic import TrafficResult
from checkhints import assert_hints_get_more_specific

LEAVES_FIRST = ["ratings", "reviews", "catalog", "frontend"]
EVERY = {"frontend", "catalog", "reviews", "ratings"}
N = required_samples(lab05.CANARY)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(lab05, "SYNC_S", 0.0)
    for state in (base._failures, base._revealed, base._hints):
        state.clear()


# ---- traces, pods, traffic ---------------------------------------------------------------------------

def app(service, version="v1"):
    pod = f"{service}-{version}-abc-1"
    return {"kind": "app", "name": pod, "pod": pod, "service": service, "version": version, "node": "node-1"}


def sidecar(pod, direction, peer=""):
    hop = {"kind": "proxy", "name": pod, "role": "sidecar", "node": "node-1", "dir": direction}
    return {**hop, "peer": peer} if peer else hop


def path(*services, meshed=EVERY, plaintext=(), version="v2", count=1):
    """A traced request: edge -> services..., with sidecars for the meshed ones; a call between two
    meshed apps carries the caller's identity unless its callee is in `plaintext`."""
    hops = [{"kind": "proxy", "name": "edge-1", "role": "edge", "node": "node-1"}]
    previous = None
    for service in services:
        hop = app(service, version if service == "reviews" else "v1")
        if service in meshed:
            peer = (f"spiffe://cluster.local/ns/default/sa/shop-{previous}"
                    if previous in meshed and service not in plaintext else "")
            hops.append(sidecar(hop["pod"], "in", peer))
        hops.append(hop)
        if service in meshed and service != services[-1]:
            hops.append(sidecar(hop["pod"], "out"))
        previous = service
    return {"hops": hops, "count": count}


def shop_paths(meshed=EVERY, plaintext=(), count=1):
    return [path("frontend", "catalog", meshed=meshed, plaintext=plaintext, count=count),
            path("frontend", "reviews", "ratings", meshed=meshed, plaintext=plaintext, count=count)]


def result(requests=300, failed=0, paths=(), reviews=None, errors=None):
    return TrafficResult(requests=requests, ok=requests - failed, failed=failed, paths=list(paths),
                         versions={"reviews": Counter(reviews or {})},
                         errors=list(errors or (["HTTP 502 from frontend"] if failed else [])),
                         statuses=Counter({200: requests - failed, 502: failed}))


def migration_load(requests=400, failed=0, before=True, after=True, early=False):
    paths = []
    if before:
        paths += shop_paths(meshed=set(), count=50)
    paths += shop_paths(meshed={"ratings"}, count=20)  # ratings joined first: reviews (outside) calls it
    paths += [path("frontend", "reviews", "ratings", meshed={"ratings"}, version="v1", count=20)]
    if early:
        paths += [path("frontend", "catalog", meshed={"frontend", "ratings", "reviews"}, count=5)]
    if after:
        paths += shop_paths(count=60)
    return result(requests, failed, paths)


def pod(name, service, version="v1", sidecar=True, ready=True):
    containers = [SimpleNamespace(name="app")] + ([SimpleNamespace(name="istio-proxy")] if sidecar else [])
    return SimpleNamespace(name=name, service=service, version=version, ready=ready, containers=containers,
                           labels={"app": service, "version": version}, namespace="default")


def shop_pods(outside=()):
    specs = [("frontend", "v1"), ("catalog", "v1"), ("reviews", "v1"), ("reviews", "v2"), ("reviews", "v3"),
             ("ratings", "v1"), ("ratings", "v1")]
    pods = [pod(f"{s}-{v}-abc-{i}", s, v, sidecar=s not in outside) for i, (s, v) in enumerate(specs)]
    return pods + [SimpleNamespace(name="meshlab-controlplane-1", service="meshlab-controlplane", version="",
                                   ready=True, containers=[SimpleNamespace(name="discovery")],
                                   labels={"app": "meshlab-controlplane"}, namespace="mesh-system")]


def status_table(pods, stale=()):
    return [SimpleNamespace(proxy=f"{p.name}.default", pod=p.name, namespace="default",
                            state="STALE" if p.service in stale else "SYNCED", error="")
            for p in pods if lab05.injected(p)]


# ---- a fake mesh -------------------------------------------------------------------------------------

class FakeMesh:
    """A model of the shop in a mesh, enough to answer the lab's views as the real engine does.

    meshed: services whose pods have sidecars; modes: service -> STRICT / PERMISSIVE / DISABLE (the
    effective PeerAuthentication); allow: service -> the set of callers an ALLOW policy names (a caller
    None = no identity); split / jason: how frontend's sidecar splits reviews (weights)."""

    def __init__(self, meshed=EVERY, modes=None, allow=None, split=None, jason=None, stale=(), seed=7,
                 broken_subsets=False, control_plane=True):
        self.meshed, self.modes, self.allow = set(meshed), dict(modes or {}), dict(allow or {})
        self.split = split or {"v1": 1, "v2": 1, "v3": 1}
        self.jason = jason or self.split
        self.stale, self.broken_subsets, self.control_plane = stale, broken_subsets, control_plane
        self.random = random.Random(seed)
        self.sent: list[tuple[int, dict]] = []
        self.calls: list[tuple] = []

    # what one call gets
    def status(self, source, target):
        if target not in self.meshed:
            return 200
        mode = self.modes.get(target, "PERMISSIVE")
        tls = source is not None and source in self.meshed and mode != "DISABLE"
        if mode == "STRICT" and not tls:
            return 0 if source is None else 503
        if target in self.allow and (source if tls else None) not in self.allow[target]:
            return 403
        return 200

    # the lab's views
    def pods(self):
        return shop_pods(outside=EVERY - self.meshed)

    def proxy_status(self):
        if not self.control_plane:
            raise ConnectionError("control plane does not answer")
        return status_table(self.pods(), self.stale)

    def call(self, source, url):
        target = url.split("//")[1].split(":")[0]
        self.calls.append((source, target))
        return SimpleNamespace(source=source or "outside the mesh", url=url, status=self.status(source, target))

    def traffic(self, n=100, concurrency=4, headers=None, **options):
        self.sent.append((n, dict(headers or {})))
        weights = self.jason if (headers or {}).get("end-user") == "jason" else self.split
        names, w = zip(*[(v, x) for v, x in weights.items() if x])
        counts = Counter(self.random.choices(names, weights=w, k=n))
        edge_ok = self.status(None, "frontend") == 200
        inner = all(self.status(a, b) == 200 for a, b in (("frontend", "catalog"), ("frontend", "reviews"),
                                                         ("reviews", "ratings")))
        failed = 0 if edge_ok and inner and not self.broken_subsets else n
        return result(n, failed, shop_paths(self.meshed) if not failed else [], counts if not failed else {})


STRICT_NS = {s: "STRICT" for s in EVERY}
RIGHT_MODES = {**STRICT_NS, "frontend": "PERMISSIVE"}
RIGHT_ALLOW = {"reviews": {"frontend"}, "ratings": {"reviews"}}
CANARY_RIGHT = dict(split={"v1": 90, "v3": 10}, jason={"v3": 1})


# ---- helpers ------------------------------------------------------------------------------------------

def test_the_shop_as_the_checks_see_it():
    assert lab05.services() == ["frontend", "catalog", "reviews", "ratings"]
    assert lab05.callees() == {"frontend": {"catalog", "reviews"}, "catalog": set(), "reviews": {"ratings"},
                               "ratings": set()}
    assert lab05.deployments("reviews") == ["reviews-v1", "reviews-v2", "reviews-v3"]
    assert lab05.principal("frontend") == "cluster.local/ns/default/sa/shop-frontend"


def test_traces_tell_who_is_in_the_mesh_and_who_called():
    apps = lab05.chain(path("frontend", "reviews", "ratings")["hops"])
    assert [(h["service"], m, peer) for h, m, peer in apps] == [
        ("frontend", True, ""), ("reviews", True, "spiffe://cluster.local/ns/default/sa/shop-frontend"),
        ("ratings", True, "spiffe://cluster.local/ns/default/sa/shop-reviews")]
    half = lab05.chain(path("frontend", "reviews", "ratings", meshed={"ratings"})["hops"])
    assert [m for _, m, _ in half] == [False, False, True]
    outside, every, early = lab05.mesh_states(migration_load())
    assert outside == {"frontend": 160, "catalog": 70, "reviews": 90, "ratings": 50} and every == 120 and not early
    assert lab05.mesh_states(migration_load(early=True))[2] == {("frontend", "catalog")}
    assert lab05.plaintext_calls(result(paths=shop_paths(plaintext={"ratings"}))) == {"reviews->ratings"}


# ---- exercise 1: brownfield-migration ---------------------------------------------------------------------

@pytest.mark.parametrize("order", [LEAVES_FIRST, ["catalog", "ratings", "reviews", "frontend"],
                                   ("Ratings", "reviews ", "catalog", "frontend")])
def test_leaves_first_orders_pass(order):
    assert lab05.order_problem(order) is None


@pytest.mark.parametrize("order, why", [
    ([], "nothing in `order` yet"),
    (None, "nothing in `order` yet"),
    (["frontend", "catalog", "reviews", "ratings"], "frontend moves before catalog, reviews"),  # callers first
    (["reviews", "ratings", "catalog", "frontend"], "reviews moves before ratings"),
    (["ratings", "reviews", "frontend", "catalog"], "frontend moves before catalog"),
    (["ratings", "reviews", "frontend"], "missing: catalog"),
    (["ratings", "ratings", "reviews", "catalog", "frontend"], "twice: ratings"),
    (["ratings-v1", "reviews", "catalog", "frontend"], "name no service of the shop: ratings-v1"),
    ("ratings", "missing: frontend, catalog, reviews"),
])
def test_wrong_orders_say_why(order, why):
    assert why in lab05.order_problem(order)


def test_migration_right_answer_passes():
    pods = shop_pods()
    result_ = lab05.judge_migration(LEAVES_FIRST, pods, migration_load(), status_table(pods))
    assert result_.ok and "0 failed" in result_.received and "ratings -> reviews -> catalog -> frontend" in result_.received


@pytest.mark.parametrize("order, pods, load, table, why", [
    ([], shop_pods(), None, [], "nothing in `order` yet"),  # untouched lab
    (LEAVES_FIRST, shop_pods(), None, [], "no load result"),
    (LEAVES_FIRST, shop_pods(outside={"frontend"}), migration_load(), [], "still outside the mesh"),  # one forgotten
    (LEAVES_FIRST, [], migration_load(), [], "no pod of the shop"),
    (LEAVES_FIRST, shop_pods(), migration_load(), None, "control plane does not answer"),
    (LEAVES_FIRST, shop_pods(), migration_load(), status_table(shop_pods(), stale={"reviews"}), "not synced"),
    (LEAVES_FIRST, shop_pods(), migration_load(requests=20), [], "only 20 requests"),
    (LEAVES_FIRST, shop_pods(), migration_load(failed=7), [], "7 of 400 requests failed"),  # pods deleted, not rolled
    (LEAVES_FIRST, shop_pods(), migration_load(before=False), [], "load started after"),
    (LEAVES_FIRST, shop_pods(), migration_load(after=False), [], "stopped before the last service"),
    (LEAVES_FIRST, shop_pods(), migration_load(early=True), [], "frontend (in the mesh) -> catalog (not yet)"),
])
def test_migration_typical_mistakes_fail_and_say_why(order, pods, load, table, why):
    result_ = lab05.judge_migration(order, pods, load, table)
    assert not result_.ok
    assert why in result_.received


def test_migration_ignores_old_pods_on_their_way_out():
    old = pod("frontend-v1-old-1", "frontend", sidecar=False, ready=False)
    old.phase = "Terminating"
    pods = shop_pods() + [old]
    assert lab05.judge_migration(LEAVES_FIRST, pods, migration_load(), status_table(pods)).ok
    old.phase = "Running"
    assert "frontend-v1-old-1" in lab05.judge_migration(LEAVES_FIRST, pods, migration_load(), []).received


def test_migration_check_against_a_fake_lab():
    mesh = FakeMesh()
    assert check("brownfield-migration", mesh, LEAVES_FIRST, migration_load()).ok
    assert not check("brownfield-migration", mesh, [], None).ok  # the untouched lab
    assert not check("brownfield-migration", FakeMesh(meshed=EVERY - {"catalog"}), LEAVES_FIRST, migration_load()).ok
    silent = check("brownfield-migration", FakeMesh(control_plane=False), LEAVES_FIRST, migration_load())
    assert not silent.ok and "does not answer" in silent.received


# ---- exercise 2: strict-mtls ----------------------------------------------------------------------------------

def strict_check(mesh):
    return check("strict-mtls", mesh)


def test_strict_right_answer_passes():
    result_ = strict_check(FakeMesh(modes=RIGHT_MODES))
    assert result_.ok, result_
    assert "frontend: 200" in result_.received and "ratings: 0" in result_.received


@pytest.mark.parametrize("mesh, why", [
    (FakeMesh(meshed=set()), "have pods without a sidecar"),  # untouched lab: exercise 1 not done
    (FakeMesh(), "still answered a client with no certificate"),  # PERMISSIVE, the default
    (FakeMesh(modes=STRICT_NS), "The edge (Ingress) is not in the mesh"),  # STRICT everywhere, frontend too
    (FakeMesh(modes={"ratings": "STRICT"}), "catalog, reviews still answered"),  # STRICT for ratings only
    (FakeMesh(modes={**RIGHT_MODES, "reviews": "PERMISSIVE"}), "reviews still answered"),
    (FakeMesh(modes=RIGHT_MODES, meshed=EVERY - {"ratings"}), "ratings has pods without a sidecar"),
    (FakeMesh(allow={"reviews": {"frontend"}, "ratings": {"reviews"}, "catalog": {"frontend"}}),
     "403 is an AuthorizationPolicy's answer"),  # authorization instead of mTLS
])
def test_strict_typical_mistakes_fail_and_say_why(mesh, why):
    result_ = strict_check(mesh)
    assert not result_.ok
    assert why in result_.received


def test_strict_judge_catches_frontend_refused_and_plaintext_calls():
    edge = result(100, paths=shop_paths())
    refused = lab05.judge_strict({"frontend": 0, "catalog": 0, "reviews": 0, "ratings": 0}, edge, (), EVERY)
    assert not refused.ok and "frontend refused plaintext" in refused.received
    plain = lab05.judge_strict({"frontend": 200, "catalog": 0, "reviews": 503, "ratings": 0}, edge,
                               {"reviews->ratings"}, EVERY)
    assert not plain.ok and "without a verified identity: reviews->ratings" in plain.received
    assert not lab05.judge_strict({}, None).ok


# ---- exercise 3: who-may-call ----------------------------------------------------------------------------------

def test_callers_right_answer_passes():
    mesh = FakeMesh(modes=RIGHT_MODES, allow=RIGHT_ALLOW)
    result_ = check("who-may-call", mesh)
    assert result_.ok, result_
    assert set(mesh.calls) == set(lab05.ALLOWED + lab05.DENIED)


def test_callers_pass_without_strict_too():
    assert check("who-may-call", FakeMesh(allow=RIGHT_ALLOW)).ok  # the outside caller has no identity: 403


@pytest.mark.parametrize("mesh, why", [
    (FakeMesh(meshed=set()), "not every pod runs a sidecar"),  # untouched lab
    (FakeMesh(modes=RIGHT_MODES), "let in: catalog -> reviews"),  # no policy at all
    (FakeMesh(allow={"reviews": {"frontend"}}), "let in: frontend -> ratings"),  # only one of the two
    (FakeMesh(allow={"reviews": {"reviews"}, "ratings": {"frontend"}}), "let in: frontend -> ratings"),  # swapped
    (FakeMesh(allow={"reviews": {"spiffe://frontend"}, "ratings": {"spiffe://reviews"}}), "without spiffe://"),
    (FakeMesh(allow={"reviews": {"frontend", "catalog"}, "ratings": {"reviews", "frontend", "catalog"}}),
     "let in: catalog -> reviews"),  # namespaces instead of principals: every caller of the namespace
    (FakeMesh(allow={**RIGHT_ALLOW, "frontend": {"frontend"}, "catalog": {"frontend"}}),
     "a policy selects more than reviews and ratings"),  # a policy with no selector: frontend shuts out the edge
])
def test_callers_typical_mistakes_fail_and_say_why(mesh, why):
    result_ = check("who-may-call", mesh)
    assert not result_.ok
    assert why in result_.received


def test_callers_judge_needs_a_403_not_a_broken_call():
    calls = {k: 200 for k in lab05.ALLOWED}
    calls.update({k: 403 for k in lab05.DENIED})
    edge = result(100, paths=shop_paths())
    assert lab05.judge_callers(calls, edge, EVERY).ok
    assert "not a 403 from a policy: catalog -> reviews" in lab05.judge_callers(
        {**calls, ("catalog", "reviews"): 503}, edge, EVERY).received
    assert "calls not made" in lab05.judge_callers({}, edge, EVERY).received
    assert "no answer: is every pod ready" in lab05.judge_callers(
        {**calls, ("reviews", "ratings"): 0}, edge, EVERY).received


# ---- exercise 4: canary-v3 ----------------------------------------------------------------------------------

def test_canary_right_answer_passes_and_sends_enough():
    mesh = FakeMesh(**CANARY_RIGHT)
    result_ = check("canary-v3", mesh)
    assert result_.ok, result_
    assert mesh.sent == [(lab05.JASON_REQUESTS, lab05.JASON_HEADERS), (N, {})]


@pytest.mark.parametrize("mesh, why, sent", [
    (FakeMesh(), "jason reached reviews v1", 1),  # untouched lab: round robin, fails on the small batch
    (FakeMesh(split={"v1": 90, "v3": 10}), "jason reached reviews v1", 1),  # no header rule
    (FakeMesh(split={"v1": 90, "v3": 10}, jason={"v1": 90, "v3": 10}), "jason reached reviews v1", 1),  # rule order
    (FakeMesh(split={"v1": 10, "v3": 90}, jason={"v3": 1}), "expected 90.0%", 2),  # weights swapped
    (FakeMesh(split={"v1": 80, "v3": 20}, jason={"v3": 1}), "expected 90.0%", 2),
    (FakeMesh(split={"v1": 85, "v2": 5, "v3": 10}, jason={"v3": 1}), "v2", 2),
    (FakeMesh(split={"v1": 90, "v3": 10}, jason={"v3": 1}, broken_subsets=True), "does a DestinationRule define", 1),
])
def test_canary_typical_mistakes_fail_and_say_why(mesh, why, sent):
    result_ = check("canary-v3", mesh)
    assert not result_.ok
    assert why in result_.received
    assert len(mesh.sent) == sent


def test_canary_rule_order_gets_its_own_hint():
    result_ = lab05.judge_canary(result(100, reviews={"v1": 90, "v3": 10}), None)
    assert not result_.ok and "first that matches wins" in result_.hint


def test_canary_judge_wants_traffic_without_the_header_too():
    jason = result(100, reviews={"v3": 100})
    assert "no traffic without the header" in lab05.judge_canary(jason, None).received
    assert "2 of 776 requests without the header failed" in lab05.judge_canary(
        jason, result(N, failed=2, reviews={"v1": 700, "v3": 74})).received
    assert not lab05.judge_canary(jason, result(200, reviews={"v1": 180, "v3": 20})).ok  # too few to tell
    assert lab05.judge_canary(jason, result(N, reviews={"v1": round(0.9 * N), "v3": N - round(0.9 * N)})).ok


# ---- exercise 5: control-plane-down ----------------------------------------------------------------------------

RIGHT_QUIZ = {"q1": "b", "q2": "c", "q3": "b", "q4": "a"}
SPLIT = {"v1": 70, "v2": 65, "v3": 65}


def outage(down=None, change=None, back=None):
    return {"while_down": down or result(200, reviews=SPLIT), "after_change": change or result(200, reviews=SPLIT),
            "after_restore": back or result(200, reviews={"v2": 200})}


def test_outage_right_answer_passes():
    result_ = check("control-plane-down", FakeMesh(), RIGHT_QUIZ, outage())
    assert result_.ok, result_
    assert "4/4 right" in result_.received


@pytest.mark.parametrize("answers, measured, why", [
    ({"q1": "", "q2": "", "q3": "", "q4": ""}, None, "no outage measured yet"),  # untouched lab
    (RIGHT_QUIZ, {"while_down": result(200)}, "it has: while_down"),
    (RIGHT_QUIZ, outage(change=result(200, reviews={"v2": 200})), "was the control plane down?"),  # never killed
    (RIGHT_QUIZ, outage(back=result(200, reviews=SPLIT)), "restore it"),  # measured before the sidecars synced
    (RIGHT_QUIZ, outage(down=result(200, failed=200)), "requests failed while the control plane was down"),
    (RIGHT_QUIZ, outage(down=result(20, reviews=SPLIT)), "while_down: 20 requests"),
    ({**RIGHT_QUIZ, "q1": "a"}, outage(), "ask the control plane per request"),
    ({**RIGHT_QUIZ, "q3": "a"}, outage(), "no config of its own"),
    ({**RIGHT_QUIZ, "q4": "c"}, outage(), "never downgrades"),
    ({}, outage(), "no answers yet"),
])
def test_outage_typical_mistakes_fail_and_say_why(answers, measured, why):
    result_ = check("control-plane-down", FakeMesh(), answers, measured)
    assert not result_.ok
    assert why in result_.received


def test_outage_wants_the_control_plane_back():
    result_ = check("control-plane-down", FakeMesh(stale={"reviews"}), RIGHT_QUIZ, outage())
    assert not result_.ok and "not SYNCED" in result_.received
    result_ = check("control-plane-down", FakeMesh(control_plane=False), RIGHT_QUIZ, outage())
    assert not result_.ok and "does not answer" in result_.received


# ---- every exercise ---------------------------------------------------------------------------------------------

IDS = ["brownfield-migration", "canary-v3", "control-plane-down", "strict-mtls", "who-may-call"]


ANSWER_IN_LAST_HINT = {  # the last hint gives the answer away; the first ones do not
    "brownfield-migration": "['ratings', 'reviews', 'catalog', 'frontend']",
    "canary-v3": "weight: 90",
    "control-plane-down": "q1 b",
    "strict-mtls": "{matchLabels: {app: frontend}}",
    "who-may-call": "cluster.local/ns/default/sa/shop-frontend",
}


def test_every_exercise_has_hints_that_get_more_specific():
    assert_hints_get_more_specific(lab05.LAB, IDS, ANSWER_IN_LAST_HINT)


def test_checks_never_raise_on_nonsense():
    for exercise_id, args in [("brownfield-migration", (None, 42, "x")), ("brownfield-migration", ("lab", [], None)),
                              ("strict-mtls", (None,)), ("who-may-call", ("lab",)), ("canary-v3", (42,)),
                              ("control-plane-down", (None, "abc", {"while_down": 1, "after_change": 2,
                                                                   "after_restore": 3}))]:
        result_ = check(f"{lab05.LAB}/{exercise_id}", *args)
        assert not result_.ok and result_.expected and result_.received
