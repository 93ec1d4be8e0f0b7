"""What the local runtime adds for stages 2-4: headless Services in the lab DNS, pod-local URLs in
env (HTTP_PROXY=http://127.0.0.1:15001 reaches the pod's own sidecar), and the app's bind address."""

from __future__ import annotations

import importlib.util

import pytest

from meshlab.backends.base import MeshlabError
from meshlab.backends.local import kinds, network
from meshlab.backends.local.pods import Pod
from meshlab.stages import shop

IPS = {("default", "reviews"): "127.9.0.10"}
NODES = {"node-1": "127.9.1.1"}
HEADLESS = {("default", "reviews-v2"): ["127.9.2.10", "127.9.3.11"], ("shop", "ratings-v1"): []}


def test_headless_services_resolve_to_their_ready_pod_ips():
    assert network.resolve("reviews-v2", IPS, NODES, HEADLESS) == ["127.9.2.10", "127.9.3.11"]
    assert network.resolve("reviews-v2.default.svc.cluster.local", IPS, NODES, HEADLESS) == HEADLESS[("default", "reviews-v2")]
    assert network.resolve("ratings-v1.shop", IPS, NODES, HEADLESS) == []  # no ready pod: NXDOMAIN
    assert network.resolve("reviews", IPS, NODES, HEADLESS) == ["127.9.0.10"]
    assert network.resolve("node-1", IPS, NODES, HEADLESS) == ["127.9.1.1"]


def test_headless_is_clusterip_none_only():
    svc = shop.service("reviews")
    assert not network.is_headless(svc)
    svc["spec"]["clusterIP"] = "None"
    assert network.is_headless(svc)
    kinds.check_supported(svc)
    svc["spec"]["clusterIP"] = "10.0.0.7"
    with pytest.raises(MeshlabError, match="clusterIP 10.0.0.7"):
        kinds.check_supported(svc)


def pod(tmp_path, env) -> Pod:
    spec = {"containers": [{"name": "app", "image": "python:3.12", "env": env}]}
    return Pod(name="web-abc", namespace="default", node="node-2", ip="127.9.2.14", host_ip="127.9.2.1",
               labels={}, spec=spec, owner="Deployment/default/web", template_hash="h", folder=tmp_path, dns=("127.9.0.2", 5353))


def test_env_urls_to_localhost_point_at_the_pod_and_host_ip_expands(tmp_path):
    env = [{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
           {"name": "NODE_PROXY", "value": "http://$(HOST_IP):15001"},
           {"name": "HTTP_PROXY", "value": "http://127.0.0.1:15001"},
           {"name": "OTHER", "value": "http://localhost/x"},
           {"name": "PLAIN", "value": "127.0.0.1"},
           {"name": "FAR", "value": "http://127.0.0.10:80"}]
    got = pod(tmp_path, env).env_for(pod(tmp_path, env).spec["containers"][0])
    assert got["NODE_PROXY"] == "http://127.9.2.1:15001"
    assert got["HTTP_PROXY"] == "http://127.9.2.14:15001"
    assert got["OTHER"] == "http://127.9.2.14/x"
    assert (got["PLAIN"], got["FAR"]) == ("127.0.0.1", "http://127.0.0.10:80")


def test_the_app_binds_its_pod_ip_locally_and_every_address_in_a_real_pod():
    spec = importlib.util.spec_from_file_location("shop_app", shop.APP_SOURCE)
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    assert app.bind_address("127.12.3.10") == "127.12.3.10"
    assert app.bind_address("10.244.1.7") == "0.0.0.0"  # so its sidecar reaches it at 127.0.0.1
    assert app.bind_address("") == "0.0.0.0"
