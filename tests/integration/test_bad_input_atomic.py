"""The bad-input catalogue: each input is applied to a running lab under background traffic, from Python and from
the CLI; each is refused in one line (exit 2), and the object store, the processes and the served config are exactly
as before. Traversal through ConfigMap keys, items paths, mountPath and subPath writes nothing outside the lab folder,
and an internal error part-way through an apply is rolled back."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from pathlib import Path

import pytest

import meshlab
from meshlab import cli, traffic
from meshlab.backends.local import paths
from conftest import wait_no_processes
from labs import running

pytestmark = pytest.mark.integration
LAB = "atomic"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
KINDS = ("Namespace", "ConfigMap", "ServiceAccount", "Service", "Deployment", "DaemonSet", "Ingress", "IngressClass",
         "VirtualService", "DestinationRule", "PeerAuthentication", "AuthorizationPolicy")
CANARY = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: canary}\ndata: {a: b}\n---\n"


def deployment(name="web", replicas=1, labels="{app: web}", pod="", volumes="", mounts=""):
    return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n"
            f"  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {labels}}}\n    spec:\n{pod}"
            f"      containers:\n      - name: web\n        image: 'python:3.12'\n        command: [python, -m, http.server]\n"
            f"{mounts}{volumes}")


def service(ports="[{port: 80}]", name="web", extra=""):
    return f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: web}}\n  ports: {ports}\n{extra}"


def ingress(path="{path: /, pathType: Prefix, backend: {service: {name: frontend, port: {number: 9080}}}}", name="shop"):
    return (f"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}}}\nspec:\n  ingressClassName: edge\n"
            f"  rules:\n  - http:\n      paths:\n      - {path}\n")


def configmap(data: str, name="cfg"):
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {data}\n"


def mounted(items="", key_data="{app.yaml: x}", mount="/etc/cfg", sub=""):
    """A ConfigMap and a Deployment that mounts it (the path a traversal would take)."""
    volumes = f"      volumes: [{{name: cfg, configMap: {{name: cfg{items}}}}}]\n"
    mounts = f"        volumeMounts: [{{name: cfg, mountPath: '{mount}'{sub}}}]\n"
    return configmap(key_data) + "---\n" + deployment(volumes=volumes, mounts=mounts)


C = "        "  # container fields
CATALOGUE = {  # id: (YAML text or bytes, words the one line must hold)
    "configmap-key-traversal": (mounted(key_data="{'../../escape-key.txt': x}"), 'data[../../escape-key.txt]: Invalid value'),
    "configmap-key-deep-traversal": (mounted(key_data="{'../../../../../../../../escape-key.txt': x}"), "a valid config key"),
    "configmap-key-slash": (mounted(key_data="{'conf/app.yaml': x}"), "regex used for validation is '[-._a-zA-Z0-9]+'"),
    "configmap-key-dot": (configmap("{'.': x}"), "must not be '.'"),
    "configmap-key-dotdot": (configmap("{'..': x}"), "must not be '..'"),
    "configmap-key-data-link": (configmap("{'..data': x}"), "must not start with '..'"),
    "items-path-traversal": (mounted(items=", items: [{key: app.yaml, path: '../../../../../../escape.txt'}]"), "must not contain '..'"),
    "items-path-absolute": (mounted(items=", items: [{key: app.yaml, path: /tmp/escape.txt}]"), "must be a relative path"),
    "subpath-traversal": (mounted(sub=", subPath: '../../../../escape.txt'"), "subPath: Invalid value"),
    "mount-unknown-volume": (deployment(mounts=C + "volumeMounts: [{name: nope, mountPath: /x}]\n"), 'Not found: "nope"'),
    "service-port-70000": (service("[{port: 70000}]"), "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535"),
    "service-port-0": (service("[{port: 0}]"), "Invalid value: 0: must be between 1 and 65535, inclusive"),
    "service-target-70000": (service("[{port: 80, targetPort: 70000}]"), "targetPort: Invalid value: 70000"),
    "service-target-name": (service("[{port: 80, targetPort: HTTP_PORT}]"), "targetPort: Invalid value: \"HTTP_PORT\""),
    "service-protocol": (service("[{port: 80, protocol: HTTP}]"), 'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"'),
    "service-two-ports-unnamed": (service("[{port: 80}, {port: 81}]"), "spec.ports[0].name: Required value"),
    "service-same-port-twice": (service("[{port: 80, name: a}, {port: 80, name: b}]"), 'Duplicate value: "80/TCP"'),
    "service-name-64": (service(name="s" * 64), "must be no more than 63 characters"),
    "service-name-digit": (service(name="9web"), "a DNS-1035 label"),
    "path-type-sideways": (ingress("{path: /, pathType: Sideways, backend: {service: {name: frontend, port: {number: 9080}}}}"),
                           'Unsupported value: "Sideways": supported values: "Exact", "ImplementationSpecific", "Prefix"'),
    "ingress-relative-path": (ingress("{path: shop, pathType: Prefix, backend: {service: {name: frontend, port: {number: 9080}}}}"),
                              'Invalid value: "shop": must be an absolute path'),
    "ingress-no-backend": (ingress("{path: /, pathType: Prefix, backend: {}}"), "resource or service backend is required"),
    "ingress-no-path-type": (ingress("{path: /, backend: {service: {name: frontend, port: {number: 9080}}}}"),
                             "pathType"),  # the schema check says so first
    "ingress-port-name-and-number": (ingress("{path: /, pathType: Prefix, backend: {service: {name: frontend, "
                                             "port: {number: 9080, name: http}}}}"), "cannot set both port name & port number"),
    "ingress-host-ip": (ingress().replace("  - http:", "  - host: 10.1.2.3\n    http:"), "must be a DNS name, not an IP address"),
    "replicas-negative": (deployment(replicas=-1), "spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
    "selector-mismatch": (deployment(labels="{app: other}"), "`selector` does not match template `labels`"),
    "restart-never": (deployment(pod="      restartPolicy: Never\n"), 'Unsupported value: "Never": supported values: "Always"'),
    "container-port-0": (deployment(mounts=C + "ports: [{containerPort: 0}]\n"), "containerPort: Invalid value: 0"),
    "container-port-name": (deployment(mounts=C + "ports: [{containerPort: 80, name: much-too-long-name}]\n"),
                            "must be no more than 15 characters"),
    "env-name": (deployment(mounts=C + "env: [{name: 'A=B', value: x}]\n"), "other than '='"),
    "probe-port": (deployment(mounts=C + "readinessProbe: {httpGet: {path: /, port: 0}}\n"), "readinessProbe.httpGet.port"),
    "name-254": (configmap("{a: b}", name="a" * 254), "must be no more than 253 characters"),
    "name-bad-chars": (configmap("{a: b}", name="Bad_Name."), 'metadata.name: Invalid value: "Bad_Name."'),
    "label-key": (configmap("{a: b}").replace("name: cfg}", "name: cfg, labels: {'bad key': x}}"), "name part must consist"),
    "label-value-64": (configmap("{a: b}").replace("name: cfg}", f"name: cfg, labels: {{a: {'v' * 64}}}}}"),
                       "must be no more than 63 characters"),
    "namespace-missing": (configmap("{a: b}").replace("name: cfg}", "name: cfg, namespace: shop}"), 'namespaces "shop" not found'),
    "namespace-after-use": (configmap("{a: b}").replace("name: cfg}", "name: cfg, namespace: shop}")
                            + "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n", 'namespaces "shop" not found'),
    "mesh-system-before-install": (configmap("{a: b}").replace("name: cfg}", "name: cfg, namespace: mesh-system}"),
                                   'namespaces "mesh-system" not found'),
    "same-object-twice": (configmap("{a: b}") + "---\n" + configmap("{a: c}"), 'ConfigMap "cfg" appears twice in one apply'),
    "duplicate-mapping-key": ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  name: other\n",
                              'mapping key "name" already defined at line 9'),
    "not-utf8": (b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: caf\xe9}\n", "not UTF-8 text: byte 0xe9"),
    "over-5-mib": ("#" * (5 * 1024 * 1024 + 10) + "\n", "more than the 5 MiB"),
    "malformed-yaml": ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n data: [\n", "invalid YAML"),
    "unsupported-kind": ("apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  selector: {matchLabels: {app: db}}\n"
                         "  serviceName: db\n  template:\n    metadata: {labels: {app: db}}\n    spec:\n"
                         "      containers: [{name: db, image: 'python:3.12'}]\n", "StatefulSet/db"),
    "unsupported-field": (deployment(pod="      hostNetwork: true\n"), "spec.template.spec.hostNetwork"),
    "schema-invalid": (service("[{port: eighty}]"), "eighty"),
    "istio-bad-name": ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: Reviews}\n"
                       "spec: {hosts: [reviews]}\n", 'VirtualService.networking.istio.io "Reviews" is invalid'),
}


@pytest.fixture(scope="module")
def lab():
    with running(LAB, "edge") as lab:
        yield lab
    assert not wait_no_processes(), "the atomic-apply lab left processes behind"


@pytest.fixture(scope="module")
def load(lab):
    running = traffic.background(lab.url, concurrency=2)
    yield running
    running.result()


def served_config(lab) -> str:
    """The edge Envoy's whole config as it serves it (admin /config_dump)."""
    (edge,) = [p for p in lab.proxies() if p.role == "edge"]
    dump = json.loads(NO_PROXY.open(edge.admin_url + "/config_dump", timeout=5).read())
    return json.dumps(dump, sort_keys=True)  # Envoy prints some maps in no fixed order


def files_outside(root: Path, lab_folder: Path) -> set[str]:
    """Every path under the test root that is not inside the lab's folder."""
    return {str(p) for p in root.rglob("*") if lab_folder not in p.parents and p != lab_folder}


def state(lab) -> dict:
    """The object store, the processes and the served config."""
    status = lab.backend.status()
    return {"objects": {kind: lab.backend.objects(kind) for kind in KINDS},
            "pods": sorted((p["name"], p["ip"], p["ready"], tuple((c["name"], c["pid"], c["restarts"]) for c in p["containers"]))
                           for p in status["pods"]),
            "services": status["services"], "processes": sorted(map(tuple, paths.read_state(LAB).get("processes", []))),
            "config": served_config(lab)}


def refused_in_python(lab, case: str) -> str:
    text, _ = CATALOGUE[case]
    text = CANARY.encode() + text if isinstance(text, bytes) else CANARY + text
    with pytest.raises(meshlab.MeshlabError) as caught:
        lab.apply(text, source=f"{case}.yaml")
    return str(caught.value)


def refused_by_the_cli(case: str, tmp_path: Path, capsys) -> str:
    text, _ = CATALOGUE[case]
    path = tmp_path / f"{case}.yaml"
    path.write_bytes(CANARY.encode() + (text if isinstance(text, bytes) else text.encode()))
    code = cli.main(["apply", "--lab", LAB, "-f", str(path)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def one_line(message: str, source: str, words: str) -> None:
    assert "\n" not in message and source in message and words in message, message
    assert "(hint: " in message, message


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_each_bad_input_is_refused_and_changes_nothing(lab, load, case, tmp_path, capsys):
    root = Path(os.environ["MESHLAB_HOME"]).parent
    folder = paths.lab_dir(LAB).resolve()
    before, outside = state(lab), files_outside(root, folder)
    one_line(refused_in_python(lab, case), f"{case}.yaml", CATALOGUE[case][1])
    one_line(refused_by_the_cli(case, tmp_path, capsys), f"{case}.yaml", CATALOGUE[case][1])
    assert state(lab) == before
    assert files_outside(root, folder) - outside <= {str(tmp_path), str(tmp_path / f"{case}.yaml")}


def test_a_mount_path_that_climbs_writes_nothing_outside(lab, load):
    """Kubernetes accepts any mountPath (the kubelet cleans it): locally it only names a folder inside the pod."""
    root = Path(os.environ["MESHLAB_HOME"]).parent
    folder = paths.lab_dir(LAB).resolve()
    outside = files_outside(root, folder)
    text = mounted(mount="/../../../../../../../tmp/escape-mount")
    lab.apply(text, source="mount.yaml", wait=30)
    assert files_outside(root, folder) == outside and not Path("/tmp/escape-mount").exists()
    lab.delete(text)


def test_an_internal_error_part_way_is_rolled_back(lab, load):
    """A Service whose ClusterIP port is held by someone else fails after its Deployment's pods were created:
    the apply is refused and the pods, the objects and the served config are as before."""
    used = {s["cluster_ip"] for s in lab.backend.status()["services"]}
    octet = paths.read_state(LAB)["octet"]
    ip = next(f"127.{octet}.0.{n}" for n in range(10, 255) if f"127.{octet}.0.{n}" not in used)
    blocker = socket.socket()
    blocker.bind((ip, 8123))
    blocker.listen()
    try:
        before = state(lab)
        with pytest.raises(meshlab.MeshlabError) as caught:
            lab.apply(CANARY + deployment() + "---\n" + service("[{port: 8123, targetPort: 8000}]"), source="held.yaml")
        assert "cannot listen on" in str(caught.value)
        assert state(lab) == before
    finally:
        blocker.close()


def test_namespaces_come_from_the_stage_and_kubernetes(lab, load):
    """default and kube-system exist; a Namespace applied first makes its objects welcome; deleting it takes them."""
    ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"
    cm = configmap("{a: b}").replace("name: cfg}", "name: cfg, namespace: shop}")
    assert lab.apply(ns + "---\n" + cm, source="ns.yaml", wait=0) == ["Namespace/shop", "ConfigMap/cfg"]
    lab.apply(configmap("{a: b}").replace("name: cfg}", "name: cfg, namespace: kube-system}"), source="ks.yaml", wait=0)
    lab.delete(ns)
    assert not [c for c in lab.backend.objects("ConfigMap") if c["metadata"].get("namespace") == "shop"]
    lab.delete(configmap("{a: b}").replace("name: cfg}", "name: cfg, namespace: kube-system}"))


def test_kubernetes_accepts_a_service_that_selects_nothing(lab, load):
    text = service().replace("{app: web}", "{app: nobody}")
    assert lab.apply(text, source="nobody.yaml", wait=0) == ["Service/web"]
    lab.delete(text)


def test_no_request_failed_meanwhile(load):
    result = load.result()
    assert result.requests > 100 and result.failed == 0, str(result)
    print(json.dumps({"inputs": len(CATALOGUE), "refused": len(CATALOGUE), "failed_requests": result.failed}))
