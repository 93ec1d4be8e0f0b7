"""The snapshot cache: inconsistent snapshots are refused, and every push, ACK and NACK is bookkept."""

from __future__ import annotations

from dataclasses import dataclass, field

from meshlab.controlplane import cache

NODE = "sidecar~127.20.1.10~reviews-v2-7d4f9-abcde.default~default.svc.cluster.local"
CDS, LDS, EDS = cache.CLUSTER_TYPE, cache.LISTENER_TYPE, "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


@dataclass
class Snapshot:
    """The shape of meshlab.controlplane.snapshot.Snapshot."""

    version: str
    resources: dict = field(default_factory=lambda: {CDS: {"c": {}}, LDS: {"l": {}}})
    dangling: list = field(default_factory=list)

    def consistent(self) -> list[str]:
        return list(self.dangling)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def row(snapshots: cache.SnapshotCache) -> dict:
    return next(p for p in snapshots.status()["proxies"] if p["node_id"] == NODE)


def test_inconsistent_snapshot_is_refused_and_the_old_one_kept():
    snapshots = cache.SnapshotCache()
    assert snapshots.set(NODE, Snapshot("v1"), revision=3)
    bad = Snapshot("v2", dangling=["route 9080 names cluster outbound|9080||ratings.default.svc.cluster.local"])
    assert not snapshots.set(NODE, bad, revision=4)
    assert snapshots.get(NODE).version == "v1"
    status = row(snapshots)
    assert status["version"] == "v1" and status["built_revision"] == 3
    assert "v2 refused" in status["refused"] and "ratings" in status["refused"]
    assert snapshots.set(NODE, Snapshot("v3"), revision=5)
    assert row(snapshots)["refused"] == "" and row(snapshots)["built_revision"] == 5


def test_watchers_wake_only_when_the_version_changes():
    snapshots = cache.SnapshotCache()
    woken = []
    unwatch = snapshots.watch(NODE, lambda: woken.append(1))
    snapshots.set(NODE, Snapshot("v1"))
    snapshots.set(NODE, Snapshot("v1"), revision=9)
    assert len(woken) == 1 and row(snapshots)["built_revision"] == 9
    snapshots.set(NODE, Snapshot("v2", dangling=["x"]))
    assert len(woken) == 1
    unwatch()
    snapshots.set(NODE, Snapshot("v3"))
    assert len(woken) == 1


def test_ack_bookkeeping_needs_every_type():
    clock = Clock()
    snapshots = cache.SnapshotCache(clock=clock)
    snapshots.set(NODE, Snapshot("v1"))
    snapshots.connected(NODE)
    snapshots.pushed(NODE, CDS, "v1", "1")
    clock.now = 1000.5
    snapshots.acked(NODE, CDS, "v1")
    assert row(snapshots)["acked"] == ""  # the listeners are not there yet
    snapshots.pushed(NODE, EDS, "v1", "2")
    snapshots.pushed(NODE, LDS, "v1", "3")
    snapshots.acked(NODE, EDS, "v1")
    clock.now = 1001.0
    snapshots.acked(NODE, LDS, "v1")
    status = row(snapshots)
    assert status["acked"] == "v1" and status["acked_at"] == 1001.0 and status["pushed_at"] == 1000.5
    assert status["connected"] and status["pod"] == "reviews-v2-7d4f9-abcde" and status["namespace"] == "default"
    assert status["types"]["Listener"] == {"version_sent": "v1", "nonce": "3", "version_acked": "v1", "nacked": "",
                                           "nack_error": "", "pushed_at": 1000.5, "acked_at": 1001.0}
    snapshots.acked(NODE, cache.SECRET_TYPE, "s1")
    assert row(snapshots)["acked"] == "v1"


def test_nack_is_recorded_and_cleared_by_a_later_ack():
    snapshots = cache.SnapshotCache()
    snapshots.set(NODE, Snapshot("v1"))
    snapshots.connected(NODE)
    for kind in (CDS, LDS):
        snapshots.pushed(NODE, kind, "v1", "1")
        snapshots.acked(NODE, kind, "v1")
    snapshots.set(NODE, Snapshot("v2"))
    snapshots.pushed(NODE, CDS, "v2", "2")
    snapshots.acked(NODE, CDS, "v2")
    snapshots.pushed(NODE, LDS, "v2", "3")
    snapshots.nacked(NODE, LDS, "v2", "Proto constraint validation failed: StatPrefix")
    status = row(snapshots)
    assert (status["version"], status["acked"], status["nacked"]) == ("v2", "v1", "v2")
    assert "StatPrefix" in status["nack_error"]
    snapshots.set(NODE, Snapshot("v3"))
    for kind in (CDS, LDS):
        snapshots.pushed(NODE, kind, "v3", "9")
        snapshots.acked(NODE, kind, "v3")
    status = row(snapshots)
    assert (status["acked"], status["nacked"], status["nack_error"]) == ("v3", "", "")


def test_status_document_and_forgetting_gone_proxies():
    snapshots = cache.SnapshotCache()
    other = "sidecar~127.20.1.11~ratings-v1-x.default~default.svc.cluster.local"
    snapshots.observed(7)
    snapshots.set(NODE, Snapshot("v1"), revision=7)
    snapshots.set(other, Snapshot("v1"), revision=7)
    snapshots.built(7)
    snapshots.connected(NODE)
    status = snapshots.status()
    assert status["revision"] == status["built_revision"] == 7 and status["version"]
    assert [p["node_id"] for p in status["proxies"]] == sorted([NODE, other])
    snapshots.observed(8)
    snapshots.built(8, error="VirtualService reviews: http[0].route[0].destination.host: required")
    snapshots.retain([])
    status = snapshots.status()
    assert status["revision"] == 8 and status["built_revision"] == 7 and "reviews" in status["error"]
    assert [p["node_id"] for p in status["proxies"]] == [NODE]  # still connected: listed, no snapshot
    assert status["proxies"][0]["version"] == ""
    snapshots.disconnected(NODE)
    assert snapshots.status()["proxies"] == []


def test_parse_node_id():
    assert cache.parse_node_id(NODE) == ("reviews-v2-7d4f9-abcde", "default")
    assert cache.parse_node_id("sidecar~1.2.3.4~a.b.c~c.svc.cluster.local") == ("a.b", "c")
    assert cache.parse_node_id("edge-1") == ("", "")
