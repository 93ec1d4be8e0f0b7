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
    None = no identity); split / jason: how frontend's sidecar splits reviews (weights); stored: kind -> the
    objects the learner applied, as the local backend lists them (None: a backend that cannot list them)."""

    def __init__(self, meshed=EVERY, modes=None, allow=None, split=None, jason=None, stale=(), seed=7,
                 broken_subsets=False, control_plane=True, stored=None):
        self.meshed, self.modes, self.allow = set(meshed), dict(modes or {}), dict(allow or {})
        if stored is not None:
            self.backend = SimpleNamespace(objects=lambda kind: [dict(d) for d in stored.get(kind, [])])
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


def peer_auth(name, mode, app=None, namespace=None):
    """A PeerAuthentication as stored (no namespace: where the shop runs)."""
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    spec = {**({"selector": {"matchLabels": {"app": app}}} if app else {}), "mtls": {"mode": mode}}
    return {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": meta, "spec": spec}


def allow_policy(name, app, callers, namespace=None):
    """An ALLOW AuthorizationPolicy letting in the principals of `callers` (app=None: no selector)."""
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    spec = {**({"selector": {"matchLabels": {"app": app}}} if app else {}), "action": "ALLOW",
            "rules": [{"from": [{"source": {"principals": [lab05.principal(c) for c in callers]}}]}]}
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": meta, "spec": spec}


SOLUTION_PEER_AUTHS = [peer_auth("default", "STRICT"), peer_auth("frontend", "PERMISSIVE", app="frontend")]
SOLUTION_POLICIES = [allow_policy("reviews-callers", "reviews", ["frontend"]),
                     allow_policy("ratings-callers", "ratings", ["reviews"])]
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
    outside, every, mixed = lab05.mesh_states(migration_load())
    assert outside == {"frontend": 160, "catalog": 70, "reviews": 90, "ratings": 50} and every == 120
    assert mixed == {("reviews", "ratings", False)}  # reviews, not yet in the mesh, called ratings, already in
    assert lab05.mesh_states(migration_load(early=True))[2] == {("reviews", "ratings", False),
                                                                 ("frontend", "catalog", True)}
    assert lab05.plaintext_calls(result(paths=shop_paths(plaintext={"ratings"}))) == {"reviews->ratings"}


# ---- exercise 1: brownfield-migration ---------------------------------------------------------------------

@pytest.mark.parametrize("order", [LEAVES_FIRST, ["catalog", "ratings", "reviews", "frontend"],
                                   ["reviews", "ratings", "catalog", "frontend"],  # a caller before its callee
                                   ["catalog", "reviews", "ratings", "frontend"],
                                   ("Ratings", "reviews ", "catalog", "frontend")])
def test_orders_with_the_core_service_last_pass(order):
    assert lab05.order_problem(order) is None


@pytest.mark.parametrize("order, why", [
    ([], "nothing in `order` yet"),
    (None, "nothing in `order` yet"),
    (["frontend", "catalog", "reviews", "ratings"], "frontend moves before catalog, reviews, ratings"),
    (["ratings", "reviews", "frontend", "catalog"], "frontend moves before catalog"),
    (["ratings", "reviews", "frontend"], "missing: catalog"),
    (["ratings", "ratings", "reviews", "catalog", "frontend"], "twice: ratings"),
    (["ratings-v1", "reviews", "catalog", "frontend"], "name no service of the shop: ratings-v1"),
    ("ratings", "missing: frontend, catalog, reviews"),
    ("ratings, reviews, catalog, frontend", "order must be a list of names"),  # one string
    ("ratings reviews catalog frontend", "order = ['ratings', 'reviews', 'catalog', 'frontend'], not order = "),
    (["ratings, reviews", "catalog", "frontend"], "each service is its own item"),
])
def test_wrong_orders_say_why(order, why):
    assert why in lab05.order_problem(order)


def test_frontend_early_is_explained_as_risk_not_as_a_dependency():
    why = lab05.order_problem(["ratings", "frontend", "reviews", "catalog"])
    assert "frontend moves before reviews, catalog" in why
    assert "every customer request passes it" in why and "从非核心系统开始改造" in why
    assert "a sidecar never needs its peers in the mesh" in why
    assert "depends on" not in why and "which it calls" not in why


def test_order_given_as_one_string_is_shown_as_a_list():
    why = lab05.order_problem("ratings, reviews, catalog, frontend")
    assert "name no service" not in why  # every name is a service: the shape is what is wrong
    assert ("order = ['ratings', 'reviews', 'catalog', 'frontend'], not order = 'ratings, reviews, catalog, "
            "frontend'") in why


def test_migration_right_answer_passes():
    pods = shop_pods()
    result_ = lab05.judge_migration(LEAVES_FIRST, pods, migration_load(), status_table(pods))
    assert result_.ok and "0 failed" in result_.received and "ratings -> reviews -> catalog -> frontend" in result_.received


def reviews_first_load():
    """reviews joined first: in the mesh, it calls ratings, not yet in it (no failed request: PERMISSIVE)."""
    paths = shop_paths(meshed=set(), count=50) + shop_paths(meshed={"reviews"}, count=20) + shop_paths(count=60)
    return result(400, 0, paths)


def test_migration_with_a_caller_before_its_callee_passes():
    pods = shop_pods()
    order = ["reviews", "ratings", "catalog", "frontend"]
    assert lab05.mesh_states(reviews_first_load())[2] == {("reviews", "ratings", True), ("frontend", "reviews", False)}
    result_ = lab05.judge_migration(order, pods, reviews_first_load(), status_table(pods))
    assert result_.ok, result_
    assert "reviews -> ratings -> catalog -> frontend" in result_.received


def test_migration_traces_must_agree_with_the_order_given():
    pods = shop_pods()  # the cell moved reviews first, but `order` says ratings first
    result_ = lab05.judge_migration(LEAVES_FIRST, pods, reviews_first_load(), status_table(pods))
    assert not result_.ok
    assert "reviews (in the mesh) -> ratings (not yet)" in result_.received and "order of `order`" in result_.received


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


def test_strict_solution_stored_passes_and_root_namespace_is_mesh_wide():
    assert strict_check(FakeMesh(modes=RIGHT_MODES, stored={"PeerAuthentication": SOLUTION_PEER_AUTHS})).ok
    mesh_wide = [peer_auth("default", "STRICT", namespace="mesh-system"),
                 peer_auth("frontend", "PERMISSIVE", app="frontend")]
    assert strict_check(FakeMesh(modes=RIGHT_MODES, stored={"PeerAuthentication": mesh_wide})).ok
    assert "meshlab-system" not in lab05.peer_auth_note(mesh_wide)  # nothing misplaced to name


@pytest.mark.parametrize("stored, why", [
    ([peer_auth("default", "STRICT", namespace="meshlab-system"),
      peer_auth("frontend", "PERMISSIVE", app="frontend", namespace="meshlab-system")],
     "default in namespace meshlab-system (STRICT, no selector); frontend in namespace meshlab-system"),
    ([peer_auth("default", "STRICT", namespace="meshlab-system")], "but default is in meshlab-system"),
    ([peer_auth("default", "STRICT", namespace="meshlab-system")], "The shop runs in the namespace default"),
    ([peer_auth("default", "STRICT", namespace="mesh-system", app="reviews")], "default is in mesh-system"),
    ([], "no PeerAuthentication is stored"),
])
def test_strict_in_another_namespace_names_it(stored, why):
    # STRICT where the shop is not: every sidecar of the shop stays PERMISSIVE
    result_ = strict_check(FakeMesh(stored={"PeerAuthentication": stored}))
    assert not result_.ok
    assert "still answered a client with no certificate" in result_.received
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


def test_callers_solution_stored_passes():
    assert check("who-may-call", FakeMesh(modes=RIGHT_MODES, allow=RIGHT_ALLOW,
                                          stored={"AuthorizationPolicy": SOLUTION_POLICIES})).ok


NO_SELECTOR = allow_policy("frontend-only", None, ["frontend"])  # every workload: reviews, ratings, frontend, catalog


@pytest.mark.parametrize("mesh, why", [
    # one policy with no selector: it applies to every workload of the namespace
    (FakeMesh(allow={s: {"frontend"} for s in EVERY}, stored={"AuthorizationPolicy": [NO_SELECTOR]}),
     "frontend-only has no selector: it applies to every workload in the namespace"),
    (FakeMesh(allow={s: {"frontend"} for s in EVERY},
              stored={"AuthorizationPolicy": [allow_policy("frontend-only", None, ["frontend"], "mesh-system")]}),
     "every workload of the mesh"),
    # a policy for reviews only: ratings has none, so every caller gets into ratings
    (FakeMesh(allow={"reviews": {"frontend"}}, stored={"AuthorizationPolicy": SOLUTION_POLICIES[:1]}),
     "ratings has no ALLOW policy, so every caller is let in"),
    (FakeMesh(allow={"reviews": {"frontend"}}),  # the same, on a backend that cannot list policies
     "ratings let every caller in, as a workload that no ALLOW policy selects does"),
    # the policy for ratings selects the wrong app
    (FakeMesh(allow={"reviews": {"frontend"}}, stored={"AuthorizationPolicy": [
        SOLUTION_POLICIES[0], allow_policy("ratings-callers", "rating", ["reviews"])]}),
     "ratings has no ALLOW policy"),
    # a rule with source.namespaces: every caller of the namespace
    (FakeMesh(allow={"reviews": {"frontend", "catalog"}, "ratings": {"reviews", "frontend", "catalog"}},
              stored={"AuthorizationPolicy": SOLUTION_POLICIES}),
     "an ALLOW policy selects reviews, yet catalog got in"),
])
def test_callers_let_in_says_which_policy_is_missing_or_too_wide(mesh, why):
    result_ = check("who-may-call", mesh)
    assert not result_.ok
    assert why in result_.received
    assert "is denied" not in result_.received  # no ALLOW policy on a workload lets everyone in, not no one


def test_callers_edge_failure_names_the_policy_on_frontend():
    calls = {k: 200 for k in lab05.ALLOWED}
    calls.update({k: 403 for k in lab05.DENIED})
    edge = result(100, failed=100)
    policies = SOLUTION_POLICIES + [allow_policy("frontend-callers", "frontend", ["reviews"])]
    received = lab05.judge_callers(calls, edge, EVERY, policies).received
    assert "frontend-callers in namespace default (app: frontend) applies to frontend" in received
    received = lab05.judge_callers(calls, edge, EVERY, [NO_SELECTOR]).received
    assert "frontend-only in namespace default (no selector) applies to every workload in the namespace" in received


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


CANARY_SPLIT = {"v1": 181, "v3": 19}  # exercise 4's canary still in force: no v2


def outage(down=None, change=None, back=None):
    return {"while_down": down or result(200, reviews=SPLIT), "after_change": change or result(200, reviews=SPLIT),
            "after_restore": back or result(200, reviews={"v2": 200})}


def test_outage_right_answer_passes():
    result_ = check("control-plane-down", FakeMesh(), RIGHT_QUIZ, outage())
    assert result_.ok, result_
    assert "4/4 right" in result_.received


def test_outage_right_answer_passes_after_the_canary():  # the solution: exercise 4's routing, then the outage
    measured = outage(result(200, reviews=CANARY_SPLIT), result(200, reviews={"v1": 178, "v3": 22}))
    assert check("control-plane-down", FakeMesh(), RIGHT_QUIZ, measured).ok


def test_outage_served_share_is_told_from_chance():
    assert lab05.more_v2_p(SPLIT, {"v1": 60, "v2": 80, "v3": 60}) > 0.01  # round robin, chance
    assert lab05.more_v2_p(SPLIT, {"v1": 13, "v2": 186, "v3": 1}) < 1e-30
    assert lab05.more_v2_p(CANARY_SPLIT, {"v1": 180, "v2": 1, "v3": 19}) == 0.0  # v2 had no route at all
    assert lab05.more_v2_p(CANARY_SPLIT, CANARY_SPLIT) == 1.0
    rng = random.Random(5)  # the same routing twice: a correct experiment is not called served
    for _ in range(200):
        before, after = (Counter(rng.choices(["v1", "v2", "v3"], k=200)) for _ in range(2))
        assert lab05.more_v2_p(before, after) >= lab05.SERVED_ALPHA


@pytest.mark.parametrize("down, change", [
    (SPLIT, {"v1": 13, "v2": 186, "v3": 1}),  # never killed, traffic sent while the sidecars took it (walkthrough)
    (CANARY_SPLIT, {"v1": 13, "v2": 186, "v3": 1}),
    (CANARY_SPLIT, {"v1": 150, "v2": 35, "v3": 15}),  # some sidecars had it already
    (CANARY_SPLIT, {"v1": 180, "v2": 1, "v3": 19}),  # a single v2 answer: the canary gives v2 none
    (SPLIT, {"v2": 200}),  # never killed
])
def test_outage_fails_when_the_change_was_served(down, change):
    result_ = check("control-plane-down", FakeMesh(), RIGHT_QUIZ, outage(result(200, reviews=down),
                                                                         result(200, reviews=change)))
    assert not result_.ok
    assert "the VirtualService was served" in result_.received
    assert "the control plane was not down when ALL_TO_V2 was applied" in result_.received
    assert 'lab.kill(pod="meshlab-controlplane")' in result_.received


def test_outage_needs_a_routing_the_change_alters():
    result_ = check("control-plane-down", FakeMesh(), RIGHT_QUIZ,
                    outage(result(200, reviews={"v2": 200}), result(200, reviews={"v2": 200})))
    assert not result_.ok and "only from v2 already in while_down" in result_.received
    result_ = check("control-plane-down", FakeMesh(), RIGHT_QUIZ, outage(change=result(200)))
    assert not result_.ok and "no answer from reviews was traced in after_change" in result_.received


@pytest.mark.parametrize("answers, measured, why", [
    ({"q1": "", "q2": "", "q3": "", "q4": ""}, None, "no outage measured yet"),  # untouched lab
    (RIGHT_QUIZ, {"while_down": result(200)}, "it has: while_down"),
    (RIGHT_QUIZ, outage(change=result(200, reviews={"v2": 200})), "the VirtualService was served"),  # never killed
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
