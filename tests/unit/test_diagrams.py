"""Diagrams: stage schematics and live facts -> topology -> DOT -> SVG, on both renderers."""

import html
import os
import shutil
import stat
import sys
import sysconfig
import time

import pytest

from meshlab import diagrams
from meshlab.backends.base import ContainerInfo, MeshlabError, NodeInfo, PodInfo, ProxyInfo
from meshlab.diagrams import render, style
from meshlab.stages import info

# --- a small stage-3 lab as facts, and a traffic run through it --------------------------------


def _pod(name, service, version, node, ready=True, role=""):
    labels = {"app": service, "version": version} if service else {}
    if role:
        labels["meshlab.io/proxy-role"] = role
    state = "running" if ready else "killed"
    return PodInfo(name, "default", node, "127.9.1.10", ready, "Running" if ready else "Failed", labels,
                   [ContainerInfo("app", "python:3.12", state)])


PODS = [
    _pod("edge-6c8d-x2x1", "", "", "node-1", role="edge"),
    _pod("frontend-5f-a", "frontend", "v1", "node-1"),
    _pod("catalog-7b-b", "catalog", "v1", "node-1"),
    _pod("reviews-v1-7d-c", "reviews", "v1", "node-2"),
    _pod("reviews-v2-7d-d", "reviews", "v2", "node-2"),
    _pod("ratings-9a-e", "ratings", "v1", "node-2", ready=False),
]
NODES = [NodeInfo("node-1", "127.9.1.1", True), NodeInfo("node-2", "127.9.2.1", True)]
PROXIES = [ProxyInfo("edge-6c8d-x2x1", "edge", "edge-6c8d-x2x1", "node-1", "running"),
           ProxyInfo("node-proxy-1", "node", "node-proxy-1", "node-1", "running"),
           ProxyInfo("node-proxy-2", "node", "node-proxy-2", "node-2", "killed")]

EDGE = "kind=proxy;role=edge;name=edge-6c8d-x2x1;node=node-1"  # header form is accepted too
FRONT = {"kind": "app", "service": "frontend", "version": "v1", "pod": "frontend-5f-a", "node": "node-1"}
NP1 = {"kind": "proxy", "role": "node", "name": "node-proxy-1", "node": "node-1"}
CAT = {"kind": "app", "service": "catalog", "version": "v1", "pod": "catalog-7b-b", "node": "node-1"}
R1 = {"kind": "app", "service": "reviews", "version": "v1", "pod": "reviews-v1-7d-c", "node": "node-2"}
R2 = {"kind": "app", "service": "reviews", "version": "v2", "pod": "reviews-v2-7d-d", "node": "node-2"}
ERR = {"kind": "error", "target": "ratings", "status": 503}

# 100 requests; each calls catalog AND reviews (v1 or v2); v2 then calls ratings, which fails.
TRAFFIC = {
    "requests": 100, "ok": 40, "failed": 60, "latency_ms": {"p50": 4.2, "p90": 9.0, "p99": 20.0},
    "paths": [{"hops": [EDGE, FRONT, NP1, CAT], "count": 100},
              {"hops": [EDGE, FRONT, NP1, R1], "count": 40},
              {"hops": [EDGE, FRONT, NP1, R2, ERR], "count": 60}],
    "calls": {"frontend->catalog": {"total": 100, "failed": 0},
              "frontend->reviews": {"total": 100, "failed": 60},
              "reviews->ratings": {"total": 60, "failed": 60, "p50_ms": 0.4}},
}


def _live(traffic=TRAFFIC):
    return diagrams.from_facts(PODS, NODES, PROXIES, traffic)


def _edge(topo, src, dst):
    names = topo.names()
    for e in topo.edges:
        if (names.get(e.src), names.get(e.dst)) == (src, dst):
            return e
    raise AssertionError(f"no edge {src} -> {dst} in {[(names[e.src], names[e.dst]) for e in topo.edges]}")


# --- stage schematics ------------------------------------------------------------------------


@pytest.mark.parametrize("stage", info.STAGES, ids=lambda s: s.key)
def test_every_stage_draws_fast_with_the_pip_renderer(stage):
    diagram = diagrams.stage_diagram(stage.number, renderer="pure")
    started = time.perf_counter()
    svg = diagram.svg
    assert time.perf_counter() - started < 0.5
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    assert stage.title in html.unescape(svg)


def test_stage_topologies_have_the_stage_shape():
    three = diagrams.from_stage("per-node")
    assert [p.role for p in three.proxies].count("node") == len(three.nodes) == 3
    five = diagrams.from_stage(5)
    assert len(five.sidecars()) == len(five.pods)
    assert any(e.kind == "config" for e in five.edges)
    assert diagrams.from_stage(6).clusters() == ["cluster-1", "cluster-2", ""]
    assert not diagrams.from_stage(0).proxies


def test_proxies_are_coloured_by_role():
    dot = diagrams.stage_diagram(5).dot
    for role in ("edge", "sidecar", "control-plane"):
        assert style.role_fill(role) in dot
    assert style.role_fill("node") in diagrams.stage_diagram(3).dot
    assert style.role_fill("router") in diagrams.stage_diagram(2).dot
    assert style.role_fill("gateway") in diagrams.stage_diagram(6).dot


def test_diagram_displays_as_svg_with_a_text_fallback():
    bundle = diagrams.stage_diagram(1)._repr_mimebundle_()
    assert set(bundle) == {"image/svg+xml", "text/plain"}
    assert "<svg" in bundle["image/svg+xml"]
    assert "edge <edge proxy>" in bundle["text/plain"]
    assert "client -> edge" in bundle["text/plain"]


def test_diagram_saves_svg(tmp_path):
    path = diagrams.stage_diagram(0).save(tmp_path / "s0.svg")
    with open(path, encoding="utf-8") as f:
        assert f.read().count("<svg") == 1


# --- renderers -------------------------------------------------------------------------------


def _fake_dot(folder):
    """A `dot` on PATH that records it ran, then renders with graphviz-pure."""
    script = folder / "dot"
    script.write_text(f"#!/bin/sh\ntouch {folder}/dot-was-used\nexec {render.pure_binary()} \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder / "dot-was-used"


@pytest.fixture
def path_with_fake_dot(tmp_path, monkeypatch):
    marker = _fake_dot(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv(render.ENV, raising=False)
    return marker


@pytest.fixture
def path_without_dot(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot, no graphviz-pure: found beside the interpreter
    monkeypatch.delenv(render.ENV, raising=False)


def test_auto_prefers_the_system_dot(path_with_fake_dot):
    assert render.renderer_command()[0] == shutil.which("dot")
    render.render_svg("digraph { auto_dot -> b }")
    assert path_with_fake_dot.exists()


def test_env_var_forces_the_pip_renderer(path_with_fake_dot, monkeypatch):
    monkeypatch.setenv(render.ENV, "pure")
    assert os.path.basename(render.renderer_command()[0]).startswith("graphviz-pure")
    svg = render.render_svg("digraph { env_pure -> b }")
    assert "graphviz-pure" in svg and not path_with_fake_dot.exists()


def test_parameter_forces_the_pip_renderer(path_with_fake_dot):
    svg = render.render_svg("digraph { param_pure -> b }", renderer="pure")
    assert "param_pure" in svg and not path_with_fake_dot.exists()


def test_auto_falls_back_to_graphviz_pure_beside_the_interpreter(path_without_dot):
    command = render.renderer_command()
    assert os.path.dirname(command[0]) in (os.path.dirname(sys.executable), sysconfig.get_path("scripts"))
    assert "fallback_pure" in render.render_svg("digraph { fallback_pure -> b }")


def test_asking_for_a_missing_dot_is_a_clear_error(path_without_dot):
    with pytest.raises(MeshlabError, match="not on PATH"):
        render.renderer_command("dot")
    with pytest.raises(MeshlabError, match="unknown diagram renderer"):
        render.renderer_command("neato")


def test_a_diagram_that_cannot_render_still_shows_text(path_without_dot):
    bundle = diagrams.stage_diagram(2, renderer="dot")._repr_mimebundle_()
    assert set(bundle) == {"text/plain"}
    assert "router <router>" in bundle["text/plain"] and "not drawn" in bundle["text/plain"]


def test_renderer_errors_name_the_renderer():
    with pytest.raises(MeshlabError, match="graphviz-pure"):
        render.render_svg("digraph { a -> }", renderer="pure")


@pytest.mark.skipif(not shutil.which("dot"), reason="no system Graphviz here")
def test_the_real_system_dot_renders_every_stage():
    for stage in info.STAGES:
        assert "</svg>" in diagrams.stage_diagram(stage.number, renderer="dot").svg


# --- a live lab: facts and the last traffic run ----------------------------------------------


def test_fan_out_is_not_counted_twice():
    topo = _live()
    assert _edge(topo, "client", "edge-6c8d-x2x1").count == 100
    assert _edge(topo, "edge-6c8d-x2x1", "frontend-5f-a").count == 100
    assert _edge(topo, "node-proxy-1", "catalog-7b-b").count == 100
    assert _edge(topo, "node-proxy-1", "reviews-v1-7d-c").count == 40
    assert _edge(topo, "node-proxy-1", "reviews-v2-7d-d").count == 60


def test_failed_calls_and_dead_parts_are_red():
    topo = _live()
    failed = _edge(topo, "reviews-v2-7d-d", "service ratings")
    assert (failed.count, failed.failed, failed.p50_ms) == (60, 60, 0.4)
    assert "100% err" in failed.describe()
    assert [p.name for p in topo.pods if p.down] == ["ratings-9a-e"]
    assert [p.name for p in topo.proxies if p.down] == ["node-proxy-2"]
    dot = diagrams.to_dot(topo)
    assert dot.count(style.DOWN) >= 4  # the pod, the proxy, the failed edge and its label
    assert "DOWN" in diagrams.to_text(topo)


def test_a_pod_that_answers_with_an_error_fails_the_call_into_it():
    own = {"kind": "error", "target": "reviews", "status": 500}  # reviews-v1 failed itself
    topo = diagrams.from_facts(PODS, NODES, PROXIES, {"paths": [
        {"hops": [EDGE, FRONT, NP1, R1], "count": 30}, {"hops": [EDGE, FRONT, NP1, R1, own], "count": 10}]})
    edge = _edge(topo, "node-proxy-1", "reviews-v1-7d-c")
    assert (edge.count, edge.failed) == (40, 10)
    assert "svc:reviews" not in [e.dst for e in topo.edges]


def test_entry_edge_carries_the_run_latency():
    assert _edge(_live(), "client", "edge-6c8d-x2x1").p50_ms == 4.2


def test_requests_that_never_reached_the_entry_fail_on_the_entry_edge():
    topo = _live({"requests": 50, "ok": 0, "failed": 50, "paths": []})
    edge = _edge(topo, "client", "edge-6c8d-x2x1")
    assert (edge.count, edge.failed) == (50, 50)


def test_calls_without_paths_draw_service_edges():
    topo = diagrams.from_facts(PODS, NODES, PROXIES, {"calls": [
        {"from": "frontend", "to": "reviews", "total": 10, "failed": 2}]})
    edge = _edge(topo, "service frontend", "service reviews")
    assert (edge.count, edge.failed) == (10, 2)


def test_hops_the_facts_do_not_know_are_added():
    stranger = {"kind": "app", "service": "payments", "version": "v1", "pod": "payments-1", "node": "node-9"}
    topo = diagrams.from_facts(PODS, NODES, PROXIES, {"paths": [{"hops": [EDGE, stranger], "count": 3}]})
    assert "payments-1" in [p.name for p in topo.pods]
    assert "node-9" in [n.name for n in topo.nodes]


def test_sidecars_sit_inside_their_pods():
    pod = _pod("reviews-v2-1", "reviews", "v2", "node-1")
    pod.containers.append(ContainerInfo("envoy", "envoyproxy/envoy:v1.36", "running"))
    sidecar = ProxyInfo("reviews-v2-1/envoy", "sidecar", "reviews-v2-1", "node-1", "running")
    hop = {"kind": "proxy", "role": "sidecar", "name": "reviews-v2-1", "node": "node-1"}
    app = {"kind": "app", "service": "reviews", "version": "v2", "pod": "reviews-v2-1", "node": "node-1"}
    topo = diagrams.from_facts([pod], NODES[:1], [sidecar], {"paths": [{"hops": [hop, app], "count": 5}]})
    assert list(topo.sidecars()) == [topo.pods[0].id]
    assert _edge(topo, "reviews-v2-1 sidecar", "reviews-v2-1").count == 5
    assert "cluster_pod_" in diagrams.to_dot(topo)


def test_a_real_traffic_result_is_accepted():
    traffic = pytest.importorskip("meshlab.traffic")
    result = traffic.TrafficResult(requests=100, ok=100, paths=[
        {"hops": [traffic.normalize_hop(h) for h in (FRONT, CAT)], "count": 100}])
    topo = diagrams.from_facts(PODS, NODES, PROXIES, result)
    assert _edge(topo, "frontend-5f-a", "catalog-7b-b").count == 100


def test_lab_diagram_asks_the_lab_for_its_facts():
    class Lab:
        def pods(self):
            return PODS

        def nodes(self):
            return NODES

        def proxies(self):
            return PROXIES

    diagram = diagrams.lab_diagram(Lab(), TRAFFIC, renderer="pure")
    svg = html.unescape(diagram.svg)
    assert "frontend-5f-a" in svg and "100 req" in svg


# --- two clusters: a crossing is drawn through the callee cluster's east-west gateway ---------------------------

def _mc_pod(name, service, cluster, role=""):
    labels = {"app": service, "version": "v1"} if service else {}
    if role:
        labels["meshlab.io/proxy-role"] = role
    containers = [ContainerInfo("app", "python:3.12", "running")] if service else []
    return PodInfo(name, "default", "node-1", "127.9.1.10", True, "Running", labels,
                   containers + [ContainerInfo("istio-proxy", "envoyproxy/envoy:v1.36", "running")], cluster)


def _mc_hop(kind, name, cluster, **extra):
    if kind == "app":
        return {"kind": "app", "service": name.split("-")[0], "version": "v1", "pod": name, "node": "node-1",
                "cluster": cluster}
    return {"kind": "proxy", "role": "sidecar", "name": name, "node": "node-1", "cluster": cluster, **extra}


def test_a_call_into_another_cluster_is_drawn_through_that_clusters_gateway_only_where_it_crossed():
    pods = [_mc_pod("frontend-a", "frontend", "cluster-1"), _mc_pod("reviews-b", "reviews", "cluster-1"),
            _mc_pod("reviews-c", "reviews", "cluster-2"),
            _mc_pod("gw-1", "", "cluster-1", "gateway"), _mc_pod("gw-2", "", "cluster-2", "gateway")]
    nodes = [NodeInfo("node-1", "127.9.1.1", True, "cluster-1"), NodeInfo("node-1", "127.10.1.1", True, "cluster-2")]
    proxies = [ProxyInfo(f"{p.name}/istio-proxy", "sidecar", p.name, "node-1", "running", cluster=p.cluster)
               for p in pods[:3]] + [ProxyInfo(g, "gateway", g, "node-1", "running", cluster=c)
                                     for g, c in (("gw-1", "cluster-1"), ("gw-2", "cluster-2"))]
    front = [_mc_hop("proxy", "frontend-a", "cluster-1", dir="in"), _mc_hop("app", "frontend-a", "cluster-1"),
             _mc_hop("proxy", "frontend-a", "cluster-1", dir="out")]
    traffic = {"requests": 10, "paths": [
        {"hops": front + [_mc_hop("proxy", "reviews-b", "cluster-1", dir="in"), _mc_hop("app", "reviews-b", "cluster-1")],
         "count": 6},
        {"hops": front + [_mc_hop("proxy", "reviews-c", "cluster-2", dir="in"), _mc_hop("app", "reviews-c", "cluster-2")],
         "count": 4},
        {"hops": front + [{"kind": "app", "service": "payments", "pod": "payments-legacy", "node": "legacy-host"}],
         "count": 10}]}
    topo = diagrams.from_facts(pods, nodes, proxies, traffic)
    assert _edge(topo, "frontend-a sidecar", "gw-2").count == 4
    assert _edge(topo, "gw-2", "reviews-c sidecar").count == 4
    assert _edge(topo, "frontend-a sidecar", "reviews-b sidecar").count == 6  # stayed home: no gateway
    names = topo.names()
    assert not any("gw-1" in (names[e.src], names[e.dst]) for e in topo.edges if e.kind == "call")
    assert not any((names[e.src], names[e.dst]) == ("frontend-a sidecar", "reviews-c sidecar") for e in topo.edges)
    assert _edge(topo, "frontend-a sidecar", "payments-legacy").count == 10  # outside every cluster: no gateway
    assert "outside the clusters:\n  legacy-host: payments-legacy" in diagrams.text.to_text(topo)
