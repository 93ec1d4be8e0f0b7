"""The stage comparison: config objects per stage, failure choice, the table; and lesson 07's side-by-side run
(interleaved latency, one policy change the stage's way) against fake labs."""

from types import SimpleNamespace

import pytest
import yaml

from meshlab import compare, failover, manifests, settle
from meshlab import compare_multicluster as multi
from meshlab.failover import Failover
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


def test_stage_6_joins_the_side_by_side_run_only_on_the_local_backend(monkeypatch):
    monkeypatch.delenv("MESHLAB_BACKEND", raising=False)
    assert compare.default_stages() == (0, 1, 2, 3, 4, 5, 6)
    monkeypatch.setenv("MESHLAB_BACKEND", "kube")  # a classroom: one namespace of one cluster
    assert compare.default_stages() == compare.STAGES == (0, 1, 2, 3, 4, 5)


class StartedLab:
    """A Lab that records its ups, and fails when told to."""

    def __init__(self, name, fail=(), log=None):
        self.name, self.fail, self.log = name, fail, log

    def up(self, stage, quiet=False):
        self.log.append((stage, "up"))
        if stage in self.fail:
            raise RuntimeError(f"stage {stage} failed")

    def down(self):
        self.log.append(("down", self.name))


@pytest.mark.parametrize("fail", [(), (6,), (2,)])
def test_start_brings_every_lab_up_and_everything_down_if_one_fails(fail, monkeypatch):
    import meshlab

    log = []
    monkeypatch.setattr(meshlab, "Lab", lambda name: StartedLab(name, fail, log))
    if not fail:
        labs = compare.start((0, 2, 6))
        assert set(labs) == {0, 2, 6} and not [e for e in log if e[0] == "down"]
    else:
        with pytest.raises(RuntimeError, match=f"stage {fail[0]} failed"):
            compare.start((0, 2, 6))
        assert sorted(e[1] for e in log if e[0] == "down") == ["compare-0", "compare-2", "compare-6"]
    ups = dict(e for e in log if e[0] != "down")
    assert ups == {0: "up", 2: "up", 6: "up"}  # a fleet too, from a pool thread (its legacy process follows the
    # owner process, not the thread: tests/integration/test_outside_owner.py)


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
                            success_rate=1.0, config_objects=1, failure="", calls_failed="", blast="",
                            change="not possible: the edge never sees a call to ratings")
    assert "| not possible |" in compare.table([edge])
    edge.change = ""  # the benchmark measures no policy change: say so rather than "not possible"
    assert "| not measured |" in compare.table([edge])
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


# ---- stage 6: calls that cross, the failover, its table ---------------------------------------------------

def hop(service, cluster=None, kind="app"):
    out = {"kind": kind, "service": service, "pod": f"{service}-v1-{(cluster or 'x')[-1]}", "node": "node-1"}
    return {**out, "cluster": cluster} if cluster else out


def crossing_path(*apps):
    """App hops with a caller's and a callee's sidecar hop between each pair, as the traces have them."""
    hops = [apps[0]]
    for caller, callee in zip(apps, apps[1:]):
        hops += [{"kind": "proxy", "role": "sidecar", "dir": "out", "cluster": caller.get("cluster")},
                 {"kind": "proxy", "role": "sidecar", "dir": "in", "cluster": callee.get("cluster")}, callee]
    return hops


def test_a_call_is_local_or_crossing_by_the_clusters_of_its_app_hops():
    local = crossing_path(hop("frontend", "cluster-1"), hop("ratings", "cluster-1"))
    away = crossing_path(hop("frontend", "cluster-1"), hop("ratings", "cluster-2"))
    there_and_back = crossing_path(hop("frontend", "cluster-1"), hop("reviews", "cluster-2"), hop("ratings", "cluster-1"))
    assert (multi.side(local), multi.side(away), multi.side(there_and_back)) == ("local", "cross", "cross")
    assert (multi.crossings(local), multi.crossings(away), multi.crossings(there_and_back)) == (0, 1, 2)
    outside = crossing_path(hop("frontend", "cluster-1"), hop("payments"))  # the legacy host stamps no cluster
    assert multi.crossings(outside) == 0 and multi.side(outside) is None
    assert multi.side([hop("frontend", "cluster-1")]) is None  # no callee: the call failed
    assert multi.side([hop("frontend"), hop("ratings")]) is None  # one cluster, no stamps: nothing to tell


def test_proxies_on_a_path_count_the_gateway_of_each_crossing():
    stay = crossing_path(hop("frontend", "cluster-1"), hop("ratings", "cluster-1"))
    away = crossing_path(hop("frontend", "cluster-1"), hop("reviews", "cluster-2"), hop("ratings", "cluster-1"))
    result = TrafficResult(paths=[{"hops": stay, "count": 3}, {"hops": away, "count": 1}])
    assert compare.most_proxies(result) == 4 + 2  # four sidecar hops, and two gateways the traces cannot show
    assert compare.most_proxies(TrafficResult(paths=[{"hops": stay, "count": 1}])) == 2


def test_call_stats_split_the_samples_by_side():
    samples = [("local", float(ms)) for ms in range(1, 101)] + [("cross", 5.0), ("cross", 9.0), (None, 5000.0)]
    stats = multi.call_stats(samples)
    assert stats["local"] == {"calls": 100, "p50_ms": 50.0, "p99_ms": 99.0}
    assert stats["cross"] == {"calls": 2, "p50_ms": 5.0, "p99_ms": 9.0} and stats["failed"] == 1
    assert multi.call_stats([])["cross"] == {"calls": 0, "p50_ms": 0.0, "p99_ms": 0.0}


def test_calls_from_inside_a_pod_are_timed_and_classified_by_their_traces(monkeypatch):
    from fakehttp import QuietHandler, Server

    answers = [crossing_path(hop("frontend", "cluster-1"), hop("ratings", c)) for c in ("cluster-1", "cluster-2")]
    asked = []

    class Pod(QuietHandler):
        def do_GET(self):  # the app's /_meshlab/call: the first local, then crossing, then a failure
            asked.append(self.path)
            if len(asked) == 3:
                return self.send_body(200, {"status": 503, "paths": [answers[0][:1]]})
            self.send_body(200, {"status": 200, "paths": [answers[len(asked) - 1]]})

    with Server(Pod) as server:
        monkeypatch.setattr(multi, "APP_PORT", int(server.url.rsplit(":", 1)[1]))
        pod = SimpleNamespace(service="frontend", ready=True, ip="127.0.0.1")
        samples = multi.calls(SimpleNamespace(pods=lambda: [pod]), 3)
    assert [s for s, _ in samples] == ["local", "cross", None] and all(ms > 0 for _, ms in samples)
    assert asked[0] == "/_meshlab/call?url=http%3A%2F%2Fratings%3A9080%2F"
    with pytest.raises(Exception, match="no ready pod of frontend"):
        multi.calls(SimpleNamespace(pods=lambda: []), 1)


class FakeFleet(FakeLab):
    """A stage-6 lab: two clusters' proxies and pods, and what the failover does."""

    url = "http://edge"

    def __init__(self, crossing_before=0):
        super().__init__(6)
        self.crossing_before, self.deleted, self.restored, self.converged = crossing_before, [], 0, []
        self.dead = False  # cluster-1's reviews pods, killed by the failover measurement

    def proxies(self):
        return [SimpleNamespace(cluster=c, role=r) for c, r in
                [("cluster-1", "sidecar"), ("cluster-1", "gateway"), ("cluster-2", "sidecar"), ("cluster-2", "gateway")]]

    def pods(self):
        envoy = [SimpleNamespace(image="envoyproxy/envoy:v1.40.0", pid=None)]
        return [SimpleNamespace(name=f"reviews-v1-{c[-1]}", service="reviews", cluster=c, node="node-1",
                                containers=envoy, labels={"version": "v1"}, ready=True) for c in ("cluster-1", "cluster-2")]

    def traffic(self, n, concurrency, progress=False):
        where = "cluster-2" if self.dead or self.crossing_before else "cluster-1"
        path = crossing_path(hop("frontend", "cluster-1"), hop("reviews", where))
        return TrafficResult(requests=n, ok=n, paths=[{"hops": path, "count": n}])

    def convergence(self, text, source=""):
        self.converged.append(manifests.load(text))
        return SimpleNamespace(seconds=0.3)

    def delete(self, text, source=""):
        self.deleted.append(manifests.load(text))

    def restore(self):
        self.restored += 1
        self.dead = False


def test_stage_6_failure_times_the_failover_under_its_rule_then_restores_and_deletes_it(monkeypatch):
    lab = FakeFleet()

    def measure(lab_, service, home, other):
        assert (service, home, other) == ("reviews", "cluster-1", "cluster-2") and lab_.converged
        lab_.dead = True
        return Failover(killed=["reviews-v1-1"], requests=90, failed=2, switch_s=0.4)

    monkeypatch.setattr(failover, "measure", measure)
    kill, radius = compare.failure(lab, n=20)
    rule = lab.converged[0][0]["spec"]["trafficPolicy"]
    assert kill == {"pod": "reviews", "cluster": "cluster-1"} and "outlierDetection" in rule
    assert rule["loadBalancer"]["localityLbSetting"]["failover"] == [{"from": "region-1", "to": "region-2"}]
    assert lab.restored == 1 and lab.deleted and radius.killed_pods == {"reviews-v1-1": "node-1"}
    assert radius.failover.failed == 2 and failover.cluster_counts(radius.after) == {"cluster-2": 20}
    assert radius.out_of_reach == ["reviews-v1-1"]  # it served every call before, none after


def test_stage_6_failure_refuses_to_time_a_failover_when_calls_already_cross(monkeypatch):
    lab = FakeFleet(crossing_before=1)
    monkeypatch.setattr(failover, "measure", lambda *a: pytest.fail("nothing should be killed"))
    with pytest.raises(Exception, match="answered in cluster-2 with the locality rule in place"):
        compare.failure(lab)
    assert lab.deleted and not lab.restored  # the rule goes; nothing was killed, so nothing to restore


def test_stage_6_row_latency_and_change(monkeypatch):
    lab = FakeFleet()
    monkeypatch.setattr(multi, "calls", lambda lab_, n: [("local", 4.0)] * n + [("cross", 6.0)] * n)
    timing = compare.latency({6: lab}, rounds=2, n=3)[6]
    assert timing["calls"]["local"] == {"calls": 6, "p50_ms": 4.0, "p99_ms": 4.0} and timing["calls"]["failed"] == 0
    change = compare.policy_change(lab)
    assert change.objects == 1 and change.seconds == 0.3 and "both clusters" in change.what
    switch = Failover(killed=["a", "b", "c"], requests=120, failed=3, switch_s=0.456)
    radius = SimpleNamespace(failover=switch, after=TrafficResult(requests=10), failed_after=0, calls_after=30,
                             out_of_reach=["a"], verdict="nothing broke")
    row = compare.row(lab, timing, change, (dict(multi.KILL), radius))
    assert row.cross.clusters == {"cluster-1": {"proxies": 2, "gateways": 1, "proxy_memory_mb": 0.0},
                                  "cluster-2": {"proxies": 2, "gateways": 1, "proxy_memory_mb": 0.0}}
    assert (row.cross.killed, row.cross.failover_failed, row.cross.failover_s) == (3, 3, 0.46)
    assert row.to_dict()["cross"]["failover_requests"] == 120


def test_the_stage_6_table_sets_crossing_against_staying_home():
    stats = multi.call_stats([("local", 4.0), ("local", 4.0), ("cross", 6.0), ("cross", 10.0)])
    cross = multi.CrossCluster(clusters={"cluster-1": {"proxies": 9, "gateways": 1, "proxy_memory_mb": 600.4},
                                         "cluster-2": {"proxies": 6, "gateways": 1, "proxy_memory_mb": 410.0}},
                               calls=stats, killed=3, failover_requests=140, failover_failed=2, failover_s=0.42)
    six = compare.StageRow(stage=6, key="multicluster", pods=17, proxies=15, proxy_memory_mb=1010.4, p50_ms=30.0,
                           p99_ms=50.0, success_rate=1.0, config_objects=2, failure="pod=reviews, cluster=cluster-1",
                           calls_failed="0/60 requests", blast="nothing broke", hops=8, cross=cross)
    five = compare.StageRow(stage=5, key="control-plane", pods=9, proxies=8, proxy_memory_mb=500.0, p50_ms=20.0,
                            p99_ms=40.0, success_rate=1.0, config_objects=2, failure="", calls_failed="", blast="")
    assert "| 6 multicluster | 17 | 15 | 1010 |" in compare.table([five, six])
    lines = multi.table([five, six]).splitlines()
    assert len(lines) == 3 and lines[0].startswith("| stage | proxies (gateways)")  # stage 5 has no such figures
    assert lines[2] == ("| 6 multicluster | 9 (1) + 6 (1) | 600 + 410 | 4.0 / 4.0 (2) | 6.0 / 10.0 (2) | 1.50x | "
                        "2.50x | 2 of 140 requests (3 pods killed) | 0.42 s |")
    cross.calls, cross.failover_requests, cross.failover_s = {}, 0, None  # nothing measured: no ratio, no figure
    assert multi.table([six]).splitlines()[2].endswith("| none | none | - | - | not measured | - |")
