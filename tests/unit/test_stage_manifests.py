"""The manifests of stages 0-5: valid Kubernetes, inside the local subset, wired the way each stage
says (who proxies what), and Envoy configs that Envoy itself accepts."""

from __future__ import annotations

import asyncio

import pytest
import yaml

import meshlab
from meshlab import manifests, stages
from meshlab.backends.local import envoy_patch, kinds
from meshlab.stages import envoyconf, pernode, router, shop, sidecar

STAGES = [0, 1, 2, 3, 4, 5]


def of_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def named(docs, kind, name):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def app_deployments(docs):
    return [d for d in of_kind(docs, "Deployment") if "version" in d["spec"]["template"]["metadata"]["labels"]]


def containers(doc):
    return doc["spec"]["template"]["spec"]["containers"]


def env(container) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def envoy_configmaps(docs):
    return [d for d in of_kind(docs, "ConfigMap") if "envoy.yaml" in d["data"]]


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_is_registered_valid_and_runs_locally(stage):
    assert stage in stages.deployable()
    docs = stages.documents(stage)
    manifests.validate(docs, f"stage {stage}")
    for doc in docs:
        kinds.check_supported(doc, f"stage {stage}")
    assert manifests.load(stages.yaml_text(stage)) == docs  # the YAML a learner reads is what runs
    assert len({(d["kind"], d["metadata"]["name"]) for d in docs}) == len(docs)


@pytest.mark.parametrize("stage", STAGES)
def test_the_shop_is_in_every_stage(stage):
    docs = stages.documents(stage)
    assert sorted(d["metadata"]["name"] for d in app_deployments(docs)) == sorted(f"{s}-{v}" for s, v, _, _ in shop.SHOP)
    assert {"frontend", "catalog", "reviews", "ratings"} <= {d["metadata"]["name"] for d in of_kind(docs, "Service")}
    assert bool(of_kind(docs, "Ingress")) == (stage >= 1)


@pytest.mark.parametrize("stage, proxy", [(0, None), (1, None), (2, "http://router:8080"),
                                          (3, "http://$(HOST_IP):15001"), (4, "http://127.0.0.1:15001")])
def test_apps_send_east_west_calls_to_the_stages_proxy(stage, proxy):
    for dep in app_deployments(stages.documents(stage)):
        app = containers(dep)[0]
        assert env(app).get("HTTP_PROXY") == proxy
        names = [e["name"] for e in app["env"]]
        if stage == 3:  # $(HOST_IP) must be defined before it is used
            assert env(app)["HOST_IP"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
            assert names.index("HOST_IP") < names.index("HTTP_PROXY")


def test_stage2_router_layer():
    docs = stages.documents(2)
    dep = named(docs, "Deployment", "router")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["template"]["metadata"]["labels"]["meshlab.io/proxy-role"] == "router"
    assert containers(dep)[0]["image"] == "envoyproxy/envoy:v1.40.0"
    assert named(docs, "Service", "router")["spec"]["ports"][0]["port"] == 8080
    listener = yaml.safe_load(named(docs, "ConfigMap", "router-envoy")["data"]["lds.yaml"])["resources"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["strip_any_host_port"] is True
    assert "role=router" in hcm["route_config"]["request_headers_to_add"][0]["header"]["value"]
    ratings = next(v for v in hcm["route_config"]["virtual_hosts"] if v["name"] == "ratings")
    policy = ratings["routes"][0]["route"]["retry_policy"]
    assert (policy["retry_on"], policy["num_retries"]) == ("5xx,connect-failure", 2)
    assert ratings["routes"][0]["route"]["timeout"]


def test_router_config_without_retries_or_with_a_split():
    lds = yaml.safe_load(router.config_map(retries=0, weights={"reviews": {"v1": 80, "v2": 20, "v3": 0}})
                         ["data"]["lds.yaml"])
    assert "retry_policy" not in str(lds)
    assert "'weight': 80" in str(lds) and "'weight': 0" in str(lds)


def test_stage3_node_proxy_daemonset():
    docs = stages.documents(3)
    ds = named(docs, "DaemonSet", "node-proxy")
    assert ds["spec"]["template"]["metadata"]["labels"]["meshlab.io/proxy-role"] == "node"
    outgoing, incoming = containers(ds)[0]["ports"][:2]
    assert outgoing["containerPort"] == outgoing["hostPort"] == pernode.PORT == 15001
    assert incoming["containerPort"] == pernode.INCOMING_PORT and "hostPort" not in incoming
    assert named(docs, "Service", "node-proxy")["spec"]["ports"][0]["port"] == pernode.INCOMING_PORT
    assert not [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "router"]


def test_stage3_calls_leave_through_the_callers_node_proxy_and_enter_through_the_callees():
    data = named(stages.documents(3), "ConfigMap", "node-proxy-envoy")["data"]
    listeners = {l["name"]: l for l in yaml.safe_load(data["lds.yaml"])["resources"]}
    assert {n: l["address"]["socket_address"]["port_value"] for n, l in listeners.items()} == {
        "outgoing": 15001, "incoming": 15002}
    assert "role=node" in str(listeners["outgoing"]) and "dir=out" in str(listeners["outgoing"])
    assert "dir=in" in str(listeners["incoming"])
    out_hosts = listeners["outgoing"]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
    reviews = next(v for v in out_hosts if v["name"] == "reviews")["routes"][0]["route"]
    assert [(c["name"], c["host_rewrite_literal"]) for c in reviews["weighted_clusters"]["clusters"]] == [
        ("reviews-v1", "reviews-v1"), ("reviews-v2", "reviews-v2"), ("reviews-v3", "reviews-v3")]
    in_hosts = listeners["incoming"]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
    assert {v["name"]: v["routes"][0].get("route", {}).get("cluster") for v in in_hosts}["reviews-v2"] == "local-reviews-v2"
    clusters = {c["name"]: c for c in yaml.safe_load(data["cds.yaml"])["resources"]}
    to_proxies, to_pods = clusters["reviews-v2"], clusters["local-reviews-v2"]
    address = to_proxies["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert address == {"address": "node-proxy", "port_value": 15002}
    assert to_proxies["health_checks"][0]["http_health_check"]["host"] == "reviews-v2"
    header = to_pods["health_checks"][0]["http_health_check"]["request_headers_to_add"][0]["header"]
    assert header == {"key": "x-meshlab-node", "value": "%ENVIRONMENT(NODE_NAME)%"}
    for cluster in (to_proxies, to_pods):  # no healthy host: fail, never fall back to the others
        assert cluster["common_lb_config"]["healthy_panic_threshold"] == {"value": 0}


def test_stage4_every_app_pod_has_a_sidecar_with_its_own_config():
    docs = stages.documents(4)
    deps = app_deployments(docs)
    for dep in deps:
        app, proxy = containers(dep)
        assert proxy["image"].startswith("envoyproxy/envoy") and app["image"].startswith("python")
        assert {p["containerPort"] for p in proxy["ports"]} >= {15006, 15001}
        volume = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "envoy-config")
        assert volume["configMap"]["name"] == f"sidecar-{dep['metadata']['name']}"
    assert len(envoy_configmaps(docs)) == len(deps)  # N configs, one per service version
    for svc in ("frontend", "catalog", "reviews", "ratings"):
        assert named(docs, "Service", svc)["spec"]["ports"][0]["targetPort"] == sidecar.INBOUND_PORT


def test_stage4_sidecar_config_inbound_outbound_and_hot_reload():
    data = sidecar.config_map("reviews", "v2")["data"]
    boot = yaml.safe_load(data["envoy.yaml"])
    for key in ("lds_config", "cds_config"):
        assert boot["dynamic_resources"][key]["path_config_source"]["watched_directory"]["path"] == "/etc/envoy"
    listeners = {l["name"]: l for l in yaml.safe_load(data["lds.yaml"])["resources"]}
    assert listeners["inbound"]["address"]["socket_address"]["port_value"] == 15006
    assert listeners["outbound"]["address"]["socket_address"]["port_value"] == 15001
    assert "dir=in" in str(listeners["inbound"]) and "dir=out" in str(listeners["outbound"])
    clusters = {c["name"]: c for c in yaml.safe_load(data["cds.yaml"])["resources"]}
    assert clusters["app"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] == \
        {"socket_address": {"address": "127.0.0.1", "port_value": 9080}}
    assert {"reviews-v1", "reviews-v2", "reviews-v3", "ratings-v1"} <= set(clusters)
    port = clusters["reviews-v1"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert port["socket_address"] == {"address": "reviews-v1", "port_value": 15006}


@pytest.mark.parametrize("stage", [2, 3, 4])
def test_per_version_headless_services_back_the_version_clusters(stage):
    docs = stages.documents(stage)
    headless = {d["metadata"]["name"]: d for d in of_kind(docs, "Service") if d["spec"].get("clusterIP") == "None"}
    assert set(headless) - {"node-proxy"} == {f"{s}-{v}" for s, v, _, _ in shop.SHOP}
    assert ("node-proxy" in headless) == (stage == 3)  # stage 3: node proxies find each other's incoming port
    assert headless["reviews-v2"]["spec"]["selector"] == {"app": "reviews", "version": "v2"}


@pytest.mark.parametrize("configmap", [router.config_map(), pernode.config_map()]
                         + [sidecar.config_map(s, v) for s, vs in envoyconf.versions().items() for v in vs],
                         ids=lambda cm: cm["metadata"]["name"])
def test_envoy_accepts_every_proxy_config(configmap, tmp_path):
    validate = pytest.importorskip("meshlab.envoy.validate")
    try:
        from meshlab.envoy.binary import find
        find()
    except Exception:
        pytest.skip("no Envoy binary")
    for name, text in configmap["data"].items():
        (tmp_path / name).write_text(text)
    boot = envoy_patch.patch_paths(yaml.safe_load(configmap["data"]["envoy.yaml"]), {"/etc/envoy": str(tmp_path)})
    assert asyncio.run(validate.check(boot)) is None


def test_stage5_manifests_carry_no_proxy_only_the_request_for_one():
    docs = stages.documents(5)
    for doc in app_deployments(docs):
        template = doc["spec"]["template"]
        assert [c["name"] for c in template["spec"]["containers"]] == ["app"]
        assert "HTTP_PROXY" not in env(template["spec"]["containers"][0])
        assert template["metadata"]["labels"]["sidecar.istio.io/inject"] == "true"
        assert template["spec"]["serviceAccountName"] == f"shop-{doc['metadata']['labels']['app']}"
    assert {d["metadata"]["name"] for d in of_kind(docs, "ServiceAccount")} == {
        "shop-frontend", "shop-catalog", "shop-reviews", "shop-ratings"}
    assert not envoy_configmaps(docs)
    assert stages.needs_mesh(5) and not any(stages.needs_mesh(s) for s in range(5))


def test_stage5_brownfield_start_asks_for_no_sidecar():
    docs = stages.documents(5, injection=False)
    assert all("sidecar.istio.io/inject" not in d["spec"]["template"]["metadata"]["labels"] for d in app_deployments(docs))
    with pytest.raises(meshlab.MeshlabError):
        stages.documents(4, injection=False)


def test_stage5_standard_policy_objects_are_valid_istio():
    from meshlab.stages import controlplane

    docs = manifests.load(controlplane.subsets_yaml() + "---\n" + controlplane.split_yaml({"v1": 90, "v3": 10}))
    manifests.validate(docs)
    assert [s["name"] for s in docs[0]["spec"]["subsets"]] == ["v1", "v2", "v3"]
    assert [(r["destination"]["subset"], r["weight"]) for r in docs[1]["spec"]["http"][0]["route"]] == [("v1", 90), ("v3", 10)]
