"""Stage 1 (edge proxy) on a real kind cluster: traffic enters through the Envoy edge and every trace shows it.

Opt-in: `pytest -m kind` (needs Docker running, kind and kubectl; takes minutes the first time).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from meshlab import manifests, stages
from meshlab.backends.kind import KindBackend

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1500)]

LAB = "kindtest"


def get_json(url: str, wait: float = 90.0) -> dict:
    """GET url until it answers 200 with JSON (the edge needs a moment to pick up a new Ingress)."""
    deadline, last = time.monotonic() + wait, ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(exc)
            time.sleep(1)
    raise AssertionError(f"{url} did not answer 200 within {wait:.0f}s: {last}")


@pytest.fixture(scope="module")
def lab():
    found = KindBackend.availability()
    if not found.ok:
        pytest.skip(f"kind backend not available here: missing {', '.join(found.missing)}")
    backend = KindBackend(LAB)
    try:
        backend.up(nodes=2)
        docs = stages.documents(1)
        manifests.validate(docs, "stage 1")
        backend.apply(docs)
        backend.wait_ready(timeout=300)
        yield backend
    finally:
        backend.down()


def test_the_entrypoint_is_the_edge_on_loopback(lab):
    assert lab.entrypoint() == f"http://127.0.0.1:{lab.state.read()['edge_port']}"


def test_every_trace_shows_the_edge_proxy(lab):
    url = lab.entrypoint() + "/"
    for _ in range(20):
        body = get_json(url)
        assert body["status"] == 200 and body["paths"], body
        for chain in body["paths"]:
            assert chain[0].get("kind") == "proxy" and chain[0].get("role") == "edge", chain
            assert chain[0]["name"].startswith("edge-") and chain[0]["node"] == f"meshlab-{LAB}-control-plane", chain
            assert chain[1].get("service") == "frontend", chain


def test_status_reports_the_edge_proxy_and_the_shop(lab):
    edges = [p for p in lab.proxies() if p.role == "edge"]
    assert len(edges) == 1 and edges[0].state == "running"
    assert {p.service for p in lab.pods()} >= {"frontend", "catalog", "reviews", "ratings"}
    assert all(n.ready for n in lab.nodes()) and len(lab.nodes()) == 2


def test_the_edge_is_an_envoy_whose_admin_shows_the_ingress_backend(lab):
    """Lesson 01 section 4 and lab 01's checks read the edge's admin API: on kind too."""
    from meshlab.envoy.admin import Admin

    edge = next(p for p in lab.proxies() if p.role == "edge")
    assert edge.admin_url, edge
    admin = Admin(edge.admin_url, 10)
    assert admin.clusters().get("default/frontend:9080"), admin.clusters()  # the Ingress's backend, with endpoints
    get_json(lab.entrypoint() + "/")
    assert admin.stats().get("http.edge.downstream_rq_total", 0) >= 1


def test_down_deletes_only_the_labs_cluster(lab):
    lab.down()
    assert f"meshlab-{LAB}" not in lab.backend.kind_clusters()
    lab.down()  # idempotent
