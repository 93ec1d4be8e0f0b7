"""Stage 6's picture: each cluster's pods from the stage's own manifests, placed as the local fleet places them; two
cluster boxes with their east-west gateways on the borders that face each other; one path between the clusters,
through cluster-2's gateway, drawn as the failover path; and in the live view a gateway arrow only where a trace
really crossed."""

from __future__ import annotations

import html
import re
from collections import Counter

import pytest
from traces import east_west

from meshlab import diagrams, stages
from meshlab.backends.base import ContainerInfo, NodeInfo, PodInfo, ProxyInfo
from meshlab.backends.local.runtime import Runtime, key_of
from meshlab.controlplane import deploy
from meshlab.diagrams import labels, placement, render
from meshlab.fleet import CLUSTERS
from meshlab.traffic import TrafficResult
from meshlab.widgets import LiveView

C1, C2 = "cluster-1", "cluster-2"


def runtime_placement(identity, folder) -> Counter:
    """(workload, node) of every pod a real local Runtime of one cluster of the fleet creates for stage 6: its
    control plane and east-west gateway first (install_mesh), then its share of the stage (no process starts)."""
    runtime = Runtime(folder, 78, stages.nodes_for(6), {}, identity)
    for docs in (deploy.documents(identity.name, identity.network) + deploy.gateway_documents(),
                 stages.documents(6, cluster=identity.name)):
        for doc in docs:
            runtime.objects[key_of(doc)] = doc
        runtime._sync_edge()
        runtime._sync_workloads()
    return Counter((p.owner.split("/")[-1], p.node) for p in runtime.pods.values())


def declared_apps(cluster: str) -> Counter:
    """(service, version) of every app pod one cluster's share of stage 6 asks for."""
    return Counter((d["metadata"]["labels"]["app"], d["metadata"]["labels"]["version"])
                   for d in stages.documents(6, cluster=cluster) if d["kind"] == "Deployment"
                   for _ in range(d["spec"].get("replicas", 1)))


# --- the schematic, from the stage's manifests ----------------------------------------------------------------

@pytest.mark.parametrize("identity", CLUSTERS, ids=lambda c: c.name)
def test_each_clusters_placement_is_the_local_runtimes(identity, tmp_path):
    placed = placement.place(6, identity.name)
    assert Counter((p.owner.split("/")[-1], p.node) for p in placed) == runtime_placement(identity, tmp_path)


@pytest.mark.parametrize("identity", CLUSTERS, ids=lambda c: c.name)
def test_the_schematic_draws_every_pod_of_each_cluster_where_the_fleet_runs_it(identity, tmp_path):
    topo = diagrams.from_stage(6)
    cluster = identity.name
    pods = [p for p in topo.pods if p.cluster == cluster]
    assert Counter((p.service, p.version) for p in pods) == declared_apps(cluster)
    drawn = Counter(p.node for p in pods) + Counter(p.node for p in topo.proxies if p.cluster == cluster
                                                   and p.role != "sidecar")
    assert drawn == Counter(node for (_, node), n in runtime_placement(identity, tmp_path).items() for _ in range(n))
    assert [n.name for n in topo.nodes if n.cluster == cluster] == ["node-1", "node-2", "node-3"]
    assert all(topo.sidecars().get(p.id) for p in pods)  # injected: every app pod has its sidecar


def test_two_cluster_boxes_with_the_pods_the_manifests_place_in_each_and_payments_outside():
    topo = diagrams.from_stage(6)
    assert topo.clusters() == [C1, C2, ""]
    where = {}
    for pod in topo.pods:
        where.setdefault(pod.service, set()).add(pod.cluster)
    assert where["reviews"] == where["ratings"] == {C1, C2}
    assert where["frontend"] == where["catalog"] == {C1}
    assert where["payments"] == {""}  # the legacy host, outside both
    assert {n.name for n in topo.nodes if not n.cluster} == {"legacy-host"}
    assert [p.cluster for p in topo.proxies if p.role == "edge"] == [C1]
    assert sorted(p.cluster for p in topo.proxies if p.role == "control-plane") == [C1, C2]


def _calls(topo, element):
    return [e for e in topo.edges if e.kind == "call" and element in (e.src, e.dst)]


def test_one_gateway_per_cluster_and_only_cluster_2s_carries_the_failover_path():
    topo = diagrams.from_stage(6)
    gateways = {p.cluster: p for p in topo.proxies if p.role == "gateway"}
    assert sorted(gateways) == [C1, C2] and len([p for p in topo.proxies if p.role == "gateway"]) == 2
    into, out = gateways[C2], _calls(topo, gateways[C2].id)
    assert out and all(e.failover for e in out)
    assert out == [e for e in topo.edges if e.failover and into.id in (e.src, e.dst)]  # exactly the failover edges
    names = topo.names()
    assert [names[e.src] for e in out if e.dst == into.id] == ["frontend sidecar"]  # entered once, from frontend
    assert sorted(names[e.dst] for e in out if e.src == into.id) == [
        f"{C2}/reviews-v{v} sidecar" for v in (1, 2, 3)]
    assert _calls(topo, gateways[C1].id) == []  # nothing crosses into cluster-1 ...
    assert [e.src for e in topo.edges if e.dst == gateways[C1].id] == [  # ... but it has its arrow: its config
        p.id for p in topo.proxies if p.role == "control-plane" and p.cluster == C1]


def test_the_one_path_between_the_clusters_is_the_failover_through_cluster_2s_gateway():
    topo = diagrams.from_stage(6)
    cluster = {x.id: x.cluster for x in (*topo.pods, *topo.proxies)}
    across = [e for e in topo.edges if e.kind == "call" and cluster.get(e.src) and cluster.get(e.dst)
              and cluster[e.src] != cluster[e.dst]]
    names = topo.names()
    assert [(names[e.src], names[e.dst]) for e in across] == [("frontend sidecar", "eastwest-gateway-2")]
    assert across[0].failover
    for e in topo.edges:  # cluster-1 serves everything itself until it fails
        if e.kind == "call" and cluster.get(e.src) == C1 and cluster.get(e.dst) == C1:
            assert not e.failover
        if e.kind == "call" and cluster.get(e.dst) == C2:
            assert e.failover, (names[e.src], names[e.dst])
    text = diagrams.to_text(topo)
    assert "frontend sidecar -> eastwest-gateway-2  (only after failover · mTLS, SNI passthrough)" in text
    assert f"{C2}/reviews-v1 sidecar -> {C2}/reviews-v1  (only after failover)" in text
    assert "config pushes: istiod-1 -> 1 proxy, istiod-2 -> 1 proxy" in text


def test_a_call_naming_a_part_of_both_clusters_must_say_which():
    from meshlab.diagrams.schematic import _Refs
    from meshlab.stages.info import Part, get

    refs = _Refs(Counter(["reviews-v1", "reviews-v1", "frontend"]))
    for cluster in (C1, C2):
        refs.add(Part("reviews-v1", "node-1", "reviews", "v1", cluster=cluster), "", f"pod:{cluster}/reviews-v1")
    refs.add(Part("frontend", "node-1", "frontend", cluster=C1), "", "pod:cluster-1/frontend")
    assert refs.ref("frontend", get(6)) == refs.ref(f"{C1}/frontend", get(6)) == "pod:cluster-1/frontend"
    assert refs.ref(f"{C2}/reviews-v1", get(6)) == "pod:cluster-2/reviews-v1"
    with pytest.raises(KeyError, match="in several clusters: write cluster/reviews-v1"):
        refs.ref("reviews-v1", get(6))


# --- drawn: boxes, gateways on the facing borders, nothing else between the clusters -------------------------

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
WITHIN = r"(?:(?!</g>\n<!--).)*?"  # inside one node's or edge's group
TOOLTIP = re.compile(r'^\s*(n\d+) \[label=[^\n]*?tooltip="?([^"\]\s]+)"?', re.M)  # a DOT node's id and name
EDGE = re.compile(r'<g id="edge\d+" class="edge">.*?(?=<g id="(?:edge|node|clust)\d+" class=|</svg>)', re.S)


def _box(points: str) -> tuple[float, float, float, float]:
    values = [float(v) for v in NUMBER.findall(points)]
    xs, ys = values[0::2], values[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def _layout(svg: str):
    """Cluster boxes by DOT name, node boxes and labels by DOT id, edge paths by (tail, head) DOT ids."""
    clusters = {m.group(1): _box(m.group(2)) for m in re.finditer(
        rf'<title>(cluster_\w+)</title>\s*<(?:path|polygon)[^>]*?(?:d|points)="([^"]+)"', svg)}
    nodes = {m.group(1): _box(m.group(2)) for m in re.finditer(
        rf'<title>(n\d+)</title>{WITHIN}<(?:path|polygon)[^>]*?(?:d|points)="([^"]+)"', svg, re.S)}
    for m in re.finditer(rf'<title>(n\d+)</title>{WITHIN}<ellipse[^>]*cx="([^"]+)" cy="([^"]+)" rx="([^"]+)" ry="([^"]+)"',
                         svg, re.S):  # the client
        x, y, rx, ry = (float(v) for v in m.groups()[1:])
        nodes[m.group(1)] = (x - rx, y - ry, x + rx, y + ry)
    edges = {}
    for m in re.finditer(rf'<title>(n\d+)&#45;&gt;(n\d+)</title>{WITHIN}<path[^>]*\bd="([^"]+)"', svg, re.S):
        edges.setdefault((m.group(1), m.group(2)), labels._samples(m.group(3)))
    return clusters, nodes, edges


def _inside(box, outer, slack=1.0) -> bool:
    return outer[0] - slack <= box[0] and outer[1] - slack <= box[1] and box[2] <= outer[2] + slack \
        and box[3] <= outer[3] + slack


@pytest.fixture(scope="module")
def drawn():
    if not render.pure_binary():
        pytest.skip("graphviz-pure is not installed")
    diagram = diagrams.stage_diagram(6, renderer="pure")
    source, svg = diagram.dot, diagram.svg
    ids = dict(TOOLTIP.findall(source))
    return source, svg, ids


def test_the_renderer_draws_both_cluster_boxes_and_the_outside_one(drawn):
    source, svg, _ = drawn
    titles = re.findall(r'<title>cluster_(\d+)</title>\s*<(?:path|polygon)[^>]*>\s*<text[^>]*>([^<]+)</text>', svg)
    assert [html.unescape(label) for _, label in titles[:3]] == [C1, C2, "outside the clusters"]
    assert "dashed blue: calls made only after failover" in html.unescape(svg)


def test_each_gateway_sits_on_the_border_facing_the_other_cluster(drawn):
    """Clusters stack top to bottom: cluster-1's gateway in its last column and lowest node box, cluster-2's in its
    first column and highest node box (SVG y grows downwards)."""
    _, svg, ids = drawn
    clusters, nodes, _ = _layout(svg)
    gateway = {name: nodes[i] for i, name in ids.items() if name.startswith("eastwest-gateway")}
    one, two = clusters["cluster_0"], clusters["cluster_1"]
    assert one[3] < two[1]  # cluster-2 below cluster-1
    for cluster, box, gw, lowest in (("0", one, gateway["eastwest-gateway-1"], True),
                                     ("1", two, gateway["eastwest-gateway-2"], False)):
        inside = [b for b in nodes.values() if _inside(b, box)]
        node_boxes = [b for name, b in clusters.items() if re.fullmatch(rf"cluster_{cluster}_\d+", name)]
        home = next(b for b in node_boxes if _inside(gw, b))
        if lowest:
            assert gw[2] == max(b[2] for b in inside) and home[3] == max(b[3] for b in node_boxes)
        else:
            assert gw[0] == min(b[0] for b in inside) and home[1] == min(b[1] for b in node_boxes)


def test_no_edge_runs_through_a_cluster_box_it_does_not_start_or_end_in(drawn):
    _, svg, _ = drawn
    clusters, nodes, edges = _layout(svg)
    tops = {name: box for name, box in clusters.items() if re.fullmatch(r"cluster_\d+", name)}
    home = {i: next((name for name, box in tops.items() if _inside(b, box)), "") for i, b in nodes.items()}
    between = []
    for (tail, head), path in edges.items():
        ends = {home[tail], home[head]}
        for name, box in tops.items():
            if name in ends:
                continue
            strictly = (box[0] + 2, box[1] + 2, box[2] - 2, box[3] - 2)
            assert not any(strictly[0] < x < strictly[2] and strictly[1] < y < strictly[3] for x, y in path), \
                (tail, head, name)
        if len(ends - {""}) > 1:
            between.append(ends)
    assert sorted(map(sorted, between)) == [["cluster_0", "cluster_1"], ["cluster_0", "cluster_2"]]  # failover; payments


def test_the_labels_do_not_cover_each_other(drawn):
    _, svg, _ = drawn
    boxes = []
    for chunk in EDGE.findall(svg):
        for x, y, text in re.findall(r'<text[^>]*\bx="(-?[\d.]+)" y="(-?[\d.]+)"[^>]*>([^<]+)</text>', chunk):
            width = len(html.unescape(text)) * 9 * labels.CHAR_WIDTH
            boxes.append((float(x) - width / 2, float(y) - 9, float(x) + width / 2, float(y)))
    assert len(boxes) >= 10
    assert [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if labels._overlap(a, b)] == []


# --- live: a gateway arrow only where a trace crossed ---------------------------------------------------------

class FleetLab:
    """A fresh stage-6 fleet as facts (its pods where placement puts them) whose traffic is a canned trace."""

    def __init__(self, crossing: bool):
        self.crossing = crossing
        self._pods, self._proxies = [], []
        for cluster in (C1, C2):
            for i, placed in enumerate(placement.place(6, cluster)):
                name = f"{placed.owner.split('/')[-1]}-{cluster[-1]}{i}"
                containers = [ContainerInfo(c["name"], c.get("image", ""), "running") for c in placed.containers]
                self._pods.append(PodInfo(name, placed.owner.split("/")[1], placed.node, "127.0.0.1", True, "Running",
                                          dict(placed.labels), containers, cluster))
                role = placed.labels.get("meshlab.io/proxy-role")
                if role or placed.sidecar:
                    self._proxies.append(ProxyInfo(name if role else f"{name}/istio-proxy", role or "sidecar", name,
                                                   placed.node, "running", cluster=cluster))

    def pods(self):
        return list(self._pods)

    def nodes(self):
        return [NodeInfo(f"node-{i}", "127.0.0.1", True, c) for c in (C1, C2) for i in (1, 2, 3)]

    def proxies(self):
        return list(self._proxies)

    def pod(self, cluster, app, version="v1"):
        return next(p for p in self._pods if p.cluster == cluster and p.labels.get("app") == app
                    and p.labels.get("version") == version)

    def path(self, *pods, count):
        edge = next(p for p in self._pods if p.labels.get("meshlab.io/proxy-role") == "edge")
        hops = [{"kind": "proxy", "role": "edge", "name": edge.name, "node": edge.node, "cluster": C1}]
        for i, pod in enumerate(pods):
            side = {"kind": "proxy", "role": "sidecar", "name": pod.name, "node": pod.node, "cluster": pod.cluster}
            hops += [{**side, "dir": "in"}, {"kind": "app", "service": pod.labels["app"], "version": "v1",
                                             "pod": pod.name, "node": pod.node, "cluster": pod.cluster}]
            if i < len(pods) - 1:
                hops.append({**side, "dir": "out"})
        return {"hops": hops, "count": count}

    def traffic(self, n=100, progress=None):
        front = self.pod(C1, "frontend")
        paths = [self.path(front, self.pod(C1, "reviews"), count=n - 10)]
        paths.append(self.path(front, self.pod(C2 if self.crossing else C1, "reviews"), count=10))
        return TrafficResult(requests=n, ok=n, paths=paths)


def _crossed(result) -> list[tuple[str, str]]:
    """(caller cluster, callee cluster) of every call in the traces that changed cluster."""
    return [(a["cluster"], b["cluster"]) for a, _, b in east_west(result) if a["cluster"] != b["cluster"]]


@pytest.mark.parametrize("crossing", [False, True], ids=["stayed-home", "crossed"])
def test_the_live_view_draws_a_gateway_arrow_only_where_a_trace_crossed(crossing):
    lab = FleetLab(crossing)
    assert _crossed(lab.traffic(100)) == ([(C1, C2)] if crossing else [])
    view = LiveView(lab, requests=100)
    assert view.send() and view.wait(10)
    topo = view.topology
    gateways = {p.cluster: p.id for p in topo.proxies if p.role == "gateway"}
    names = topo.names()
    touching = sorted((names[e.src], names[e.dst], e.count) for e in topo.edges
                      if e.kind == "call" and set(gateways.values()) & {e.src, e.dst})
    gw2 = names[gateways[C2]]
    front, reviews2 = f"{lab.pod(C1, 'frontend').name} sidecar", f"{lab.pod(C2, 'reviews').name} sidecar"
    assert touching == (sorted([(front, gw2, 10), (gw2, reviews2, 10)]) if crossing else [])
    source = diagrams.Diagram(topo).dot  # what is drawn: no call arrow at a gateway unless a trace crossed
    tips = dict(TOOLTIP.findall(source))
    gateway_ids = {i for i, tip in tips.items() if tip.startswith(deploy.GATEWAY_NAME)}
    assert len(gateway_ids) == 2
    arrows = re.findall(r"(n\d+) -> (n\d+) \[([^\]]*)\]", source)
    calls = [(a, b) for a, b, attrs in arrows if "invis" not in attrs and "arrowhead=vee" not in attrs
             and gateway_ids & {a, b}]
    assert len(calls) == (2 if crossing else 0)  # into cluster-2's gateway and out of it; into cluster-1's: none
