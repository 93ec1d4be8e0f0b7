"""Automatic sidecar injection on the local runtime (Istio's webhook): which pods get istio-proxy, what it
runs, what the app gets, the stored Deployment left alone, $(VAR) in args, and inbound capture."""

from __future__ import annotations

import asyncio
import copy
import json
import stat
from pathlib import Path

import pytest

from meshlab.backends.local import inject
from meshlab.backends.local.pods import Pod, expand_refs
from meshlab.backends.local.runtime import Runtime, key_of
from meshlab.stages import shop
from meshlab.stages.envoyconf import ENVOY_IMAGE

ON, OFF = {"istio-injection": "enabled"}, {}


@pytest.mark.parametrize("labels, annotations, namespace, injected", [
    ({}, {}, ON, True),
    ({}, {}, OFF, False),
    ({}, {}, {"istio-injection": "disabled"}, False),
    ({inject.INJECT_KEY: "true"}, {}, OFF, True),
    ({}, {inject.INJECT_KEY: "true"}, OFF, True),
    ({inject.INJECT_KEY: "false"}, {}, ON, False),
    ({}, {inject.INJECT_KEY: "false"}, ON, False),
    ({inject.INJECT_KEY: "false"}, {inject.INJECT_KEY: "true"}, OFF, False),  # the label wins, as in Istio
    ({}, {inject.INJECT_KEY: "maybe"}, ON, True),
])
def test_which_pods_get_a_sidecar(labels, annotations, namespace, injected):
    meta = {"labels": {"app": "reviews", **labels}, "annotations": annotations}
    assert inject.wants_injection(meta, namespace) is injected
    _, spec = inject.inject(meta, {"containers": [app()]}, namespace)
    assert [c["name"] for c in spec["containers"]] == (["app", "istio-proxy"] if injected else ["app"])


def app(**extra) -> dict:
    return {**shop.app_container("reviews", "v1", ["http://ratings:9080/"]), **extra}


def injected_pod(namespace_labels=ON):
    meta = {"labels": {"app": "reviews", "version": "v1"}}
    return inject.inject(meta, {"containers": [app()]}, namespace_labels)


def test_the_sidecar_container_its_env_ports_probe_and_marker():
    meta, spec = injected_pod()
    proxy = spec["containers"][1]
    assert proxy["image"] == ENVOY_IMAGE == "envoyproxy/envoy:v1.40.0"
    assert proxy["args"][0] == "--config-yaml" and proxy["args"][2:] == [
        "--concurrency", "1", "-l", "warning", "--drain-time-s", "1", "--drain-strategy", "immediate"]
    fields = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in proxy["env"]}
    assert fields == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_IP": "status.podIP",
                      "NODE_NAME": "spec.nodeName", "SERVICE_ACCOUNT": "spec.serviceAccountName"}
    assert {p["containerPort"] for p in proxy["ports"]} == {15001, 15006, 15000}
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 15000}
    assert json.loads(meta["annotations"][inject.STATUS_KEY])["containers"] == ["istio-proxy"]
    assert {"name": "HTTP_PROXY", "value": "http://127.0.0.1:15001"} in spec["containers"][0]["env"]
    assert {"name": "MESHLAB_CAPTURED", "value": "1"} in spec["containers"][0]["env"]  # the app still resolves names
    assert inject.inject(meta, spec, ON) == (meta, spec)  # injecting twice changes nothing


def test_an_app_that_sets_its_own_proxy_keeps_it():
    own = app(env=[{"name": "HTTP_PROXY", "value": "http://elsewhere:1"}])
    _, spec = inject.inject({"labels": {"app": "x"}}, {"containers": [own]}, ON)
    assert [e for e in spec["containers"][0]["env"] if e["name"] in ("HTTP_PROXY", "MESHLAB_CAPTURED")] == own["env"]


def test_the_bootstrap_names_the_node_as_istio_and_gets_everything_else_over_ads():
    boot = inject.bootstrap("reviews")
    assert boot["node"] == {"id": "sidecar~$(POD_IP)~$(POD_NAME).$(POD_NAMESPACE)~$(POD_NAMESPACE).svc.cluster.local",
                            "cluster": "reviews"}
    # without a first config Envoy must stay unready however long the control plane is away (the default
    # initial_fetch_timeout of 15 s would make it report ready with no listeners at all)
    assert boot["dynamic_resources"]["lds_config"] == boot["dynamic_resources"]["cds_config"] == {
        "ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"}
    (cluster,) = boot["static_resources"]["clusters"]
    assert cluster["cluster_type"]["name"] == "envoy.clusters.dns" and cluster["connect_timeout"] == "1s"
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert address == {"address": "meshlab-controlplane.mesh-system.svc.cluster.local", "port_value": 15010}


def make_pod(tmp_path, meta, spec) -> Pod:
    return Pod(name="reviews-v1-abc-xyz12", namespace="shop", node="node-2", ip="127.9.2.10", host_ip="127.9.2.1",
               labels=meta["labels"], spec=spec, owner="Deployment/shop/reviews-v1", template_hash="h",
               folder=tmp_path / "pod", dns=("127.9.0.2", 5353), annotations=meta.get("annotations") or {},
               api="@meshlab-abc")


def test_the_local_sidecar_runs_its_bootstrap_expanded_and_patched(tmp_path):
    meta, spec = injected_pod()
    spec["serviceAccountName"] = "shop-reviews"
    pod = make_pod(tmp_path, meta, spec)
    argv = pod.argv_for(spec["containers"][1])
    assert "--config-yaml" not in argv and pod.token not in " ".join(argv)  # `ps` shows no bootstrap, no token
    path = Path(argv[argv.index("-c") + 1])
    assert path.parent == pod.folder and stat.S_IMODE(path.stat().st_mode) == 0o600
    config = json.loads(path.read_text())
    ads = config["dynamic_resources"]["ads_config"]["grpc_services"][0]
    assert ads["initial_metadata"] == [{"key": "authorization", "value": f"Bearer {pod.token}"}]
    assert config["node"]["id"] == "sidecar~127.9.2.10~reviews-v1-abc-xyz12.shop~shop.svc.cluster.local"
    assert config["admin"]["address"]["socket_address"] == {"address": "127.9.2.10", "port_value": 15000}
    assert config["typed_dns_resolver_config"]["typed_config"]["resolvers"][0]["socket_address"]["address"] == "127.9.0.2"
    assert pod.container("istio-proxy").admin == "http://127.9.2.10:15000"
    proxy_env, app_env = pod.env_for(spec["containers"][1]), pod.env_for(spec["containers"][0])
    assert proxy_env["SERVICE_ACCOUNT"] == "shop-reviews" and proxy_env["POD_NAMESPACE"] == "shop"
    assert app_env["HTTP_PROXY"] == "http://127.9.2.10:15001"  # the pod-local URL rewrite
    assert app_env["MESHLAB_API"] == proxy_env["MESHLAB_API"] == "@meshlab-abc"
    from meshlab.envoy import validate
    assert asyncio.run(validate.check(config)) is None  # real Envoy accepts it


@pytest.mark.parametrize("text, expected", [
    ("--ip=$(POD_IP)", "--ip=127.9.2.10"),
    ("$(POD_NAME).$(NS)", "web.shop"),
    ("$$(POD_IP) costs $$5", "$(POD_IP) costs $5"),
    ("$(UNKNOWN) stays", "$(UNKNOWN) stays"),
    ("$(PATH)", "$(PATH)"),  # only the container's declared env expands
])
def test_command_and_args_expand_var_refs_as_the_kubelet(tmp_path, text, expected):
    assert expand_refs(text, {"POD_IP": "127.9.2.10", "POD_NAME": "web", "NS": "shop"}) == expected
    container = {"name": "app", "image": "python:3.12", "command": ["python", "-m", "mod"], "args": [text],
                 "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                         {"name": "POD_NAME", "value": "web"}, {"name": "NS", "value": "shop"}]}
    pod = make_pod(tmp_path, {"labels": {}}, {"containers": [container]})
    argv = pod.argv_for(container)
    assert argv[1:3] == ["-m", "mod"] and argv[3] == expected


# ---- in the runtime: the pod is mutated, the Deployment is not; inbound capture ----------------

class Running:
    def poll(self):
        return None


def runtime(tmp_path, namespace_labels) -> Runtime:
    rt = Runtime(tmp_path, 9, 2, {})
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": namespace_labels}},
            shop.deployment("reviews", "v1", 1, [app()], [], "shop"), shop.service("reviews", "shop")]
    for doc in docs:
        rt.objects[key_of(doc)] = doc
    return rt


def make_ready(pod: Pod) -> None:
    for c in pod.containers:
        c.proc = Running()
        pod.probe_ok[c.name] = True


@pytest.mark.parametrize("labels, target", [(ON, 15006), (OFF, 9080)])
def test_pods_are_mutated_at_creation_and_endpoints_enter_the_sidecar(tmp_path, labels, target):
    rt = runtime(tmp_path, labels)
    stored = copy.deepcopy(rt.objects[("Deployment", "shop", "reviews-v1")])
    rt._sync_workloads()
    (pod,) = rt.pods.values()
    assert rt.objects[("Deployment", "shop", "reviews-v1")] == stored  # the webhook mutates pods only
    assert [c.name for c in pod.containers] == (["app", "istio-proxy"] if labels else ["app"])
    assert inject.is_injected(pod.annotations) is bool(labels)
    assert rt.endpoints("shop", "reviews", 9080) == []  # not ready yet
    make_ready(pod)
    assert rt.endpoints("shop", "reviews", 9080) == [(pod.ip, target)]
    pod.deleting = True  # terminating: out of the endpoints at once
    assert rt.endpoints("shop", "reviews", 9080) == []
