"""Stage 5 views: proxy-status states, waiting for a config to be taken, and convergence from ACK times."""

from __future__ import annotations

import pytest

from meshlab import mesh
from meshlab.backends.base import MeshlabError, PodInfo, ProxyInfo


class FakeBackend:
    """A control plane whose status moves on one step per proxy_status() call."""

    def __init__(self, steps, revision=5, caps=("mesh", "convergence")):
        self.steps, self.calls, self._revision, self.caps = list(steps), 0, revision, set(caps)

    def capabilities(self):
        return self.caps

    def revision(self):
        return self._revision

    def revision_time(self):
        return 1e9

    def parts(self):
        return [self]

    def proxy_status(self):
        step = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        return step


class FakeLab:
    def __init__(self, backend, pods=("a", "b")):
        self.backend = backend
        self.applied = []
        self._pods = [PodInfo(p, "default", "node-1", "127.9.1.1", True, "Running", {"app": p}) for p in pods]

    def pods(self):
        return self._pods

    def proxies(self):
        return [ProxyInfo(f"{p.name}/istio-proxy", "sidecar", p.name, "node-1", "running", "") for p in self._pods]

    def apply(self, text, source="<cell>", wait=30):
        self.applied.append(text)
        return [f"{line.split(':')[1].strip()}/x" for line in text.splitlines() if line.startswith("kind:")]


def entry(pod, version, acked, connected=True, nacked="", acked_at=0.0):
    return {"pod": pod, "namespace": "default", "connected": connected, "version": version, "acked": acked,
            "nacked": nacked, "nack_error": "bad listener" if nacked else "", "acked_at": acked_at}


@pytest.mark.parametrize("e, state", [
    (None, "NOT CONNECTED"),
    (entry("a", "v1", "v1", connected=False), "NOT CONNECTED"),
    (entry("a", "v1", "v1"), "SYNCED"),
    (entry("a", "v2", "v1"), "STALE"),
    (entry("a", "v2", "v1", nacked="v2"), "STALE"),
    (entry("a", "", ""), "STALE"),
])
def test_state_of_a_proxy(e, state):
    assert mesh.state_of(e) == state


def test_proxy_status_lists_every_sidecar_even_unconnected_ones():
    lab = FakeLab(FakeBackend([{"proxies": [entry("a", "v1", "v1")]}]))
    rows = mesh.proxy_status(lab)
    assert [(r.pod, r.state) for r in rows] == [("a", "SYNCED"), ("b", "NOT CONNECTED")]
    assert rows.by_state() == {"SYNCED": 1, "NOT CONNECTED": 1}
    assert "PROXY" in repr(rows) and "a/istio-proxy" in repr(rows)


def test_wait_synced_waits_for_the_build_and_every_ack():
    backend = FakeBackend([{"built_revision": 4, "proxies": [entry("a", "v1", "v1")]},
                           {"built_revision": 5, "proxies": [entry("a", "v2", "v1")]},
                           {"built_revision": 5, "proxies": [entry("a", "v2", "v2")]}])
    mesh.wait_synced(FakeLab(backend))
    assert backend.calls == 3


def test_wait_synced_gives_up_in_one_line():
    backend = FakeBackend([{"built_revision": 5, "proxies": [entry("a", "v2", "v1")]}])
    with pytest.raises(MeshlabError) as error:
        mesh.wait_synced(FakeLab(backend), timeout=0.1)
    assert "a" in str(error.value) and "\n" not in str(error.value)


def test_convergence_counts_only_the_proxies_whose_version_changed(monkeypatch):
    monkeypatch.setattr(mesh, "_serving", lambda lab, changed: True)  # no Envoy here; see envoy_versions' test
    before = {"built_revision": 4, "proxies": [entry("a", "v1", "v1"), entry("b", "w1", "w1")]}
    after = {"built_revision": 5, "proxies": [entry("a", "v2", "v2", acked_at=2e9), entry("b", "w1", "w1")]}
    lab = FakeLab(FakeBackend([before, after]))
    result = mesh.convergence(lab, "kind: VirtualService")
    assert list(result.proxies) == ["a"] and result.unchanged == 1 and lab.applied == ["kind: VirtualService"]


def test_convergence_of_an_mtls_change_returns_once_connections_opened_before_are_drained(monkeypatch):
    monkeypatch.setattr(mesh, "_serving", lambda lab, changed: True)
    drained = []
    monkeypatch.setattr(mesh, "wait_drained", lambda lab, docs: drained.append([d["kind"] for d in docs]))
    before = {"built_revision": 4, "proxies": [entry("a", "v1", "v1")]}
    after = {"built_revision": 5, "proxies": [entry("a", "v2", "v2", acked_at=2e9)]}
    mesh.convergence(FakeLab(FakeBackend([before, after])), "kind: PeerAuthentication")
    assert drained == [["PeerAuthentication"]]  # so an outside client is refused when convergence returns


def test_envoy_versions_reads_every_dynamic_resource():
    import json

    from fakehttp import QuietHandler, Server

    dump = {"configs": [{"dynamic_listeners": [{"active_state": {"version_info": "v7"}}]},
                        {"dynamic_active_clusters": [{"version_info": "v7"}, {"version_info": "v6"}]},
                        {"dynamic_route_configs": [{"version_info": "v7"}]}]}

    class Envoy(QuietHandler):
        def do_GET(self):
            self.send_body(200, dump)

    with Server(Envoy) as envoy:
        assert mesh.envoy_versions(envoy.url) == {"v6", "v7"}
    assert mesh.envoy_versions("http://127.0.0.1:1") == set()


def test_the_backend_is_chosen_once_for_every_notebook(monkeypatch):
    import meshlab

    monkeypatch.setenv("MESHLAB_BACKEND", "kind")
    assert meshlab.Lab("x").backend_name == "kind"
    assert meshlab.Lab("x", backend="local").backend_name == "local"
    monkeypatch.delenv("MESHLAB_BACKEND")
    assert meshlab.Lab("x").backend_name == "local"


def test_wait_synced_returns_at_once_when_the_control_plane_is_down(capsys):
    backend = FakeBackend([{"built_revision": 0, "proxies": [], "error": "the control plane does not answer: refused"}])
    mesh.wait_synced(FakeLab(backend), timeout=5)
    assert backend.calls == 1 and "not running" in capsys.readouterr().out


def test_wait_synced_waits_for_every_cluster_of_a_fleet():
    one = FakeBackend([{"built_revision": 5, "proxies": [entry("a", "v2", "v1")]},
                       {"built_revision": 5, "proxies": [entry("a", "v2", "v2")]}])
    two = FakeBackend([{"built_revision": 5, "proxies": [entry("b", "w1", "w1")]}])

    class Fleet(FakeBackend):
        def parts(self):
            return [one, two]

    mesh.wait_synced(FakeLab(Fleet([])))
    assert one.calls == 2 and two.calls == 1


def test_an_mtls_or_authorization_change_waits_for_open_connections_to_drain(monkeypatch):
    from meshlab import mesh

    slept = []
    monkeypatch.setattr(mesh.time, "sleep", slept.append)

    class Lab:
        class backend:
            @staticmethod
            def capabilities():
                return {"convergence", "mesh"}

    mesh.wait_drained(Lab, [{"kind": "VirtualService"}])
    assert slept == []  # routes change in place: nothing to drain
    mesh.wait_drained(Lab, [{"kind": "AuthorizationPolicy"}])
    assert slept == [mesh.DRAIN_S]
    Lab.backend.capabilities = staticmethod(lambda: {"mesh"})  # istiod on kind: its own drain, not waited for
    mesh.wait_drained(Lab, [{"kind": "PeerAuthentication"}])
    assert slept == [mesh.DRAIN_S]


def test_a_proxy_that_did_not_converge_says_which_type_is_behind(monkeypatch):
    monkeypatch.setattr(mesh.time, "time", lambda: 1000.0)
    entry = {"version": "v2", "types": {
        "Cluster": {"version_sent": "v2", "version_acked": "v2"},
        "Listener": {"version_sent": "v2", "version_acked": "v1", "pushed_at": 997.0},
        "RouteConfiguration": {"version_sent": "v2", "nacked": "v2", "nack_error": "bad regex"}}}
    assert mesh.behind(entry) == " (Listener: sent 3 s ago, not ACKed; RouteConfiguration: NACK bad regex)"
    assert mesh.behind({"version": "v2"}) == " (nothing pushed on this stream yet)"
