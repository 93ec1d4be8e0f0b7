"""The pure parts of the local runtime: the supported subset, the Envoy patch, the ingress
translator, Service addressing, workload plans, ConfigMap projection and the state folder."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass

import pytest
import yaml

from meshlab import stages
from meshlab.backends.base import MeshlabError
from meshlab.backends.local import envoy_patch, ingress, kinds, network, paths, volumes, workloads


# ---- kinds: the local subset ------------------------------------------------------------------

def deployment(**pod_spec) -> dict:
    spec = {"containers": [{"name": "app", "image": "python:3.12", "command": ["python", "app.py"]}], **pod_spec}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec}}}


def refused(doc: dict) -> str:
    with pytest.raises(MeshlabError) as caught:
        kinds.check_supported(doc, "x.yaml")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("x.yaml: ") and caught.value.hint
    return message


@pytest.mark.parametrize("stage", stages.deployable())
def test_every_deployable_stage_is_inside_the_local_subset(stage):
    for doc in stages.documents(stage):
        kinds.check_supported(doc)


def test_the_edge_controller_objects_are_inside_the_local_subset():
    kinds.check_supported(ingress.deployment("node-1"))
    kinds.check_supported(ingress.config_map("127.10.0.1", [stages.edge.ingress()], lambda *a: []))


@pytest.mark.parametrize("api, kind", [("apps/v1", "StatefulSet"), ("batch/v1", "CronJob"), ("v1", "Pod"),
                                       ("gateway.networking.k8s.io/v1", "Gateway"), ("v1", "Deployment")])
def test_unknown_kinds_are_refused_by_name(api, kind):
    message = refused({"apiVersion": api, "kind": kind, "metadata": {"name": "thing"}})
    assert f"{kind}/thing" in message and f"kind {kind} ({api})" in message


@pytest.mark.parametrize("extra, where", [
    ({"hostNetwork": True}, "spec.template.spec.hostNetwork"),
    ({"affinity": {}}, "spec.template.spec.affinity"),
    ({"volumes": [{"name": "v", "emptyDir": {}}]}, "spec.template.spec.volumes[0].emptyDir")])
def test_unsupported_fields_are_named_with_their_path(extra, where):
    assert f"Deployment/web: field {where} is not supported" in refused(deployment(**extra))


def test_unsupported_container_fields_name_the_container_path():
    doc = deployment()
    doc["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {}
    assert "spec.template.spec.containers[0].securityContext" in refused(doc)


def test_service_types_other_than_clusterip_are_refused():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"type": "NodePort", "ports": [{"port": 80}]}}
    assert "spec.type NodePort" in refused(svc)
    svc["spec"]["type"] = "ClusterIP"
    kinds.check_supported(svc)


def test_images_other_than_envoy_and_python_are_refused():
    doc = deployment()
    doc["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.27"
    assert "container app: image nginx:1.27 cannot run locally" in refused(doc)


def test_unsupported_downward_api_fields_are_refused():
    doc = deployment()
    doc["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}]
    assert "env SA: fieldPath metadata.uid" in refused(doc)


# ---- envoy_patch: the only local-only changes to Envoy config ---------------------------------

def test_pod_local_addresses_become_the_pod_ip_and_others_stay():
    def listener(address, port, **extra):
        return {"address": {"socket_address": {"address": address, "port_value": port, **extra}}}

    config = {"listeners": [listener("0.0.0.0", 80, ipv4_compat=True), listener("::", 81), listener("10.1.2.3", 82)]}
    out = envoy_patch.patch_addresses(config, "127.10.1.10")
    addresses = [item["address"]["socket_address"] for item in out["listeners"]]
    assert addresses[0] == {"address": "127.10.1.10", "port_value": 80}  # ipv4_compat dropped
    assert addresses[1]["address"] == "127.10.1.10" and addresses[2]["address"] == "10.1.2.3"
    assert config["listeners"][0]["address"]["socket_address"]["address"] == "0.0.0.0"  # input untouched


def test_paths_under_a_mount_point_into_the_pod_folder_only():
    mounts = {"/etc/envoy": "/tmp/pod/volumes/config", "/app/": "/tmp/pod/volumes/app"}
    config = {"a": "/etc/envoy/lds.yaml", "b": ["/etc/envoy"], "c": "/etc/envoyx/file", "d": "/app/app.py", "e": 5}
    assert envoy_patch.patch_paths(config, mounts) == {
        "a": "/tmp/pod/volumes/config/lds.yaml", "b": ["/tmp/pod/volumes/config"], "c": "/etc/envoyx/file",
        "d": "/tmp/pod/volumes/app/app.py", "e": 5}


def test_patch_bootstrap_adds_the_lab_resolver_and_leaves_the_input_alone():
    config = {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15000}}}}
    out = envoy_patch.patch_bootstrap(config, "127.10.2.11", {}, ("127.10.0.2", 5353))
    assert out["admin"]["address"]["socket_address"]["address"] == "127.10.2.11"
    resolver = out["typed_dns_resolver_config"]["typed_config"]["resolvers"][0]["socket_address"]
    assert resolver == {"address": "127.10.0.2", "port_value": 5353}
    assert "typed_dns_resolver_config" not in config


def test_patch_file_text_keeps_json_as_json_and_yaml_as_yaml():
    data = {"resources": [{"address": {"socket_address": {"address": "0.0.0.0", "port_value": 1}}}]}
    as_json = envoy_patch.patch_file_text(json.dumps(data), "127.1.1.1", {}, "ConfigMap/x/lds.json")
    assert json.loads(as_json)["resources"][0]["address"]["socket_address"]["address"] == "127.1.1.1"
    as_yaml = envoy_patch.patch_file_text(yaml.safe_dump(data), "127.1.1.1", {}, "ConfigMap/x/lds.yaml")
    assert yaml.safe_load(as_yaml)["resources"][0]["address"]["socket_address"]["address"] == "127.1.1.1"
    assert envoy_patch.patch_file_text("just text", "127.1.1.1", {}, "x.yaml") == "just text"


def test_patch_file_text_reports_bad_yaml_with_file_and_line():
    with pytest.raises(MeshlabError) as caught:
        envoy_patch.patch_file_text("a: 1\nb: [\n", "127.1.1.1", {}, "ConfigMap/edge/lds.yaml")
    assert str(caught.value).startswith("ConfigMap/edge/lds.yaml:3: invalid YAML") and "\n" not in str(caught.value)


# ---- ingress: Ingress objects -> edge Envoy config (pure) --------------------------------------

def ing(name="shop", rules=(), default=None, cls="edge", ns="default") -> dict:
    spec = {"rules": list(rules)}
    if cls is not None:
        spec["ingressClassName"] = cls
    if default:
        spec["defaultBackend"] = {"service": {"name": default, "port": {"number": 80}}}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def path(value, svc, kind="Prefix", port=9080):
    return {"path": value, "pathType": kind, "backend": {"service": {"name": svc, "port": {"number": port}}}}


def test_the_controller_serves_its_own_class_only():
    assert ingress.serves(ing()) and not ingress.serves(ing(cls="traefik"))
    assert not ingress.serves(ing(cls=None))  # ignored, as a controller whose class is not the default ignores it


@pytest.mark.parametrize("given, match", [({"path": "/", "pathType": "Prefix"}, {"prefix": "/"}),
                                          ({"path": "/api/", "pathType": "Prefix"}, {"path_separated_prefix": "/api"}),
                                          ({"path": "/api", "pathType": "Exact"}, {"path": "/api"}),
                                          ({"pathType": "Prefix"}, {"prefix": "/"})])
def test_path_types_follow_the_ingress_rules(given, match):
    assert ingress.path_match(given) == match


def test_exact_paths_come_first_then_longer_prefixes():
    rules = [{"http": {"paths": [path("/", "frontend"), path("/api", "api"), path("/api/v1", "v1"),
                                 path("/health", "hc", "Exact")]}}]
    [host] = ingress.virtual_hosts([ing(rules=rules)])
    assert host["domains"] == ["*"]
    order = [r["route"]["cluster"] for r in host["routes"] if "route" in r]
    assert order == ["default/hc:9080", "default/v1:9080", "default/api:9080", "default/frontend:9080"]
    assert host["routes"][-1]["direct_response"]["status"] == 404


def test_named_hosts_match_with_and_without_port_and_unmatched_hosts_get_404():
    hosts = ingress.virtual_hosts([ing(rules=[{"host": "shop.local", "http": {"paths": [path("/", "frontend")]}}])])
    assert hosts[0]["domains"] == ["shop.local", "shop.local:*"]
    assert hosts[-1]["domains"] == ["*"] and hosts[-1]["routes"][0]["direct_response"]["status"] == 404


def test_a_default_backend_catches_what_no_rule_matches():
    [host] = ingress.virtual_hosts([ing(default="fallback", ns="shop")])
    assert host["routes"][0]["route"]["cluster"] == "shop/fallback:80"


def test_clusters_are_static_with_the_ready_endpoints_of_each_service():
    seen = []

    def endpoints(ns, svc, port):
        seen.append((ns, svc, port))
        return [("127.10.1.10", 9080), ("127.10.2.10", 9080)] if svc == "frontend" else []

    rules = [{"http": {"paths": [path("/", "frontend"), path("/x", "frontend")]}}]
    clusters = ingress.clusters([ing(rules=rules, default="empty")], endpoints)
    by_name = {c["name"]: c for c in clusters}
    assert set(by_name) == {"default/frontend:9080", "default/empty:80"}  # one cluster per Service port
    lb = by_name["default/frontend:9080"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["address"] for e in lb] == ["127.10.1.10", "127.10.2.10"]
    assert by_name["default/empty:80"]["load_assignment"]["endpoints"][0]["lb_endpoints"] == []
    assert all(c["type"] == "STATIC" for c in clusters)


def test_the_edge_config_map_is_json_the_edge_listens_on_the_entry_and_stamps_its_hop():
    cm = ingress.config_map("127.10.0.1", [stages.edge.ingress(), ing(name="other", cls="traefik")], lambda *a: [])
    data = {key: json.loads(value) for key, value in cm["data"].items()}
    assert set(data) == {"envoy.json", "lds.json", "cds.json"}
    [listener] = data["lds.json"]["resources"]
    assert listener["address"]["socket_address"] == {"address": "127.10.0.1", "port_value": ingress.EDGE_PORT}
    route_config = listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
    header = route_config["request_headers_to_add"][0]["header"]
    assert header["key"] == "x-meshlab-trace" and header["value"].startswith("kind=proxy;role=edge;")
    assert [c["name"] for c in data["cds.json"]["resources"]] == ["default/frontend:9080"]  # traefik's is not served
    assert data["envoy.json"]["dynamic_resources"]["lds_config"]["path_config_source"]["path"] == "/etc/envoy/lds.json"


# ---- network: Services, endpoints, cluster DNS names --------------------------------------------

def test_an_empty_selector_selects_nothing():
    assert not network.match_selector({}, {"app": "x"})
    assert network.match_selector({"app": "x"}, {"app": "x", "version": "v1"})
    assert not network.match_selector({"app": "x", "version": "v2"}, {"app": "x", "version": "v1"})


def test_service_ports_by_number_name_or_string():
    svc = {"spec": {"ports": [{"name": "http", "port": 9080}, {"name": "admin", "port": 15000}]}}
    assert network.service_port(svc, 9080)["name"] == "http"
    assert network.service_port(svc, "9080")["name"] == "http"
    assert network.service_port(svc, "admin")["port"] == 15000
    assert network.service_port(svc, 1) is None


def test_target_ports_by_number_or_container_port_name():
    spec = {"containers": [{"ports": [{"name": "http", "containerPort": 9080}]}]}
    assert network.target_port(spec, 8080) == 8080 and network.target_port(spec, "8080") == 8080
    assert network.target_port(spec, "http") == 9080 and network.target_port(spec, "grpc") is None


@pytest.mark.parametrize("name, parts", [("ratings", ("ratings", None)), ("ratings.shop", ("ratings", "shop")),
                                         ("ratings.shop.svc", ("ratings", "shop")),
                                         ("Ratings.Shop.svc.cluster.local.", ("ratings", "shop")),
                                         ("a.b.c", ("", None))])
def test_cluster_dns_names_split_into_service_and_namespace(name, parts):
    assert network.split_name(name) == parts


def test_resolve_prefers_default_then_any_namespace_and_knows_nodes():
    ips = {("default", "ratings"): "127.10.0.10", ("shop", "ratings"): "127.10.0.11", ("shop", "cart"): "127.10.0.12"}
    nodes = {"node-1": "127.10.1.1"}
    assert network.resolve("ratings", ips, nodes) == ["127.10.0.10"]
    assert network.resolve("ratings.shop.svc.cluster.local", ips, nodes) == ["127.10.0.11"]
    assert network.resolve("cart", ips, nodes) == ["127.10.0.12"]
    assert network.resolve("cart.default", ips, nodes) == []
    assert network.resolve("node-1", ips, nodes) == ["127.10.1.1"]
    assert network.resolve("example.com", ips, nodes) == []


# ---- workloads: which pods should exist ----------------------------------------------------------

@dataclass
class FakePod:
    name: str
    node: str
    template_hash: str
    ready: bool = True


def test_template_hash_is_stable_and_changes_with_the_template():
    doc = deployment()
    template = doc["spec"]["template"]
    assert workloads.template_hash(template) == workloads.template_hash(json.loads(json.dumps(template)))
    assert len(workloads.template_hash(template)) == 10
    doc2 = deployment(nodeSelector={"kubernetes.io/hostname": "node-2"})
    assert workloads.template_hash(doc2["spec"]["template"]) != workloads.template_hash(template)


def test_pod_names_look_like_kubernetes_ones():
    name = workloads.pod_name("reviews-v2", "0123456789")
    assert name.startswith("reviews-v2-01234567-") and len(name.rsplit("-", 1)[1]) == 5
    assert workloads.pod_name("node-proxy", "0123456789", node="node-1").count("-") == 2
    assert workloads.owner_ref({"kind": "Deployment", "metadata": {"name": "a"}}) == "Deployment/default/a"


def test_schedule_picks_the_least_loaded_node_that_fits():
    template = deployment()["spec"]["template"]
    assert workloads.schedule(template, ["node-1", "node-2"], {"node-1": 2, "node-2": 1}) == "node-2"
    assert workloads.schedule(template, ["node-1", "node-2"], {}) == "node-1"  # ties go to the first
    pinned = deployment(nodeSelector={"kubernetes.io/hostname": "node-2"})["spec"]["template"]
    assert workloads.schedule(pinned, ["node-1", "node-2"], {"node-2": 9}) == "node-2"
    assert workloads.schedule(pinned, ["node-1"], {}) is None  # its node is down: stays pending


def test_deployment_plan_scales_up_spreading_over_nodes():
    doc = deployment()
    doc["spec"]["replicas"] = 3
    create, delete = workloads.deployment_plan(doc, [], ["node-1", "node-2", "node-3"], {})
    assert sorted(create) == ["node-1", "node-2", "node-3"] and delete == []


def test_deployment_plan_scales_down_not_ready_pods_first():
    doc = deployment()
    h = workloads.template_hash(doc["spec"]["template"])
    pods = [FakePod("a", "node-1", h), FakePod("b", "node-2", h, ready=False)]
    create, delete = workloads.deployment_plan(doc, pods, ["node-1", "node-2"], {})
    assert create == [] and [p.name for p in delete] == ["b"]


def test_deployment_plan_rolls_old_pods_only_once_new_ones_are_ready():
    doc = deployment()
    h = workloads.template_hash(doc["spec"]["template"])
    old = FakePod("old", "node-1", "different")
    create, delete = workloads.deployment_plan(doc, [old], ["node-1"], {"node-1": 1})
    assert create == ["node-1"] and delete == []  # surge first
    new = FakePod("new", "node-1", h, ready=False)
    assert workloads.deployment_plan(doc, [old, new], ["node-1"], {}) == ([], [])  # wait for it
    new.ready = True
    assert workloads.deployment_plan(doc, [old, new], ["node-1"], {}) == ([], [old])


def test_daemonset_plan_one_pod_per_ready_node():
    doc = deployment()
    doc["kind"] = "DaemonSet"
    h = workloads.template_hash(doc["spec"]["template"])
    pods = [FakePod("p1", "node-1", h), FakePod("p2-old", "node-2", "old")]
    create, delete = workloads.daemonset_plan(doc, pods, ["node-1", "node-2", "node-3"])
    assert create == ["node-2", "node-3"] and delete == []
    pods.append(FakePod("p2", "node-2", h))
    assert workloads.daemonset_plan(doc, pods, ["node-1", "node-2"]) == ([], [pods[1]])


# ---- volumes: ConfigMap projection, kubelet style --------------------------------------------------

def test_project_swaps_data_atomically_and_removes_stale_keys(tmp_path):
    folder = tmp_path / "config"
    volumes.project(folder, {"a.yaml": "one", "b.yaml": "two"})
    first = os.readlink(folder / "..data")
    assert (folder / "a.yaml").read_text() == "one" and os.readlink(folder / "a.yaml") == "..data/a.yaml"
    volumes.project(folder, {"a.yaml": "uno"})
    assert (folder / "a.yaml").read_text() == "uno"
    assert not (folder / "b.yaml").exists() and not (folder / "b.yaml").is_symlink()
    assert os.readlink(folder / "..data") != first and not (folder / first).exists()  # old version removed
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("..")) == ["a.yaml"]


def test_configmap_files_all_keys_or_the_listed_items():
    cm = {"data": {"envoy.yaml": "x", "other": 3}}
    assert volumes.configmap_files(cm, None) == {"envoy.yaml": "x", "other": "3"}
    assert volumes.configmap_files(cm, [{"key": "envoy.yaml", "path": "bootstrap.yaml"}]) == {"bootstrap.yaml": "x"}
    assert volumes.configmap_files({}, None) == {}


def test_envoy_files_patch_only_config_files():
    files = {"lds.yaml": "address: {socket_address: {address: 0.0.0.0}}\n", "README": "0.0.0.0"}
    out = volumes.envoy_files(files, "127.9.9.9", {}, "ConfigMap/x")
    assert "127.9.9.9" in out["lds.yaml"] and out["README"] == "0.0.0.0"


# ---- paths: the state folder ------------------------------------------------------------------------

def test_state_root_prefers_meshlab_home_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path / "home"))
    assert paths.state_root() == tmp_path / "home"
    monkeypatch.delenv("MESHLAB_HOME")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert paths.state_root() == tmp_path / "xdg" / "meshlab"


@pytest.mark.parametrize("name", ["", "Lab", "lab_1", "-lab", "lab-", "a" * 33, "../x", "lab.1"])
def test_lab_names_must_be_short_dns_labels(name):
    with pytest.raises(MeshlabError) as caught:
        paths.lab_dir(name)
    assert "not valid" in str(caught.value)


def test_state_files_are_private_and_atomic(monkeypatch, tmp_path):
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path))
    folder = paths.lab_dir("lab1")
    folder.mkdir(parents=True)
    paths.write_state(folder, {"octet": 12})
    assert stat.S_IMODE((folder / "state.json").stat().st_mode) == 0o600
    assert paths.read_state("lab1") == {"octet": 12} and paths.all_labs() == ["lab1"]
    assert not (folder / "state.json.tmp").exists()
    (folder / "state.json").write_text("{broken")
    assert paths.read_state("lab1") == {} and paths.read_state("nolab") == {}


def test_octets_are_allocated_lowest_free_first_skipping_other_labs(monkeypatch, tmp_path):
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path))
    monkeypatch.setattr(paths, "block_free", lambda octet: octet != 11)  # 11: held by someone else
    for name, octet in (("a", 10), ("b", 12)):
        (paths.lab_dir(name)).mkdir(parents=True)
        paths.write_state(paths.lab_dir(name), {"octet": octet})
    with paths.registry_lock():
        assert paths.allocate_octet("c") == 13
        assert paths.allocate_octet("a") == 10  # its own block counts as free


def test_no_octet_left_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path))
    monkeypatch.setattr(paths, "block_free", lambda octet: False)
    with pytest.raises(MeshlabError, match="no free address block"):
        paths.allocate_octet("a")


def test_socket_addresses_are_abstract_and_differ_per_lab(monkeypatch, tmp_path):
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path))
    a, b = paths.socket_address(paths.lab_dir("a")), paths.socket_address(paths.lab_dir("b"))
    assert a.startswith("\0meshlab-") and a != b and len(a) < 108


def test_the_edge_frees_the_entry_address_at_once_when_its_last_ingress_goes():
    spec = ingress.deployment("node-1")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 0  # else a new edge for the next Ingress could not listen there
