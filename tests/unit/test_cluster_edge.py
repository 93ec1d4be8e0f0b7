"""The Envoy edge on kind and kube (backends/edge.py) and its in-cluster ingress controller (edge/controller.py):
manifests, the controller's pure parts, and the same files as the local controller for the same Ingresses."""

from __future__ import annotations

import ast
import copy
import io
import json
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from meshlab import manifests, stages
from meshlab.backends import edge, kubectl
from meshlab.backends.local import ingress, network
from meshlab.backends.local.views import Views
from meshlab.edge import controller, translate
from meshlab.stages import envoyconf, shop

NS = "meshlab-ann-edge-proxy"


def docs_by_kind(docs) -> dict:
    out: dict = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


# ---- manifests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("edge_ns,watched,host_port,with_namespace", [
    ("meshlab-system", "default", 80, True),  # kind
    (NS, NS, None, False),  # kube
])
def test_edge_objects_are_valid_kubernetes(edge_ns, watched, host_port, with_namespace):
    docs = edge.documents(edge_ns, watched, host_port, with_namespace)
    manifests.validate(docs, "edge")  # kubernetes-validate, strict, offline
    kinds = [d["kind"] for d in docs]
    assert sorted(kinds) == sorted(["ServiceAccount", "Role", "RoleBinding", "IngressClass", "ConfigMap", "ConfigMap",
                                    "Deployment", "Service"] + (["Namespace"] if with_namespace else []))
    assert kinds[0] == ("Namespace" if with_namespace else "ServiceAccount")  # the namespace before what lives in it


def test_the_edge_pod_runs_the_controller_beside_envoy_on_kind():
    deployment = docs_by_kind(edge.documents("meshlab-system", "default", 80, True))["Deployment"][0]
    template = deployment["spec"]["template"]
    pod = template["spec"]
    assert (deployment["metadata"]["name"], deployment["metadata"]["namespace"]) == (translate.EDGE_NAME, translate.EDGE_NAMESPACE)
    assert template["metadata"]["labels"] == {"app": "edge", "meshlab.io/proxy-role": "edge"}  # as the local edge's
    control, envoy = pod["containers"]
    assert (control["name"], control["image"], envoy["name"], envoy["image"]) == \
        ("controller", shop.IMAGE, "envoy", envoyconf.ENVOY_IMAGE)
    assert control["command"] == ["python", "/opt/meshlab-edge/controller.py"]
    assert {"name": "WATCH_NAMESPACES", "value": "default"} in control["env"]
    # one emptyDir between them: the controller writes, Envoy reads
    assert {"name": "config", "emptyDir": {}} in pod["volumes"]
    assert {"name": "config", "mountPath": "/etc/envoy"} in control["volumeMounts"]
    assert {"name": "config", "mountPath": "/etc/envoy", "readOnly": True} in envoy["volumeMounts"]
    assert {m["mountPath"] for m in envoy["volumeMounts"]} == {"/etc/envoy", "/etc/meshlab-edge"}
    # the trace hop's POD_NAME and NODE_NAME come from the downward API
    assert {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in envoy["env"]} == {
        "POD_NAME": "metadata.name", "NODE_NAME": "spec.nodeName"}
    # Envoy starts once the controller's first files are there, through the image's entrypoint (args only)
    assert "command" not in envoy and envoy["args"][:2] == ["sh", "-c"]
    assert envoy["args"][2].startswith("until [ -s /etc/envoy/lds.json ] && [ -s /etc/envoy/cds.json ]")
    assert envoy["args"][2].endswith("exec envoy -c /etc/meshlab-edge/envoy.json --concurrency 1 -l warning")
    # the kubelet probes the readiness listener (the admin binds the pod's loopback)
    assert envoy["readinessProbe"]["httpGet"] == {"path": "/ready", "port": envoyconf.READY_PORT}
    assert envoy["ports"][0] == {"name": "http", "containerPort": translate.EDGE_PORT, "hostPort": 80}
    assert pod["nodeSelector"] == {"meshlab.io/edge": "true"} and pod["tolerations"][0]["effect"] == "NoSchedule"
    assert pod["serviceAccountName"] == "edge" and deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_on_kube_the_edge_has_no_host_port_and_a_service_for_the_port_forward():
    docs = docs_by_kind(edge.documents(NS, NS))
    pod = docs["Deployment"][0]["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert not [p for c in pod["containers"] for p in c.get("ports", []) if "hostPort" in p]  # Pod Security baseline
    assert docs["Service"][0]["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    assert {d["metadata"]["namespace"] for k, ds in docs.items() if k != "IngressClass" for d in ds} == {NS}


def test_ingress_class_and_the_controllers_rights():
    docs = docs_by_kind(edge.documents("meshlab-system", "default", 80))
    assert docs["IngressClass"][0]["metadata"]["name"] == "edge"
    assert docs["IngressClass"][0]["spec"] == {"controller": "meshlab.io/edge"}
    role, binding = docs["Role"][0], docs["RoleBinding"][0]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "default"  # the watched namespace
    assert {(g, r, tuple(rule["verbs"])) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]} == {
        ("networking.k8s.io", "ingresses", ("get", "list", "watch")), ("", "services", ("get", "list", "watch")),
        ("discovery.k8s.io", "endpointslices", ("get", "list", "watch"))}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "edge", "namespace": "meshlab-system"}]
    assert "ClusterRole" not in docs and "ClusterRoleBinding" not in docs  # nothing cluster-wide but the class


def test_the_bootstrap_is_the_local_edges_plus_a_readiness_listener():
    config_map = next(d for d in edge.config_maps("meshlab-system") if d["metadata"]["name"] == "edge-envoy")
    boot = json.loads(config_map["data"]["envoy.json"])
    assert {k: v for k, v in boot.items() if k != "static_resources"} == ingress.bootstrap() == translate.bootstrap()
    assert boot["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15000}
    assert boot["static_resources"]["listeners"] == [envoyconf.readiness_listener()]


def test_the_controller_configmap_is_the_modules_own_source_and_stdlib_only():
    config_map = next(d for d in edge.config_maps("x") if d["metadata"]["name"] == "edge-controller")
    root = Path(translate.__file__).parent
    assert config_map["data"] == {"translate.py": (root / "translate.py").read_text(),
                                  "controller.py": (root / "controller.py").read_text()}
    for name, source in config_map["data"].items():
        imported = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                imported.add(node.module.split(".")[0])
        assert imported - {"translate", "__future__"} <= sys.stdlib_module_names, (name, imported)


def test_a_new_program_rolls_the_edge(monkeypatch):
    template = edge.deployment("meshlab-system", "default")["spec"]["template"]
    assert template["metadata"]["annotations"] == {edge.CONFIG_HASH: edge.config_hash("meshlab-system")}
    before, original = edge.config_hash("meshlab-system"), edge.program_files()
    monkeypatch.setattr(edge, "program_files", lambda: {**original, "controller.py": "changed"})
    assert edge.config_hash("meshlab-system") != before  # a new pod template: kubectl apply rolls the edge


# ---- the edge pod as a proxy ---------------------------------------------------------------------


def edge_pod(extra=()) -> dict:
    """The edge's pod as `kubectl get pods -o json` shows it (from the Deployment's template)."""
    template = edge.deployment(NS, NS)["spec"]["template"]
    spec = copy.deepcopy(template["spec"])
    spec["containers"] += list(extra)
    spec["nodeName"] = "node-1"
    return {"metadata": {"name": "edge-7d9f-abcde", "namespace": NS, "labels": template["metadata"]["labels"]},
            "spec": spec, "status": {"phase": "Running", "podIP": "10.244.1.7",
                                     "containerStatuses": [{"name": c["name"], "state": {"running": {}}} for c in spec["containers"]],
                                     "conditions": [{"type": "Ready", "status": "True"}]}}


def test_the_edge_pods_envoy_is_the_edge_proxy_with_an_admin():
    pod = edge_pod()
    info = kubectl.proxy_info(pod, "c1")
    assert (info.name, info.role, info.pod, info.node, info.state) == ("edge-7d9f-abcde", "edge", "edge-7d9f-abcde", "node-1", "running")
    assert kubectl.proxy_container(pod) == ("envoy", "edge")
    assert kubectl.admin_port(pod) == translate.ADMIN_PORT
    assert kubectl.app_container(pod) is None  # faults never go to the controller
    # an Istio sidecar injected into the edge pod (kube, a revision-labelled namespace) does not take its place
    injected = edge_pod([{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.30.3"}])
    assert kubectl.proxy_container(injected) == ("envoy", "edge") and kubectl.admin_port(injected) == 15000


# ---- the controller: API objects -> the local controller's files ---------------------------------


def svc(name, ns="default", ports=(("", 9080, 9080),), selector=None) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": selector or {"app": name},
                     "ports": [{**({"name": n} if n else {}), "port": p, "targetPort": t} for n, p, t in ports]}}


def pod(name, app, ip, ns="default", ready=True, ports=(("", 9080),), deleting=False):
    """A pod as both sides see it: the local runtime's Pod fields, and what an EndpointSlice says of it."""
    containers = [{"name": "app", "ports": [{**({"name": n} if n else {}), "containerPort": p} for n, p in ports]}]
    return SimpleNamespace(name=name, namespace=ns, ip=ip, ready=ready, deleting=deleting, labels={"app": app},
                           annotations={}, spec={"containers": containers})


class LocalView(Views):
    """The local runtime's own endpoints() over these Services and pods."""

    def __init__(self, services, pods):
        self.objects = {("Service", s["metadata"]["namespace"], s["metadata"]["name"]): s for s in services}
        self.pods = {p.name: p for p in pods}


def slices_for(services, pods, split=False) -> list[dict]:
    """EndpointSlices as Kubernetes' EndpointSlice controller makes them: per Service, ports by name with the
    target port resolved on the pods, an endpoint per pod (terminating ones not ready), in no particular order;
    split=True spreads them over two slices and repeats one endpoint in both (a slice update in flight)."""
    out = []
    for s in services:
        ns, name = s["metadata"]["namespace"], s["metadata"]["name"]
        members = [p for p in pods if p.namespace == ns and network.match_selector(s["spec"]["selector"], p.labels)]
        by_number: dict = {}
        for p in members:
            resolved = tuple((port.get("name") or "", network.target_port(p.spec, port["targetPort"])) for port in s["spec"]["ports"])
            by_number.setdefault(resolved, []).append(p)
        for resolved, group in by_number.items():
            endpoints = [{"addresses": [p.ip], "conditions": {"ready": p.ready and not p.deleting,
                                                             **({"terminating": True} if p.deleting else {})},
                          "targetRef": {"kind": "Pod", "name": p.name, "namespace": ns}} for p in reversed(group)]
            chunks = [endpoints[::2], endpoints[1::2] + endpoints[:1]] if split and len(endpoints) > 1 else [endpoints]
            for i, chunk in enumerate(chunks):
                out.append({"metadata": {"name": f"{name}-{len(out)}{i}", "namespace": ns,
                                         "labels": {controller.SERVICE_NAME_LABEL: name}},
                            "addressType": "IPv4", "endpoints": chunk,
                            "ports": [{"name": n, "port": number, "protocol": "TCP"} for n, number in resolved if number]})
    return out


def ing(name, rules=None, default=None, cls="edge", ns=None) -> dict:
    meta = {"name": name, **({"namespace": ns} if ns else {})}
    spec = {**({"ingressClassName": cls} if cls else {}), **({"rules": rules} if rules else {}),
            **({"defaultBackend": default} if default else {})}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def backend(service, port) -> dict:
    return {"service": {"name": service, "port": {"number": port} if isinstance(port, int) else {"name": port}}}


def path(value, service, port=9080, kind="Prefix") -> dict:
    return {"path": value, "pathType": kind, "backend": backend(service, port)}


SHOP = [svc("frontend"), svc("catalog"), svc("reviews", ports=(("http", 9080, "web"),))]
SHOP_PODS = [pod("frontend-v1-b", "frontend", "10.244.1.12"), pod("frontend-v1-a", "frontend", "10.244.2.9"),
             pod("frontend-v1-c", "frontend", "10.244.1.13", ready=False),
             pod("frontend-v1-d", "frontend", "10.244.2.10", deleting=True),
             pod("catalog-v1-a", "catalog", "10.244.1.20"),
             pod("reviews-v1-a", "reviews", "10.244.1.30", ports=(("web", 9081),)),
             pod("reviews-v2-a", "reviews", "10.244.2.31", ports=(("web", 9082),))]  # a named targetPort, two numbers
CASES = {
    "stage 1": ([stages.edge.ingress()], SHOP, SHOP_PODS),
    "hosts and paths (lab 01)": ([ing("shop", [{"host": "shop.local", "http": {"paths": [
        path("/", "frontend"), path("/api/catalog", "catalog"), path("/api/catalog/items", "catalog", kind="Exact")]}}])],
        SHOP, SHOP_PODS),
    "a port by name, resolved per pod": ([ing("r", [{"http": {"paths": [path("/reviews", "reviews", "http")]}}])], SHOP, SHOP_PODS),
    "default backend, other classes, no class, a missing Service": ([
        ing("fallback", default=backend("frontend", 9080)), ing("theirs", [{"http": {"paths": [path("/", "catalog")]}}], cls="nginx"),
        ing("classless", [{"http": {"paths": [path("/x", "catalog")]}}], cls=None),
        ing("typo", [{"host": "t.local", "http": {"paths": [path("/", "frontnd"), path("/p", "catalog", 9999)]}}])],
        SHOP, SHOP_PODS),
    "no Ingress at all": ([], SHOP, SHOP_PODS),
    "two namespaces": ([ing("a", [{"host": "a.local", "http": {"paths": [path("/", "frontend")]}}]),
                        ing("b", [{"host": "b.local", "http": {"paths": [path("/", "frontend")]}}], ns="team-b")],
                       SHOP + [svc("frontend", ns="team-b")],
                       SHOP_PODS + [pod("frontend-x", "frontend", "10.244.3.3", ns="team-b")]),
}


@pytest.mark.parametrize("split", [False, True], ids=["one slice", "split slices"])
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_the_controller_writes_exactly_what_the_local_controller_makes(case, split):
    ingresses, services, pods = CASES[case]
    local = ingress.config_map("127.10.0.1", ingresses, LocalView(services, pods).endpoints)["data"]
    # the API's objects: every object names its namespace, Services list ports as given
    seen = [{**i, "metadata": {"namespace": "default", **i["metadata"]}} for i in ingresses]
    files = controller.render(seen, services, slices_for(services, pods, split), address="127.10.0.1")
    assert files == {"lds.json": local["lds.json"], "cds.json": local["cds.json"]}
    assert json.loads(files["lds.json"])["version_info"]  # a version a client can see loaded


def test_the_table_covers_ready_unready_and_resolved_endpoints():
    files = controller.render(*[[{**i, "metadata": {"namespace": "default", **i["metadata"]}} for i in CASES["stage 1"][0]]],
                              SHOP, slices_for(SHOP, SHOP_PODS))
    [frontend] = json.loads(files["cds.json"])["resources"]
    addresses = [e["endpoint"]["address"]["socket_address"] for e in frontend["load_assignment"]["endpoints"][0]["lb_endpoints"]]
    assert addresses == [{"address": "10.244.2.9", "port_value": 9080}, {"address": "10.244.1.12", "port_value": 9080}]
    assert json.loads(files["lds.json"])["resources"][0]["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8080}
    reviews = controller.endpoints_from(SHOP, slices_for(SHOP, SHOP_PODS))("default", "reviews", "http")
    assert reviews == [("10.244.1.30", 9081), ("10.244.2.31", 9082)]


def test_write_renames_changed_files_into_place(tmp_path):
    files = {"lds.json": '{"l": 1}', "cds.json": '{"c": 1}'}
    assert controller.write(tmp_path, files) is True
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == files  # no temporary file left behind
    inode = (tmp_path / "lds.json").stat().st_ino
    assert controller.write(tmp_path, files) is False and (tmp_path / "lds.json").stat().st_ino == inode  # untouched
    assert controller.write(tmp_path, {**files, "cds.json": '{"c": 2}'}) is True
    assert (tmp_path / "cds.json").read_text() == '{"c": 2}' and (tmp_path / "lds.json").stat().st_ino == inode


def test_the_api_is_found_as_client_go_finds_it():
    assert controller.api_base({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}) == "https://10.96.0.1:443"
    assert controller.api_base({"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}) == "https://[fd00::1]:443"
    assert controller.api_base({}) == "https://kubernetes.default.svc"
    assert controller.api_base({"MESHLAB_EDGE_API": "http://127.0.0.1:5/"}) == "http://127.0.0.1:5"


# ---- the controller: list + watch -----------------------------------------------------------------


class ScriptedApi:
    """Answers each open() with the next scripted body (bytes) or raises it (an exception)."""

    def __init__(self, *replies):
        self.replies, self.paths = list(replies), []

    def open(self, path, timeout):
        self.paths.append(path)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return io.BytesIO(reply)


def lines(*events) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def obj(name, version, **extra) -> dict:
    return {"metadata": {"name": name, "namespace": "default", "resourceVersion": version}, **extra}


def test_a_mirror_lists_then_follows_the_watch():
    listing = json.dumps({"metadata": {"resourceVersion": "10"}, "items": [obj("a", "9"), obj("b", "10")]}).encode()
    stream = lines({"type": "ADDED", "object": obj("c", "11")}, {"type": "MODIFIED", "object": obj("a", "12", spec={"x": 1})},
                   {"type": "DELETED", "object": obj("b", "13")}, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}})
    changed = threading.Event()
    mirror = controller.Mirror(ScriptedApi(listing, stream), "ingresses", "default", changed, threading.Lock())
    assert mirror.relist() == "10" and mirror.synced and changed.is_set()
    changed.clear()
    assert mirror.follow("10") == "20"  # the stream ended (server timeout): resume from the bookmark's version
    assert changed.is_set()
    assert sorted((o["metadata"]["name"], o.get("spec")) for o in mirror.objects()) == [("a", {"x": 1}), ("c", None)]
    assert mirror.api.paths == ["/apis/networking.k8s.io/v1/namespaces/default/ingresses",
                                "/apis/networking.k8s.io/v1/namespaces/default/ingresses?watch=1&allowWatchBookmarks=true"
                                f"&timeoutSeconds={controller.WATCH_S}&resourceVersion=10"]


def test_a_watch_that_is_too_old_lists_again(capsys):
    gone = lines({"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version: 5 (90)"}})
    mirror = controller.Mirror(ScriptedApi(gone), "endpointslices", "default", threading.Event(), threading.Lock())
    assert mirror.follow("5") is None
    assert "endpointslices in default: watch ended: too old resource version" in capsys.readouterr().err


def test_an_api_error_is_one_line_with_the_apis_message():
    import urllib.error

    body = io.BytesIO(json.dumps({"kind": "Status", "message": 'ingresses is forbidden: User "system:serviceaccount:x:edge" '
                                                                "cannot list resource"}).encode())
    error = urllib.error.HTTPError("https://api/x", 403, "Forbidden", {}, body)
    assert controller.reason(error) == 'HTTP 403: ingresses is forbidden: User "system:serviceaccount:x:edge" cannot list resource'
    assert controller.reason(ConnectionRefusedError(111, "Connection refused")) == "ConnectionRefusedError: [Errno 111] Connection refused"


def test_the_program_refuses_to_run_without_namespaces(capsys):
    assert controller.main({}) == 2
    assert "WATCH_NAMESPACES is empty" in capsys.readouterr().err
