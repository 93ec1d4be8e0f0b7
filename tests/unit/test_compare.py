"""The stage comparison: config objects per stage, failure choice, the table; and lesson 07's side-by-side run
(interleaved latency, one policy change the stage's way) against fake labs."""

from types import SimpleNamespace

import pytest
import yaml

from meshlab import compare, manifests, settle
from meshlab.traffic import TrafficResult


def test_config_objects_grow_with_the_proxies_to_configure():
    counts = {stage: compare.config_objects(stage) for stage in range(5)}
    assert counts[0] == 0  # no proxy, nothing to configure
    assert counts[1] == 1  # one Ingress
    assert counts[2] == counts[3] == 2  # the Ingress and one shared proxy config
    assert counts[4] > counts[3]  # one sidecar config per service version, kept by hand


def test_node_failure_avoids_the_node_of_the_entry_pod():
    pod = SimpleNamespace(service="frontend", node="node-2")
    nodes = [SimpleNamespace(name=f"node-{i}") for i in (1, 2, 3)]
    lab = SimpleNamespace(pods=lambda: [pod], nodes=lambda: nodes)
    assert compare.failure_for(lab, 3) == {"proxy": "node", "node": "node-3"}
    assert compare.failure_for(lab, 2) == {"proxy": "router"}


def test_table_has_one_row_per_stage():
    row = compare.StageRow(stage=1, key="edge", pods=8, proxies=1, proxy_memory_mb=65.2, p50_ms=16.8, p99_ms=33.5,
                           success_rate=1.0, config_objects=1, failure="proxy=edge", calls_failed="200/200", blast="x")
    text = compare.table([row, row])
    assert text.count("| 1 edge | 8 | 1 | 65 |") == 2 and text.splitlines()[0].startswith("| stage")


def test_rss_of_a_missing_process_is_zero():
    assert compare.rss_mb(None) == 0.0 and compare.rss_mb(2 ** 22 + 12345) == 0.0


# ---- the side-by-side run (lesson 07), against fake labs ------------------------------------------------


class FakeLab:
    """A lab of one stage that records what is applied, restarted and sent."""

    def __init__(self, stage, log=None):
        self.stage, self.log = stage, log if log is not None else []
        self.applied, self.restarted = [], []

    def traffic(self, n, concurrency, progress=False):
        self.log.append((self.stage, n))
        hops = [{"kind": "proxy"}] * self.stage + [{"kind": "app"}]
        return TrafficResult(requests=n, ok=n, latency_ms={"p50": 10.0 + self.stage, "p90": 0.0, "p99": 20.0 + n},
                             paths=[{"hops": hops, "count": n}])

    def apply(self, text, source=""):
        self.applied.append(manifests.load(text))

    def restart(self, ref):
        self.restarted.append(ref)

    def convergence(self, text, source=""):
        self.applied.append(manifests.load(text))
        return SimpleNamespace(seconds=0.4)


def test_latency_takes_the_stages_in_turn_and_keeps_the_medians():
    log = []
    labs = {s: FakeLab(s, log) for s in (0, 3, 4)}
    timing = compare.latency(labs, rounds=2, n=7)
    assert log[3:] == [(0, 7), (3, 7), (4, 7), (0, 7), (3, 7), (4, 7)]  # interleaved, after a warm-up each
    assert timing[3] == {"p50_ms": 13.0, "p99_ms": 27.0, "success_rate": 1.0, "hops": 3}


@pytest.mark.parametrize("stage, objects, names", [
    (2, 1, ["router-envoy"]), (3, 1, ["node-proxy-envoy"]),
    (4, 2, ["sidecar-reviews-v2", "sidecar-reviews-v3"]), (5, 1, ["ratings-retries"])])
def test_one_policy_change_edits_what_the_stage_needs(stage, objects, names, monkeypatch):
    waited = []
    monkeypatch.setattr(settle, "wait_config", lambda lab, **kw: waited.append(kw) or True)
    lab = FakeLab(stage)
    change = compare.policy_change(lab)
    assert change.objects == objects and change.seconds is not None and change.seconds >= 0
    assert [d["metadata"]["name"] for docs in lab.applied for d in docs] == names
    text = yaml.safe_dump(lab.applied)
    assert f"num_retries: {compare.RETRIES}" in text or f"attempts: {compare.RETRIES}" in text
    if stage in (2, 3, 4):
        assert all(kw["has"] == f'"num_retries": {compare.RETRIES}' for kw in waited) and waited


def test_policy_change_without_a_proxy_redeploys_the_callers_and_the_edge_cannot():
    lab = FakeLab(0)
    change = compare.policy_change(lab)
    assert lab.restarted == ["deployment/reviews-v2", "deployment/reviews-v3"] and change.objects == 2
    edge = compare.policy_change(FakeLab(1))
    assert edge.objects is None and edge.seconds is None and "never sees" in edge.what


def test_a_row_table_and_chart_from_the_measurements():
    r = compare.StageRow(stage=4, key="sidecar", pods=8, proxies=8, proxy_memory_mb=525.0, p50_ms=16.8,
                         p99_ms=49.0, success_rate=1.0, config_objects=7, failure="proxy=sidecar", calls_failed="x",
                         blast="one pod", hops=6, change_objects=2, change_seconds=1.04, out_of_reach=1, app_pods=7)
    line = compare.table([r]).splitlines()[2]
    assert "| 6 | 2 in 1.0 s |" in line and line.endswith("| 1 of 7 |")
    edge = compare.StageRow(stage=1, key="edge", pods=8, proxies=1, proxy_memory_mb=64.0, p50_ms=18.0, p99_ms=66.0,
                            success_rate=1.0, config_objects=1, failure="", calls_failed="", blast="")
    assert "| not possible |" in compare.table([edge])
    chart = compare.chart([r, edge])
    assert chart.count("<b>") == len(compare.CHART) and "n/a" in chart and "525.0 MiB" in chart


def test_service_hop_times_the_pod_and_its_cluster_ip_in_turn():
    from fakehttp import QuietHandler, Server

    class Handler(QuietHandler):
        def do_GET(self):
            self.send_body(200, {"ok": True})

    with Server(Handler) as server:
        host, port = server.url.removeprefix("http://").split(":")
        pod = SimpleNamespace(service="ratings", ready=True, ip=host)
        lab = SimpleNamespace(pods=lambda: [pod], backend=SimpleNamespace(service_url=lambda s, p: server.url))
        measured = compare.service_hop(lab, port=int(port), n=5)
    assert set(measured) == {"direct_ms", "cluster_ip_ms"} and all(v > 0 for v in measured.values())
