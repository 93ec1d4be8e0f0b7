"""Stage 1 on the local backend, real Envoy and real traffic: the edge proxy sees every request,
and killed pods and nodes show up in the very next traffic until restore brings them back."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from meshlab.backends.local import paths
from conftest import wait_no_processes
from labs import running

pytestmark = pytest.mark.integration
LAB = "stage1"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def lab():
    with running(LAB, "edge") as lab:
        yield lab
    assert not wait_no_processes(), "stage 1 lab left processes behind"
    assert not paths.lab_dir(LAB).exists()


def app_pods(result) -> set[str]:
    """Every app pod a traffic result passed through."""
    return {h["pod"] for p in result.paths for h in p["hops"] if h["kind"] == "app"}


def app_hops(result) -> list[dict]:
    return [h for p in result.paths for h in p["hops"] if h["kind"] == "app"]


def edge_endpoints(lab) -> list[str]:
    """The addresses the edge Envoy itself would send frontend traffic to (its admin API)."""
    admin = next(p.admin_url for p in lab.proxies() if p.role == "edge")
    data = json.loads(NO_PROXY.open(f"{admin}/clusters?format=json", timeout=3).read())
    return [h["address"]["socket_address"]["address"] for c in data["cluster_statuses"]
            if c["name"].endswith("/frontend:9080") for h in c.get("host_statuses", [])]


def service_endpoints(lab, name: str) -> list[str]:
    return next(s["endpoints"] for s in lab.backend.status()["services"] if s["name"] == name)


def test_200_requests_all_succeed_and_every_path_starts_at_the_edge(lab):
    result = lab.traffic(n=200, concurrency=8)
    assert (result.requests, result.ok) == (200, 200), str(result)
    edge = [p.pod for p in lab.proxies() if p.role == "edge"]
    assert len(edge) == 1
    assert result.paths
    for path in result.paths:
        first = path["hops"][0]
        assert (first["kind"], first.get("role"), first["name"]) == ("proxy", "edge", edge[0]), path
        assert all(h["kind"] == "app" for h in path["hops"][1:]), path  # no other proxy in stage 1
    # one frontend hop per request, and every traced pod is a real pod of the lab
    assert result.versions["frontend"]["v1"] == 200
    assert app_pods(result) <= {p.name for p in lab.pods()}


def test_killed_pod_never_appears_and_restore_brings_it_back(lab):
    killed = lab.kill(pod="ratings")
    assert len(killed) == 1 and killed[0].startswith("ratings-")
    pod = killed[0].split("/")[0]
    try:
        phases = {p.name: p.phase for p in lab.pods()}
        assert phases[pod] == "Killed"
        result = lab.traffic(n=100)
        assert result.ok == 100, str(result)  # the other ratings pod serves every call
        assert pod not in app_pods(result)
        assert any(h["service"] == "ratings" for h in app_hops(result))
        second = lab.kill(pod="ratings")[0].split("/")[0]  # now ratings has no pod left
        assert second != pod
        result = lab.traffic(n=100)
        assert not any(h["service"] == "ratings" for h in app_hops(result))
        assert result.calls["reviews->ratings"]["failed"] == result.calls["reviews->ratings"]["total"] > 0
        assert result.calls["frontend->catalog"]["failed"] == 0  # the rest of the shop is untouched
        errors = [h for p in result.paths for h in p["hops"] if h["kind"] == "error"]
        assert errors and {h["name"] for h in errors} == {"ratings"}  # the trace says where it broke
    finally:
        lab.restore()  # returns once the pods serve again
    after = lab.traffic(n=100)
    assert after.ok == 100, str(after)
    assert {pod, second} <= app_pods(after)  # round robin over both ratings pods again


def test_killed_pod_leaves_its_service_within_2s(lab):
    """Measured from kill() returning: the Service's endpoints and the edge's own cluster."""
    ratings_ip = next(p.ip for p in lab.pods() if p.service == "ratings")
    frontend_ip = next(p.ip for p in lab.pods() if p.service == "frontend")
    assert any(e.startswith(ratings_ip + ":") for e in service_endpoints(lab, "ratings"))
    assert frontend_ip in edge_endpoints(lab)
    try:
        lab.kill(pod=next(p.name for p in lab.pods() if p.ip == ratings_ip))
        lab.kill(pod="frontend")
        start = time.monotonic()
        service_gone = edge_gone = None
        while time.monotonic() - start < 5 and None in (service_gone, edge_gone):
            now = time.monotonic() - start
            endpoints = service_endpoints(lab, "ratings")
            if service_gone is None and not any(e.startswith(ratings_ip + ":") for e in endpoints):
                service_gone = now
            if edge_gone is None and frontend_ip not in edge_endpoints(lab):
                edge_gone = now
            time.sleep(0.02)
        print(f"killed pod left: Service endpoints after {service_gone}s, edge Envoy cluster after {edge_gone}s")
        assert service_gone is not None and service_gone < 2.0
        assert edge_gone is not None and edge_gone < 2.0
        result = lab.traffic(n=20)
        assert result.ok == 0 and set(result.statuses) == {503}, str(result)  # frontend has no pod left
    finally:
        lab.restore()  # returns once the pods serve again
    assert lab.traffic(n=20).ok == 20


def test_killed_node_is_visible_in_the_next_traffic(lab):
    on_node = {p.name: p.service for p in lab.pods() if p.node == "node-2"}
    assert on_node, "the scheduler spreads pods over every node"
    killed = lab.kill(node="node-2")
    try:
        assert {k.split("/")[0] for k in killed} == set(on_node)
        assert [n.ready for n in lab.nodes() if n.name == "node-2"] == [False]
        alive = {p.service for p in lab.pods() if p.ready}
        dead = {s for s in on_node.values() if s not in alive}  # services with no pod left
        result = lab.traffic(n=100)
        assert not set(on_node) & app_pods(result)
        assert all(h.get("node") != "node-2" for h in app_hops(result))
        if "frontend" in dead:
            assert result.ok == 0, str(result)
        else:
            for service in dead:
                calls = [c for k, c in result.calls.items() if k.endswith("->" + service)]
                assert calls and all(c["failed"] == c["total"] for c in calls), (service, result.calls)
            assert result.ok == 100 if not dead else result.ok < 100
    finally:
        lab.restore()  # returns once the pods serve again
    after = lab.traffic(n=100)
    assert after.ok == 100, str(after)
    assert set(on_node) & app_pods(after)
    assert all(n.ready for n in lab.nodes())
