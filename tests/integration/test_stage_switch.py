"""Changing stage on a running lab gives exactly the new stage (the old stage's objects and processes go;
a learner's own objects stay only with keep=True), and restore() returns once the lab serves again.

One local lab for the module, taken down by its last test, which checks for leaks."""

from __future__ import annotations

import pytest

from meshlab.backends.local import procs
from traces import east_west
from labs import running

pytestmark = pytest.mark.integration
NOTES = """apiVersion: v1
kind: ConfigMap
metadata: {name: learner-notes}
data: {note: mine}
"""


@pytest.fixture(scope="module")
def lab():
    with running("switch", "router") as lab:
        yield lab


def configmaps(lab) -> set[str]:
    return {cm["metadata"]["name"] for cm in lab.backend.objects("ConfigMap")}


def test_a_new_stage_on_a_running_lab_removes_the_old_stages_objects_and_processes(lab):
    routers = [p for p in lab.pods() if p.service == "router"]
    pids = [(c.pid, procs.start_time(c.pid)) for p in routers for c in p.containers if c.pid]
    assert len(routers) == 2 and len(pids) == 2
    lab.apply(NOTES)
    lab.up(stage="per-node", keep=True, quiet=True)
    assert not [p for p in lab.pods() if p.service == "router"]
    assert [p.role for p in lab.proxies() if p.role in ("router", "node")] == ["node"] * 3
    assert not [pid for pid in pids if procs.is_same_process(*pid)], "a router process still runs"
    assert "router-envoy" not in configmaps(lab) and "learner-notes" in configmaps(lab)  # keep=True: the learner's stays
    assert not [s for s in lab.backend.objects("Service") if s["metadata"]["name"] == "router"]
    result = lab.traffic(n=40)
    assert result.ok == 40, str(result)
    assert {h["role"] for _, hops, _ in east_west(result) for h in hops} == {"node"}
    lab.up(stage="per-node", quiet=True)  # the stage's starting state: no object of the learner's
    assert "learner-notes" not in configmaps(lab)


def test_restore_returns_when_the_lab_serves_again(lab):
    assert lab.stage == 3
    node = next(p.node for p in lab.pods() if p.service == "reviews" and p.version == "v2")
    lab.kill(node=node)
    lab.restore()
    result = lab.traffic(n=60, concurrency=4)
    assert result.ok == 60, str(result)
    lab.kill(proxy="node")
    lab.restore()
    result = lab.traffic(n=60, concurrency=4)
    assert result.ok == 60, str(result)


def test_from_the_control_plane_stage_to_sidecars_no_control_plane_is_left(lab):
    lab.up(stage="control-plane", quiet=True)
    assert [p for p in lab.pods() if p.namespace == "mesh-system"]
    lab.up(stage="sidecar", quiet=True)
    assert not [p for p in lab.pods() if p.namespace == "mesh-system"], "the control plane still runs"
    assert not [p for p in lab.pods() if any(c.name == "istio-proxy" for c in p.containers)], "an injected pod is left"
    result = lab.traffic(n=40)
    assert result.ok == 40, str(result)


def test_down_leaves_nothing(lab, no_leaks):
    lab.down()
