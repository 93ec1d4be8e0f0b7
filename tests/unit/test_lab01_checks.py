"""Checks of lab 01: pass on right answers, NOT DONE YET (never an exception) on empty or wrong ones.

The judges are pure and get fake inputs; the checks themselves run against a fake edge (a tiny HTTP
server that routes by Host and path and serves Envoy-style /stats), so no lab is needed here.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from fakehttp import QuietHandler, Server

from meshlab.checks import base, lab01
from meshlab.checks.base import check
from meshlab.traffic import TrafficResult

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(lab01, "SETTLE_S", 0.0)
    monkeypatch.setattr(lab01, "EDGE_START_S", 0.0)
    for state in (base._failures, base._revealed, base._hints):
        state.clear()


# ---- a fake edge ---------------------------------------------------------------------------------

def route_right(host, path):
    """What the solution's Ingress does."""
    if host != "shop.local":
        return None
    return "catalog" if path == "/api/catalog" or path.startswith("/api/catalog/") else "frontend"


def route_stage(host, path):
    """The stage's Ingress, untouched: everything to frontend."""
    return "frontend"


def route_new_name(host, path):
    """A right shop.local Ingress under another name: the stage's catch-all still answers other hosts."""
    return route_right(host, path) or "frontend"


def route_exact(host, path):
    """/api/catalog written with pathType Exact."""
    if host != "shop.local":
        return None
    return "catalog" if path == "/api/catalog" else "frontend"


def route_paths_demo(host, path):
    """The paths-demo Ingress of exercise 2, with Kubernetes' matching rules."""
    if host != "paths.local":
        return "frontend"
    if path == "/api/reviews":
        return "reviews"
    if path.rstrip("/") == "/api/catalog" or path.startswith("/api/catalog/"):
        return "catalog"
    return "frontend"


class FakeEdge(Server):
    """An HTTP server playing the edge: routes with `route(host, path)`, serves /stats?format=json."""

    def __init__(self, route, stats=None):
        self.route, self.stats = route, stats or {}
        edge = self

        class Handler(QuietHandler):
            def do_GET(self):
                if self.path.startswith("/stats"):
                    return self.send_body(200, {"stats": [{"name": k, "value": v} for k, v in edge.stats.items()]})
                host = (self.headers.get("Host") or "").split(":")[0]
                service = edge.route(host, self.path)
                if service is None:
                    return self.send_body(404, "no ingress rule matches\n")
                return self.send_body(200, {"service": service, "status": 200})

        super().__init__(Handler)

    def lab(self, with_edge=True):
        proxies = [SimpleNamespace(role="edge", admin_url=self.url, name="edge-1")] if with_edge else []
        return SimpleNamespace(url=self.url, proxies=lambda: proxies)


# ---- exercise 1: ingress-host-path ------------------------------------------------------------------

def seen_from(route):
    return {(h, p): route(h, p) or lab01.NOT_FOUND for h, p, _ in lab01.INGRESS_PROBES}


def test_ingress_right_answer_passes():
    result = lab01.judge_ingress(seen_from(route_right))
    assert result.ok, result


@pytest.mark.parametrize("route, why", [
    (route_stage, "went to frontend"),
    (route_new_name, "matches every host"),
    (route_exact, "/api/catalog/items/7 went to frontend"),
    (lambda h, p: None, "no rule matched"),
])
def test_ingress_wrong_answers_fail_and_say_why(route, why):
    result = lab01.judge_ingress(seen_from(route))
    assert not result.ok
    assert why in result.received
    assert "<- want" in result.received


def test_ingress_wrong_backend_says_which_cluster_has_no_endpoint():
    seen = {**seen_from(route_right), ("shop.local", "/api/catalog"): lab01.NO_ENDPOINT,
            ("shop.local", "/api/catalog/items/7"): lab01.NO_ENDPOINT}
    result = lab01.judge_ingress(seen, empty=["default/catalog_8080"])
    assert not result.ok
    assert "HTTP 503" in result.received and "default/catalog_8080 has no endpoints" in result.received
    assert "Service name and port" in result.received


@pytest.mark.parametrize("route", [lambda h, p: None, route_stage])  # nothing served, or the entry fell back
def test_ingress_without_a_class_is_named(route):
    result = lab01.judge_ingress(seen_from(route), classless=["shop"])
    assert not result.ok and "Ingress shop has no `ingressClassName`" in result.received


def test_ingress_no_answer_says_lab_is_down():
    seen = {key: "no answer (ConnectionRefusedError: refused)" for key in seen_from(route_right)}
    result = lab01.judge_ingress(seen)
    assert not result.ok and "is the lab up" in result.received


@pytest.mark.parametrize("route, ok", [(route_right, True), (route_stage, False), (route_new_name, False),
                                       (route_exact, False)])
def test_ingress_check_against_a_fake_edge(route, ok):
    with FakeEdge(route) as edge:
        result = check("ingress-host-path", edge.lab())
    assert result.ok is ok
    text = str(result)
    assert "Expected:" in text and "Received:" in text
    assert ok or "Hint 1/3:" in text


def test_ingress_check_on_nothing_running_does_not_raise():
    dead = SimpleNamespace(url="http://127.0.0.1:9", proxies=lambda: [])
    assert not check("ingress-host-path", dead).ok
    assert not check("ingress-host-path", None).ok


def test_hints_get_more_specific_with_each_failure():
    with FakeEdge(route_stage) as edge:
        shown = [check("ingress-host-path", edge.lab()).hint for _ in range(4)]
    hints = base.find(f"{lab01.LAB}/ingress-host-path").hints
    assert shown == [hints[0], hints[1], hints[2], hints[2]]


# ---- exercise 2: exact-vs-prefix ---------------------------------------------------------------------

RIGHT = {"/api/catalog/42": "catalog", "/api/catalog/": "catalog", "/api/catalogue": "frontend",
         "/api/reviews": "reviews", "/api/reviews/": "frontend", "/api/reviews/42": "frontend"}
ACTUAL = {p: route_paths_demo("paths.local", p) for p in lab01.PREDICT_PATHS + ("/api/catalog",)}


def test_paths_right_predictions_pass():
    assert lab01.judge_paths(RIGHT, ACTUAL).ok
    sloppy = {p: f" {s.upper()} " for p, s in RIGHT.items()}
    assert lab01.judge_paths(sloppy, ACTUAL).ok


@pytest.mark.parametrize("wrong", [
    {"/api/catalogue": "catalog"},  # string-prefix thinking
    {"/api/reviews/": "reviews"},  # Exact taken as "ignores a trailing slash"
    {"/api/reviews/42": "reviews"},  # Exact taken as Prefix
    {"/api/catalog/": "frontend"},  # Prefix taken as Exact
])
def test_paths_typical_mistakes_fail_on_their_row(wrong):
    result = lab01.judge_paths({**RIGHT, **wrong}, ACTUAL)
    assert not result.ok
    path = next(iter(wrong))
    row = next(line for line in result.received.splitlines() if line.startswith(path + " "))
    assert "<- differs" in row


def test_paths_empty_or_odd_answers_are_not_done():
    untouched = {p: None for p in lab01.PREDICT_PATHS}
    assert "no predictions yet" in lab01.judge_paths(untouched, ACTUAL).received
    assert not lab01.judge_paths(None, ACTUAL).ok
    assert not lab01.judge_paths({**untouched, "/api/reviews": "reviews"}, ACTUAL).ok


def test_paths_demo_missing_is_reported():
    result = lab01.judge_paths(RIGHT, {**ACTUAL, "/api/catalog": "frontend"}, demo_ok=False)
    assert not result.ok and "paths_demo" in result.received


def test_paths_check_against_a_fake_edge():
    with FakeEdge(route_paths_demo) as edge:
        assert check("exact-vs-prefix", edge.lab(), RIGHT).ok
        assert not check("exact-vs-prefix", edge.lab(), {**RIGHT, "/api/catalogue": "catalog"}).ok
    with FakeEdge(route_stage) as edge:  # demo not applied
        assert not check("exact-vs-prefix", edge.lab(), RIGHT).ok


# ---- exercise 3: no-retry ----------------------------------------------------------------------------

def fake_result(requests=300, failed=100, ratings_total=200):
    return TrafficResult(requests=requests, ok=requests - failed, failed=failed,
                         statuses=Counter({200: requests - failed, 502: failed}),
                         calls={"frontend->catalog": {"total": requests, "failed": 0},
                                "frontend->reviews": {"total": requests, "failed": failed},
                                "reviews->ratings": {"total": ratings_total, "failed": failed}})


EDGE_STATS = {"cluster.default/frontend_9080.upstream_rq_total": 310,
              "cluster.default/frontend_9080.upstream_rq_retry": 0,
              "cluster.default/catalog_9080.upstream_rq_total": 6,
              "cluster.default/catalog_9080.upstream_rq_retry": 0,
              "http.edge.downstream_rq_total": 330}
RIGHT_FIGURES = dict(success_rate=200 / 300, failed_requests=100, failed_ratings_calls=100, edge_forwarded=300,
                     edge_retries=0, edge_ratings_calls=0,
                     edge_clusters=["default/catalog_9080", "default/frontend_9080"])


def truth(**changes):
    return {**lab01.truth_from(fake_result(), EDGE_STATS), **changes}


def test_truth_from_traffic_and_stats():
    t = truth()
    assert t["failed_ratings_calls"] == 100 and t["ratings_calls"] == 200 and t["edge_retries"] == 0
    assert t["edge_ratings_calls"] == 0
    assert t["edge_clusters"] == ["default/catalog_9080", "default/frontend_9080"]


def test_no_retry_right_figures_pass():
    result = lab01.judge_no_retry(RIGHT_FIGURES, truth())
    assert result.ok, result
    assert "nobody retried" in result.received
    assert lab01.judge_no_retry({**RIGHT_FIGURES, "success_rate": 0.67}, truth()).ok  # rounded is fine


@pytest.mark.parametrize("field, wrong", [
    ("success_rate", 0.5),  # ratings' own success rate, not the client's
    ("success_rate", "67%"),
    ("failed_requests", 0),  # counted statuses[500]: the frontend answers 502
    ("failed_ratings_calls", 200),  # all ratings calls, not the failed ones
    ("edge_forwarded", 316),  # the cumulative counter instead of after - before
    ("edge_retries", None),
    ("edge_retries", False),
    ("edge_ratings_calls", 200),  # the apps' view, not the edge's
    ("edge_clusters", None),  # guessed the zeros and never opened /stats
    ("edge_clusters", ["frontend"]),  # the Service, not the edge's cluster names
    ("edge_clusters", ["default/frontend_9080"]),  # only the one this run used
    ("edge_clusters", ["default/frontend_9080", "default/catalog_9080", "default/ratings_9080"]),
    ("edge_clusters", "default/frontend_9080"),
])
def test_no_retry_typical_mistakes_fail_naming_the_field(field, wrong):
    result = lab01.judge_no_retry({**RIGHT_FIGURES, field: wrong}, truth())
    assert not result.ok
    assert field in result.expected and field in result.received


@pytest.mark.parametrize("field", ["success_rate", "failed_requests", "failed_ratings_calls", "edge_forwarded"])
def test_no_retry_shows_what_to_measure_never_the_figure(field):
    result = lab01.judge_no_retry({**RIGHT_FIGURES, field: 1234}, truth())
    assert not result.ok and "more than the run shows" in result.received
    shown = f"{truth()[field]:.3f}" if field == "success_rate" else str(truth()[field])
    assert shown not in result.expected and shown not in result.received


def test_no_retry_accepts_cluster_names_in_any_spelling():
    spelled = ["cluster.default/frontend_9080.upstream_rq_total", "default/catalog_9080"]
    assert lab01.judge_no_retry({**RIGHT_FIGURES, "edge_clusters": spelled}, truth()).ok
    assert lab01.judge_no_retry({**RIGHT_FIGURES, "edge_clusters": set(spelled)}, truth()).ok


def test_no_retry_after_an_ingress_mistake_points_at_the_ingress():
    lost = TrafficResult(requests=300, ok=0, failed=300, statuses=Counter({404: 300}))
    result = lab01.judge_no_retry(RIGHT_FIGURES, lab01.truth_from(lost, EDGE_STATS))
    assert not result.ok and "HTTP 404" in result.received and "Ingress" in result.received
    assert "exercise 1" in result.hints[0] and "inject" not in result.hints[0]


def test_no_retry_empty_or_inconsistent_runs():
    untouched = {k: None for k in lab01.NO_RETRY_FIELDS}
    assert "nothing filled in" in lab01.judge_no_retry(untouched, truth()).received
    assert not lab01.judge_no_retry([], truth()).ok
    no_fault = lab01.judge_no_retry(RIGHT_FIGURES, truth(failed_ratings_calls=0))
    assert not no_fault.ok and "inject" in no_fault.hints[0]
    retried = truth(failed_requests=60, success_rate=0.8)
    answers = {**RIGHT_FIGURES, "failed_requests": 60, "success_rate": 0.8}
    assert not lab01.judge_no_retry(answers, retried).ok


def test_no_retry_check_reads_the_edge_stats():
    with FakeEdge(route_right, EDGE_STATS) as edge:
        assert check("no-retry", edge.lab(), fake_result(), RIGHT_FIGURES).ok
        edge.stats = {**EDGE_STATS, "cluster.default/frontend_9080.upstream_rq_retry": 4}
        assert not check("no-retry", edge.lab(), fake_result(), RIGHT_FIGURES).ok
        no_edge = check("no-retry", edge.lab(with_edge=False), fake_result(), RIGHT_FIGURES)
    assert not no_edge.ok and "admin API" in no_edge.expected
    assert not check("no-retry", None, None, RIGHT_FIGURES).ok


# ---- exercise 4: which-stage -------------------------------------------------------------------------

KEY = {q: right for q, (right, _) in lab01.QUIZ.items()}


def test_quiz_right_answers_pass_in_any_spelling():
    assert lab01.judge_quiz(KEY).ok
    assert lab01.judge_quiz({q: f" {a.upper()}) " for q, a in KEY.items()}).ok


def test_quiz_each_wrong_choice_explains_itself():
    for q, (right, why) in lab01.QUIZ.items():
        assert set(why) == set("abcd") - {right}
        for letter, reason in why.items():
            result = lab01.judge_quiz({**KEY, q: letter})
            assert not result.ok and reason in result.received


def test_quiz_empty_or_odd_answers_are_not_done():
    assert "no answers yet" in lab01.judge_quiz({q: None for q in KEY}).received
    assert not lab01.judge_quiz("abca").ok
    assert not lab01.judge_quiz({**KEY, "q4": None}).ok
    assert not check("which-stage", {**KEY, "q1": "z"}).ok


def test_quiz_matches_the_notebook():
    """Every question and every option the checks explain is in the lab's text."""
    nb = json.loads((ROOT / "solutions" / f"{lab01.LAB}.ipynb").read_text(encoding="utf-8"))
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    for q in lab01.QUIZ:
        block = re.search(rf"\*\*{q}\.\*\*(.*?)(?=\*\*q\d\.\*\*|\Z)", text, re.S)
        assert block, f"{q} is not in the notebook"
        assert re.findall(r"^- ([a-d])\)", block.group(1), re.M) == list("abcd")


# ---- all of them -------------------------------------------------------------------------------------

def test_every_exercise_has_hints_that_differ():
    ids = [ex.id for ex in base.REGISTRY.values() if ex.lab == lab01.LAB]
    assert sorted(ids) == ["exact-vs-prefix", "ingress-host-path", "no-retry", "which-stage"]
    for ex in (base.REGISTRY[f"{lab01.LAB}/{i}"] for i in ids):
        assert len(ex.hints) >= 3 and len(set(ex.hints)) == len(ex.hints)
