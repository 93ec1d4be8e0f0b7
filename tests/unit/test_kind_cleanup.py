"""`meshlab down --all` on kind, and a crashed run's leftover cluster: meshlab's clusters are found by marker file
or, with the marker gone, by node label; a cluster without the label is never deleted (fake runner, no Docker)."""

from __future__ import annotations

import json

import pytest
import yaml
from test_kube_backend import FakeRunner

from meshlab import cli, manifests
from meshlab.backends import kind, kindclean
from meshlab.backends.base import MeshlabError

LIST = ["kind", "get", "clusters"]
LABEL = "meshlab.io/owned=true"


def nodes_argv(cluster: str) -> list[str]:
    return ["kubectl", "--context", f"kind-{cluster}", "get", "nodes", "-l", LABEL, "-o", "name"]


def owner_argv(cluster: str) -> list[str]:
    return ["kubectl", "--context", f"kind-{cluster}", "-n", "kube-system", "get", "configmap", "meshlab-owner", "-o",
            "jsonpath={.data.home}"]


def delete(cluster: str) -> list[str]:
    return ["kind", "delete", "cluster", "--name", cluster]


def inspect(cluster: str) -> list[str]:
    return ["docker", "inspect", "--format", "{{.Id}}", f"{cluster}-control-plane"]


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def marker(home, cluster: str, **data):
    path = home / "kind" / f"{cluster}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cluster": cluster, "edge_port": 30123, "nodes": 2, **data}))
    return path


def down_all(runner, said=None):
    return kindclean.down_all(runner, progress=(said.append if said is not None else lambda m: None),
                              which=lambda tool: f"/usr/bin/{tool}")


def test_down_all_finds_a_cluster_without_its_marker_by_node_label():
    runner = FakeRunner().on(*LIST, stdout="kind\nmeshlab-kindtest\n")
    runner.on(*nodes_argv("meshlab-kindtest"), stdout="node/meshlab-kindtest-control-plane\nnode/meshlab-kindtest-worker\n")
    said = []
    done = down_all(runner, said)
    assert done.removed == ["meshlab-kindtest"] and done.left == []
    assert runner.argvs == [LIST, nodes_argv("meshlab-kindtest"), owner_argv("meshlab-kindtest"), delete("meshlab-kindtest")]
    assert "left by a crashed run?" in said[0]  # and the cluster called `kind` was never asked about


@pytest.mark.parametrize("reply, why", [
    (dict(stdout=""), "its nodes lack meshlab's label meshlab.io/owned=true"),
    (dict(stderr="error: context \"kind-meshlab-x\" does not exist", rc=1), "could not read its nodes' labels"),
])
def test_down_all_never_deletes_a_meshlab_named_cluster_without_the_label(reply, why):
    runner = FakeRunner().on(*LIST, stdout="meshlab-x\n").on(*nodes_argv("meshlab-x"), **reply)
    done = down_all(runner)
    assert done.removed == [] and delete("meshlab-x") not in runner.argvs
    [(cluster, message)] = done.left
    assert cluster == "meshlab-x" and why in message and "kind delete cluster --name meshlab-x" in message


def test_down_all_deletes_recorded_clusters_as_their_labs_would(state_home):
    marker(state_home, "meshlab-a", control_plane_id="id-a")
    marker(state_home, "meshlab-b", control_plane_id="id-b")  # recorded, but since made again by someone else
    marker(state_home, "meshlab-gone", control_plane_id="id-g")  # deleted by hand: only the record is left
    runner = FakeRunner().on(*LIST, stdout="meshlab-a\nmeshlab-b\n")
    runner.on(*inspect("meshlab-a"), stdout="id-a\n").on(*inspect("meshlab-b"), stdout="id-OTHER\n")
    done = down_all(runner)
    assert done.removed == ["meshlab-a"] and delete("meshlab-a") in runner.argvs and delete("meshlab-b") not in runner.argvs
    assert [c for c, _ in done.left] == ["meshlab-b"] and "not the one meshlab recorded" in done.left[0][1]
    assert sorted(p.stem for p in (state_home / "kind").glob("*.json")) == ["meshlab-b"]
    assert not [a for a in runner.argvs if "nodes" in a]  # recorded ids decide; no label needed


def test_down_all_takes_stage_6_members_down_first_and_reports_each(state_home):
    for member in ("cluster-1", "cluster-2"):
        marker(state_home, f"meshlab-t1-{member}", lab="t1", member=member, network="network-1", region="region-1",
               control_plane_id=f"id-{member}")
    runner = FakeRunner().on(*LIST, stdout="meshlab-t1-cluster-1\nmeshlab-t1-cluster-2\n")
    for member in ("cluster-1", "cluster-2"):
        runner.on(*inspect(f"meshlab-t1-{member}"), stdout=f"id-{member}\n")
    done = down_all(runner)
    assert done.removed == ["meshlab-t1-cluster-1", "meshlab-t1-cluster-2"] and done.left == []
    assert [a for a in runner.argvs if a[:2] == ["kind", "delete"]] == [delete("meshlab-t1-cluster-1"),
                                                                         delete("meshlab-t1-cluster-2")]


def test_down_all_leaves_a_cluster_that_another_living_meshlab_records(tmp_path):
    other = tmp_path / "other-home"
    marker(other, "meshlab-lesson", control_plane_id="id-l")
    runner = FakeRunner().on(*LIST, stdout="meshlab-lesson\n")
    runner.on(*nodes_argv("meshlab-lesson"), stdout="node/meshlab-lesson-control-plane\n")
    runner.on(*owner_argv("meshlab-lesson"), stdout=str(other))
    done = down_all(runner)
    assert done.removed == [] and delete("meshlab-lesson") not in runner.argvs
    assert done.left == [("meshlab-lesson", f"meshlab with MESHLAB_HOME={other} records it; to remove it run "
                                            f"`MESHLAB_HOME={other} meshlab down --all`")]
    (other / "kind" / "meshlab-lesson.json").unlink()  # that meshlab is gone (a test session's folder, removed)
    assert down_all(runner).removed == ["meshlab-lesson"]


def test_down_all_without_kind_asks_nothing_and_a_dead_docker_is_one_line():
    runner = FakeRunner()
    done = kindclean.down_all(runner, which=lambda tool: None)
    assert not done.checked and runner.calls == []
    dead = FakeRunner().on(*LIST, stderr="ERROR: failed to list clusters: command \"docker ps\" failed", rc=1)
    with pytest.raises(MeshlabError, match="kind get clusters: ERROR: failed to list clusters") as error:
        down_all(dead)
    assert "start Docker" in error.value.hint


def test_the_cli_reports_removed_and_left_clusters(monkeypatch, capsys):
    from meshlab.backends import local

    runner = FakeRunner().on(*LIST, stdout="meshlab-kindtest\nmeshlab-mine\n")
    runner.on(*nodes_argv("meshlab-kindtest"), stdout="node/meshlab-kindtest-control-plane\n")
    monkeypatch.setattr(local, "down_all", lambda: [])
    real = kindclean.down_all
    monkeypatch.setattr(kindclean, "down_all", lambda: real(runner, progress=lambda m: None, which=lambda tool: tool))
    assert cli.main(["down", "--all"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["removed 0 lab(s)", "removed 1 kind cluster(s): meshlab-kindtest"]
    assert out[2].startswith("left kind cluster meshlab-mine: its nodes lack meshlab's label")


# ---- a crashed run's cluster does not block the next one ----------------------------------------


def test_up_creates_a_labelled_cluster_with_no_record_again(state_home):
    runner = FakeRunner().on(*LIST, stdout="meshlab-kindtest\n").on("docker", "inspect", stdout="id-new\n")
    runner.on(*nodes_argv("meshlab-kindtest"), stdout="node/meshlab-kindtest-control-plane\n")
    said = []
    kind.KindBackend("kindtest", runner=runner, progress=said.append).up(nodes=2)
    assert runner.argvs.index(delete("meshlab-kindtest")) < runner.argvs.index(
        ["kind", "create", "cluster", "--name", "meshlab-kindtest", "--config", "-"])
    assert "no record of it (left by a crashed run?): creating it again" in said[0]
    assert json.loads((state_home / "kind" / "meshlab-kindtest.json").read_text())["control_plane_id"] == "id-new"


def test_up_records_its_state_folder_in_the_cluster(state_home):
    runner = FakeRunner().on("docker", "inspect", stdout="id-1\n")
    kind.KindBackend("t1", runner=runner, progress=lambda m: None).up(nodes=2)
    owner = list(yaml.safe_load_all(runner.inputs("apply")[0]))
    manifests.validate(owner, "owner record")
    assert owner == [kindclean.owner_record("meshlab-t1")]
    assert owner[0]["metadata"]["namespace"] == "kube-system" and owner[0]["data"]["home"] == str(state_home)
