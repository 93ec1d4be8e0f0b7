"""Multi-primary sources: the control plane follows its own runtime and every peer a remote secret names."""

from __future__ import annotations

import threading
import time

from cpfakes import FakeSupervisor, abstract_name
from meshlab.controlplane import deploy, server, sources


def wait_until(predicate, timeout=5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.01)
    return predicate()


def state(cluster: str, pods=(), secrets=()) -> dict:
    return {"cluster": cluster, "network": f"net-{cluster}", "objects": list(secrets),
            "pods": [{"name": p, "namespace": "default"} for p in pods]}


def test_remote_secrets_are_labelled_configmaps_in_mesh_system_naming_another_cluster():
    secret = deploy.remote_secret("cluster-2", "network-2", "@meshlab-peer")
    unlabelled = {**secret, "metadata": {**secret["metadata"], "labels": {}}}
    elsewhere = {**secret, "metadata": {**secret["metadata"], "namespace": "default"}}
    itself = deploy.remote_secret("cluster-1", "network-1", "@meshlab-self")
    payload = {"cluster": "cluster-1", "objects": [secret, unlabelled, elsewhere, itself]}
    assert sources.remote_secrets(payload) == {"cluster-2": {"cluster": "cluster-2", "network": "network-2",
                                                             "api": "@meshlab-peer"}}


def test_the_peer_a_remote_secret_names_is_watched_and_delivered_with_the_own_state():
    own, peer = abstract_name("own"), abstract_name("peer")
    peer_sup = FakeSupervisor(sources.api_address(peer), state("cluster-2", ["reviews-b"]))
    own_sup = FakeSupervisor(sources.api_address(own), state("cluster-1", ["frontend-a"]))
    quiet = dict(poll_timeout=0.2, log=lambda line: None)
    watch = sources.ClusterWatch(sources.LocalWatch(sources.api_address(own), **quiet), "cluster-1", "network-1",
                                 log=lambda line: None)
    delivered: list[dict] = []
    stop = threading.Event()
    thread = threading.Thread(target=watch.run, args=(delivered.append, stop), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: delivered and delivered[-1]["remotes"] == [])  # no remote secret yet
        own_sup.set_state(state("cluster-1", ["frontend-a"], [deploy.remote_secret("cluster-2", "network-2", peer)]))
        assert wait_until(lambda: delivered[-1]["remotes"] and delivered[-1]["remotes"][0]["cluster"] == "cluster-2")
        assert [p["name"] for p in delivered[-1]["remotes"][0]["pods"]] == ["reviews-b"]
        assert delivered[-1]["revision"] == own_sup.revision  # the own revision: what proxy-status compares
        peer_sup.set_state(state("cluster-2", ["reviews-b", "reviews-c"]))
        assert wait_until(lambda: len(delivered[-1]["remotes"][0]["pods"]) == 2)
        own_sup.set_state(state("cluster-1", ["frontend-a"]))  # the secret deleted: the peer is forgotten
        assert wait_until(lambda: delivered[-1]["remotes"] == [])
        assert not watch.peers
    finally:
        stop.set()
        thread.join(2)
        own_sup.close()
        peer_sup.close()


def test_translate_merges_the_peers_states_only_when_the_source_gives_them(monkeypatch):
    from meshlab.controlplane import model, snapshot

    seen = []
    monkeypatch.setattr(model, "from_watches", lambda local, remotes: seen.append(("merge", local, remotes)) or "m")
    monkeypatch.setattr(model, "from_watch", lambda payload: seen.append(("one", payload)) or "m")
    monkeypatch.setattr(snapshot, "build_all", lambda m: {})
    server.translate({"revision": 3, "cluster": "cluster-1", "remotes": [{"cluster": "cluster-2"}]})
    server.translate({"revision": 4, "cluster": ""})
    assert seen == [("merge", {"revision": 3, "cluster": "cluster-1"}, [{"cluster": "cluster-2"}]),
                    ("one", {"revision": 4, "cluster": ""})]
