"""Lab 01's checks on a real stage-1 lab (local backend, real Envoy edge): NOT DONE YET on the
untouched lab, NOT DONE YET on typical wrong answers, PASS on the solution's answers."""

from __future__ import annotations

import pytest

import meshlab
from meshlab import check
from meshlab.checks import lab01

pytestmark = pytest.mark.integration

RIGHT_INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop}
spec:
  ingressClassName: edge
  rules:
  - host: shop.local
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: frontend, port: {number: 9080}}}}
      - {path: /api/catalog, pathType: Prefix, backend: {service: {name: catalog, port: {number: 9080}}}}
"""
PREDICTIONS = {"/api/catalog/42": "catalog", "/api/catalog/": "catalog", "/api/catalogue": "frontend",
               "/api/reviews": "reviews", "/api/reviews/": "frontend", "/api/reviews/42": "frontend"}


def figures(result, before, after):
    def grew(suffix, contains=""):
        return sum(after[k] - before.get(k, 0) for k in after
                   if k.startswith("cluster.") and k.endswith(suffix) and contains in k)
    return dict(success_rate=result.success_rate, failed_requests=result.failed,
                failed_ratings_calls=result.calls["reviews->ratings"]["failed"],
                edge_forwarded=grew(".upstream_rq_total"), edge_retries=grew(".upstream_rq_retry"),
                edge_ratings_calls=grew(".upstream_rq_total", "ratings"),
                edge_clusters=sorted(k[len("cluster."):-len(".upstream_rq_total")] for k in after
                                     if k.startswith("cluster.") and k.endswith(".upstream_rq_total")))


def test_lab01_checks_on_a_real_edge(no_leaks, monkeypatch, tmp_path):
    monkeypatch.setenv("MESHLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(lab01, "SETTLE_S", 1.0)  # how long a wrong answer is re-probed; the edge reloads in ~0.1 s
    lab = meshlab.Lab("lab01live")
    try:
        lab.up(stage="edge", quiet=True)
        # untouched: the stage's own Ingress
        assert not check("ingress-host-path", lab).ok
        assert not check("exact-vs-prefix", lab, {p: None for p in PREDICTIONS}).ok
        assert not check("exact-vs-prefix", lab, PREDICTIONS).ok  # the demo Ingress is not applied yet

        # wrong: right rules under a new name, so the stage's host-less Ingress still answers other hosts
        lab.apply(RIGHT_INGRESS.replace("name: shop", "name: shop-local"))
        wrong = check("ingress-host-path", lab)
        assert not wrong.ok and "every host" in wrong.received
        lab.delete(RIGHT_INGRESS.replace("name: shop", "name: shop-local"))
        # wrong: Exact instead of Prefix for the catalog
        lab.apply(RIGHT_INGRESS.replace("path: /api/catalog, pathType: Prefix", "path: /api/catalog, pathType: Exact"))
        wrong = check("ingress-host-path", lab)
        assert not wrong.ok and "/api/catalog/items/7" in wrong.received
        # wrong: no ingressClassName; the edge controller (class edge, not the default) ignores it
        lab.apply(RIGHT_INGRESS.replace("  ingressClassName: edge\n", ""))
        wrong = check("ingress-host-path", lab)
        assert not wrong.ok and "Ingress shop has no `ingressClassName`" in wrong.received
        # wrong: a backend port the Service does not have
        lab.apply(RIGHT_INGRESS.replace("name: catalog, port: {number: 9080}", "name: catalog, port: {number: 8080}"))
        wrong = check("ingress-host-path", lab)
        assert not wrong.ok and "HTTP 503" in wrong.received and "catalog" in wrong.received
        assert "Service name and port" in wrong.received
        lab.apply(RIGHT_INGRESS)
        assert check("ingress-host-path", lab).ok

        lab.apply(lab01.PATHS_DEMO)
        assert check("exact-vs-prefix", lab, PREDICTIONS).ok
        assert not check("exact-vs-prefix", lab, {**PREDICTIONS, "/api/catalogue": "catalog"}).ok
        lab.delete(lab01.PATHS_DEMO)

        admin = lab01.edge_admin_url(lab)
        lab.inject("ratings", errors=0.5)
        before = lab01.envoy_stats(admin)
        result = lab.traffic(n=300, host="shop.local")
        after = lab01.envoy_stats(admin)
        answers = figures(result, before, after)
        assert check("no-retry", lab, result, answers).ok
        cumulative = {**answers, "edge_forwarded": lab01.stat_sum(after, "upstream_rq_total")}
        assert not check("no-retry", lab, result, cumulative).ok
        guessed = {**answers, "edge_clusters": None}  # the zeros guessed, /stats never read
        assert not check("no-retry", lab, result, guessed).ok
    finally:
        lab.down()
