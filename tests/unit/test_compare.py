"""The stage comparison's pure parts: config objects per stage, failure choice, the table."""

from types import SimpleNamespace

from meshlab import compare


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
