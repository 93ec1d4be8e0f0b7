"""kill(node=...) on kind: cordon, stop, force-delete the node's lab pods, so calls to them fail at once; restore()
starts, uncordons and waits. Exact command sequences through the fake runner (no Docker, no cluster)."""

from __future__ import annotations

import json

import pytest
from test_kube_backend import FakeRunner, items, pod

from meshlab.backends import kind
from meshlab.backends.base import MeshlabError

CLUSTER, CTX = "meshlab-t1", "kind-meshlab-t1"
KUBECTL = ["kubectl", "--context", CTX]
WORKER, WORKER2 = f"{CLUSTER}-worker", f"{CLUSTER}-worker2"
PS_EXITED = ["docker", "ps", "-a", "--filter", f"label=io.x-k8s.kind.cluster={CLUSTER}", "--filter", "status=exited",
             "--format", "{{.Names}}"]
ON_WORKER = [pod("reviews-v2-aaa", node=WORKER, labels={"app": "reviews", "version": "v2"}),
             pod("ratings-v1-bbb", node=WORKER, labels={"app": "ratings", "version": "v1"}),
             pod("istiod-ccc", node=WORKER, namespace="istio-system", labels={"app": "istiod"}),
             pod("frontend-v1-ddd", node=WORKER2, labels={"app": "frontend", "version": "v1"}),
             pod("coredns-eee", node=WORKER, namespace="kube-system")]


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path / "state"))
    path = tmp_path / "state" / "kind" / f"{CLUSTER}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"cluster": CLUSTER, "edge_port": 30123, "nodes": 3, "control_plane_id": "cp-1"}))
    return tmp_path / "state"


@pytest.fixture
def runner():
    runner = FakeRunner().on("kind", "get", "nodes", stdout=f"{CLUSTER}-control-plane\n{WORKER}\n{WORKER2}\n")
    return runner.on("get", "pods", stdout=items(*ON_WORKER))


def make(runner) -> kind.KindBackend:
    return kind.KindBackend("t1", runner=runner, edge_port=30123, progress=lambda m: None)


def marker(state_home) -> dict:
    return json.loads((state_home / "kind" / f"{CLUSTER}.json").read_text())


def test_kill_node_cordons_stops_then_force_deletes_the_lab_pods_there(runner, state_home):
    killed = make(runner).kill(node=WORKER)
    assert killed == ["reviews-v2-aaa", "ratings-v1-bbb", "istiod-ccc"]  # not the other node's, not kube-system's
    force = ["--grace-period=0", "--force", "--wait=false", "--ignore-not-found"]
    assert runner.argvs[2:] == [
        KUBECTL + ["cordon", WORKER],  # first: no replacement may be scheduled onto the dying node
        ["docker", "stop", WORKER],  # then down: its kubelet can no longer start anything there
        KUBECTL + ["-n", "default", "delete", "pod", "reviews-v2-aaa", "ratings-v1-bbb", *force],  # out of Endpoints now
        KUBECTL + ["-n", "istio-system", "delete", "pod", "istiod-ccc", *force],
    ]
    assert marker(state_home)["cordoned"] == [WORKER]


def test_restore_starts_the_node_uncordons_it_and_waits_for_ready(runner, state_home):
    backend = make(runner)
    backend.kill(node=WORKER)
    runner.on(*PS_EXITED, stdout=f"{WORKER}\n")
    runner.calls.clear()
    backend.restore()
    node_steps = [a for a in runner.argvs if a[:2] == ["docker", "start"] or "uncordon" in a or "wait" in a]
    assert node_steps == [["docker", "start", WORKER], KUBECTL + ["uncordon", WORKER],
                          KUBECTL + ["wait", "--for=condition=Ready", f"node/{WORKER}", "--timeout=180s"]]
    assert runner.argvs[0] == PS_EXITED and marker(state_home)["cordoned"] == []


def test_a_node_that_will_not_stop_is_uncordoned_again(runner, state_home):
    runner.on("docker", "stop", stderr="Error response from daemon: cannot stop container", rc=1)
    with pytest.raises(MeshlabError, match=f"docker stop {WORKER}: Error response from daemon"):
        make(runner).kill(node=WORKER)
    assert runner.argvs[-1] == KUBECTL + ["uncordon", WORKER] and not [a for a in runner.argvs if "delete" in a]
    assert marker(state_home)["cordoned"] == []


def test_restore_uncordons_a_node_a_half_done_kill_left_running(runner, state_home):
    runner.on("docker", "stop", raises=KeyboardInterrupt())  # Ctrl-C between the cordon and the stop
    backend = make(runner)
    with pytest.raises(KeyboardInterrupt):
        backend.kill(node=WORKER)
    runner.calls.clear()
    backend.restore()
    assert KUBECTL + ["uncordon", WORKER] in runner.argvs and ["docker", "start", WORKER] not in runner.argvs
    assert marker(state_home)["cordoned"] == []


def test_an_empty_node_is_still_killed_and_named(runner):
    assert make(runner).kill(node=WORKER2) == ["frontend-v1-ddd"]
    runner.on("get", "pods", stdout=items())
    assert make(runner).kill(node=WORKER2) == [f"node/{WORKER2}"]
    assert not [a for a in runner.argvs[-3:] if "delete" in a]


def test_the_control_plane_and_unknown_nodes_are_refused_before_anything_changes(runner, state_home):
    with pytest.raises(MeshlabError, match=f"refusing to stop {CLUSTER}-control-plane"):
        make(runner).kill(node=f"{CLUSTER}-control-plane")
    with pytest.raises(MeshlabError, match="no node nope"):
        make(runner).kill(node="nope")
    assert not [a for a in runner.argvs if "cordon" in a or "stop" in a] and "cordoned" not in marker(state_home)
