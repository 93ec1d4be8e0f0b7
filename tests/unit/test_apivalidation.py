"""The API server's rules, locally, as a table: each bad object and the one line the API server would give;
every stage's manifests (and the objects meshlab itself applies) pass; the strict YAML loader."""

from __future__ import annotations

import copy
import io

import pytest

from meshlab import apivalidation, manifests, stages
from meshlab.apivalidation import rules
from meshlab.backends.base import MeshlabError
from meshlab.backends.local import ingress, paths, volumes
from meshlab.controlplane import deploy


def deployment(**spec) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "python:3.12", "command": ["python"]}],
                                           "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}]}}, **spec}}


def service(*ports, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "shop"},
            "spec": {"selector": {"app": "web"}, "ports": list(ports) or [{"port": 80}], **spec}}


def configmap(data: dict, name: str = "cfg") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def ingress_with(path: dict | None = None, **spec) -> dict:
    item = {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "shop", "port": {"number": 80}}}, **(path or {})}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "edge"},
            "spec": {"ingressClassName": "edge", "rules": [{"http": {"paths": [item]}}], **spec}}


def with_(doc: dict, where: str, value) -> dict:
    """A copy of doc with one dotted field set (list indexes as numbers)."""
    doc = copy.deepcopy(doc)
    parts = where.split(".")
    target = doc
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(parts[-1]) if parts[-1].isdigit() else parts[-1]] = value
    return doc


def container(**fields) -> dict:
    return with_(deployment(), "spec.template.spec.containers.0", {"name": "web", "image": "python:3.12", **fields})


DNS_SUBDOMAIN = "a lowercase RFC 1123 subdomain must consist of"
REFUSED = {  # id: (object, the exact words the one line must hold)
    "replicas-negative": (deployment(replicas=-1),
                          'Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0'),
    "name-underscore": (with_(configmap({}), "metadata.name", "Bad_Name."), f'metadata.name: Invalid value: "Bad_Name.": {DNS_SUBDOMAIN}'),
    "name-254": (with_(configmap({}), "metadata.name", "a" * 254), "must be no more than 253 characters"),
    "service-name-64": (with_(service(), "metadata.name", "s" * 64), "must be no more than 63 characters"),
    "service-name-dns1035": (with_(service(), "metadata.name", "1shop"), "a DNS-1035 label must consist of"),
    "namespace-name-dot": ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}}, "a lowercase RFC 1123 label"),
    "namespace-field": (with_(configmap({}), "metadata.namespace", "Shop"), 'metadata.namespace: Invalid value: "Shop"'),
    "label-key": (with_(configmap({}), "metadata.labels", {"bad key": "x"}), 'metadata.labels: Invalid value: "bad key": name part must consist'),
    "label-key-prefix": (with_(configmap({}), "metadata.labels", {"Ex.com/a": "x"}), "prefix part a lowercase RFC 1123 subdomain"),
    "label-value-long": (with_(configmap({}), "metadata.labels", {"a": "v" * 64}), "must be no more than 63 characters"),
    "label-value-chars": (with_(configmap({}), "metadata.labels", {"a": "-x"}), "a valid label must be an empty string"),
    "annotation-size": (with_(configmap({}), "metadata.annotations", {"a": "x" * (256 * 1024)}),
                        "metadata.annotations: Too long: may not be more than 262144 bytes"),
    "annotation-key": (with_(configmap({}), "metadata.annotations", {"a/b/c": "x"}), "a qualified name must consist"),
    "configmap-key-traversal": (configmap({"../../escape-key.txt": "x"}),
                                'data[../../escape-key.txt]: Invalid value: "../../escape-key.txt": a valid config key'),
    "configmap-key-slash": (configmap({"conf/app.yaml": "x"}), "regex used for validation is '[-._a-zA-Z0-9]+'"),
    "configmap-key-dot": (configmap({".": "x"}), "must not be '.'"),
    "configmap-key-dotdot": (configmap({"..": "x"}), "must not be '..'"),
    "configmap-key-dotdot-prefix": (configmap({"..data": "x"}), "must not start with '..'"),
    "configmap-too-big": (configmap({"a": "x" * (1024 * 1024)}), "Too long: may not be more than 1048576 bytes"),
    "items-path-dotdot": (with_(deployment(), "spec.template.spec.volumes.0.configMap.items", [{"key": "a", "path": "../x"}]),
                          'spec.template.spec.volumes[0].configMap.items[0].path: Invalid value: "../x": must not contain \'..\''),
    "items-path-absolute": (with_(deployment(), "spec.template.spec.volumes.0.configMap.items", [{"key": "a", "path": "/etc/x"}]),
                            "must be a relative path"),
    "items-path-inner-dotdot": (with_(deployment(), "spec.template.spec.volumes.0.configMap.items", [{"key": "a", "path": "a/../../x"}]),
                                "must not contain '..'"),
    "items-key-missing": (with_(deployment(), "spec.template.spec.volumes.0.configMap.items", [{"path": "x"}]),
                          "items[0].key: Required value"),
    "default-mode": (with_(deployment(), "spec.template.spec.volumes.0.configMap.defaultMode", 0o1000),
                     "must be a number between 0 and 0777 (octal), both inclusive"),
    "subpath-dotdot": (container(volumeMounts=[{"name": "cfg", "mountPath": "/etc/x", "subPath": "../../x"}]),
                       "volumeMounts[0].subPath: Invalid value: \"../../x\": must not contain '..'"),
    "mount-unknown-volume": (container(volumeMounts=[{"name": "nope", "mountPath": "/x"}]),
                             'volumeMounts[0].name: Not found: "nope"'),
    "mount-path-twice": (container(volumeMounts=[{"name": "cfg", "mountPath": "/x"}, {"name": "cfg", "mountPath": "/x"}]),
                         'volumeMounts[1].mountPath: Invalid value: "/x": must be unique'),
    "volume-name-twice": (with_(deployment(), "spec.template.spec.volumes", [{"name": "v", "configMap": {"name": "a"}}] * 2),
                          'volumes[1].name: Duplicate value: "v"'),
    "container-port-0": (container(ports=[{"containerPort": 0}]),
                         "containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive"),
    "container-port-protocol": (container(ports=[{"containerPort": 80, "protocol": "HTTP"}]),
                                'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"'),
    "container-port-name": (container(ports=[{"containerPort": 80, "name": "http-port-too-long"}]),
                            "must be no more than 15 characters"),
    "container-name": (container(name="Web"), 'containers[0].name: Invalid value: "Web"'),
    "container-names-twice": (with_(deployment(), "spec.template.spec.containers",
                                    [{"name": "a", "image": "python:3.12"}, {"name": "a", "image": "python:3.12"}]),
                              'containers[1].name: Duplicate value: "a"'),
    "env-name": (container(env=[{"name": "A=B", "value": "x"}]), "printable ASCII characters other than '='"),
    "probe-port": (container(readinessProbe={"httpGet": {"path": "/", "port": 70000}}),
                   "readinessProbe.httpGet.port: Invalid value: 70000: must be between 1 and 65535, inclusive"),
    "restart-policy": (with_(deployment(), "spec.template.spec.restartPolicy", "Never"),
                       'restartPolicy: Unsupported value: "Never": supported values: "Always"'),
    "selector-mismatch": (with_(deployment(), "spec.template.metadata.labels", {"app": "other"}),
                          'spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: '
                          "`selector` does not match template `labels`"),
    "selector-empty": (with_(deployment(), "spec.selector", {}), "empty selector is invalid for deployment"),
    "strategy": (deployment(strategy={"type": "Blue"}), 'Unsupported value: "Blue": supported values: "Recreate", "RollingUpdate"'),
    "daemonset-selector": ({**with_(deployment(), "spec.template.metadata.labels", {"app": "x"}), "kind": "DaemonSet"},
                           'DaemonSet.apps "web" is invalid: spec.template.metadata.labels'),
    "service-port-0": (service({"port": 0}), "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
    "service-port-70000": (service({"port": 70000}), "Invalid value: 70000: must be between 1 and 65535, inclusive"),
    "service-protocol": (service({"port": 80, "protocol": "tcp"}), 'Unsupported value: "tcp"'),
    "service-target-port": (service({"port": 80, "targetPort": 70000}), "spec.ports[0].targetPort: Invalid value: 70000"),
    "service-target-name": (service({"port": 80, "targetPort": "HTTP"}),
                            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"),
    "service-target-digits": (service({"port": 80, "targetPort": "8080"}), "must contain at least one letter (a-z)"),
    "service-names-required": (service({"port": 80, "name": "a"}, {"port": 81}), "spec.ports[1].name: Required value"),
    "service-names-twice": (service({"port": 80, "name": "a"}, {"port": 81, "name": "a"}), 'spec.ports[1].name: Duplicate value: "a"'),
    "service-port-twice": (service({"port": 80, "name": "a"}, {"port": 80, "name": "b"}), 'spec.ports[1]: Duplicate value: "80/TCP"'),
    "service-no-ports": (with_(service(), "spec.ports", []), "spec.ports: Required value"),
    "service-type": (service(type="Internal"), 'supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'),
    "service-selector": (service(selector={"app": "a b"}), 'spec.selector: Invalid value: "a b"'),
    "ingress-path-type": (ingress_with({"pathType": "Sideways"}),
                          'Ingress.networking.k8s.io "edge" is invalid: spec.rules[0].http.paths[0].pathType: '
                          'Unsupported value: "Sideways": supported values: "Exact", "ImplementationSpecific", "Prefix"'),
    "ingress-path-type-missing": (ingress_with({"pathType": None}), "pathType: Required value: pathType must be specified"),
    "ingress-path-relative": (ingress_with({"path": "shop"}), 'paths[0].path: Invalid value: "shop": must be an absolute path'),
    "ingress-path-double-slash": (ingress_with({"path": "/a//b"}), "must not contain '//'"),
    "ingress-impl-relative": (ingress_with({"path": "x", "pathType": "ImplementationSpecific"}), "must be an absolute path"),
    "ingress-no-backend": (ingress_with({"backend": {}}),
                           'paths[0].backend: Invalid value: "": resource or service backend is required'),
    "ingress-two-backends": (ingress_with({"backend": {"service": {"name": "shop", "port": {"number": 80}},
                                                       "resource": {"kind": "Bucket", "name": "b"}}}),
                             "cannot set both resource and service backends"),
    "ingress-port-both": (ingress_with({"backend": {"service": {"name": "shop", "port": {"number": 80, "name": "http"}}}}),
                          "cannot set both port name & port number"),
    "ingress-port-none": (ingress_with({"backend": {"service": {"name": "shop", "port": {}}}}), "port name or number is required"),
    "ingress-port-number": (ingress_with({"backend": {"service": {"name": "shop", "port": {"number": 0}}}}),
                            "backend.service.port.number: Invalid value: 0"),
    "ingress-service-name": (ingress_with({"backend": {"service": {"name": "Shop", "port": {"number": 80}}}}),
                             'backend.service.name: Invalid value: "Shop": a DNS-1035 label'),
    "ingress-no-paths": (with_(ingress_with(), "spec.rules.0.http.paths", []), "spec.rules[0].http.paths: Required value"),
    "ingress-empty": (with_(ingress_with(), "spec.rules", []), "either `defaultBackend` or `rules` must be specified"),
    "ingress-default-backend": (ingress_with(defaultBackend={}), "spec.defaultBackend: Invalid value: \"\": resource or service"),
    "ingress-host-ip": (with_(ingress_with(), "spec.rules.0.host", "10.0.0.1"), "must be a DNS name, not an IP address"),
    "ingress-host-wildcard": (with_(ingress_with(), "spec.rules.0.host", "*.Shop"), "a wildcard DNS-1123 subdomain"),
    "ingressclass-controller": ({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "edge"},
                                 "spec": {}}, "spec.controller: Required value"),
    "istio-name": ({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "Reviews"},
                    "spec": {}}, 'VirtualService.networking.istio.io "Reviews" is invalid: metadata.name'),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_the_api_server_refuses(case):
    doc, words = REFUSED[case]
    with pytest.raises(MeshlabError) as caught:
        apivalidation.check([doc], "bad.yaml")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("bad.yaml: ") and caught.value.hint, message
    assert words in message, message


def test_several_errors_are_listed_in_brackets_on_one_line():
    message = str(pytest.raises(MeshlabError, apivalidation.check, [service({"port": 0}, {"port": 70000})]).value)
    assert 'Service "shop" is invalid: [spec.ports[0].name: Required value' in message and "\n" not in message


ACCEPTED = {  # Kubernetes accepts these; so must local
    "service-selects-nothing": service(selector={"app": "nobody"}),
    "target-port-name": service({"port": 80, "targetPort": "http"}),
    "target-port-zero-defaults": service({"port": 80, "targetPort": 0}),
    "headless-without-ports": with_(service(clusterIP="None"), "spec.ports", []),
    "configmap-dotted-keys": configmap({"envoy.yaml": "x", "a_b-c.d": "y", ".hidden": "z"}),
    "items-in-subfolder": with_(deployment(), "spec.template.spec.volumes.0.configMap.items", [{"key": "a", "path": "conf/a.yaml"}]),
    "label-prefix": with_(configmap({}), "metadata.labels", {"app.kubernetes.io/name": "shop", "empty": ""}),
    "ingress-rule-without-http": with_(ingress_with(), "spec.rules", [{"host": "shop.example.com"}]),
    "ingress-default-backend-only": {**ingress_with(defaultBackend={"service": {"name": "shop", "port": {"name": "http"}}}),
                                     "spec": {"defaultBackend": {"service": {"name": "shop", "port": {"name": "http"}}}}},
    "ingress-wildcard-host": with_(ingress_with(), "spec.rules.0.host", "*.example.com"),
    "ingress-impl-specific-empty-path": ingress_with({"path": "", "pathType": "ImplementationSpecific"}),
    "replicas-zero": deployment(replicas=0),
    "selector-subset-of-labels": with_(deployment(), "spec.template.metadata.labels", {"app": "web", "version": "v1"}),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_the_api_server_accepts(case):
    apivalidation.check([ACCEPTED[case]], "ok.yaml")


@pytest.mark.parametrize("stage", stages.deployable())
def test_every_stage_passes_the_api_server_rules(stage):
    apivalidation.check(stages.documents(stage), f"stage{stage}", namespaces=())


def test_stage5_variants_the_control_plane_and_the_edge_pass():
    apivalidation.check(stages.documents(5, injection=False), "stage5", namespaces=())
    apivalidation.check(deploy.documents(), "controlplane", namespaces=())
    apivalidation.check([ingress.deployment("node-1"), ingress.config_map("127.10.0.1", [stages.edge.ingress()], lambda *a: [])],
                        "edge", namespaces=["meshlab-system"])


def test_an_object_twice_in_one_apply_is_refused():
    message = str(pytest.raises(MeshlabError, apivalidation.check, [configmap({}), service(), configmap({"a": "b"})], "x.yaml").value)
    assert 'x.yaml: ConfigMap "cfg" appears twice in one apply (documents 1 and 3)' in message
    apivalidation.check([configmap({}), with_(configmap({}), "metadata.namespace", "other")], "x.yaml")  # another namespace


@pytest.mark.parametrize("docs, existing, refused", [
    ([with_(configmap({}), "metadata.namespace", "shop")], (), 'ConfigMap "cfg": namespaces "shop" not found'),
    ([with_(configmap({}), "metadata.namespace", "mesh-system")], (), 'namespaces "mesh-system" not found'),
    ([with_(configmap({}), "metadata.namespace", "shop"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}],
     (), 'namespaces "shop" not found'),  # kubectl applies in order: the Namespace must come first
    ([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}, with_(configmap({}), "metadata.namespace", "shop")],
     (), None),
    ([with_(configmap({}), "metadata.namespace", "mesh-system")], ("mesh-system",), None),
    ([configmap({}), with_(configmap({}, "b"), "metadata.namespace", "kube-system")], (), None),
])
def test_namespaces_must_exist(docs, existing, refused):
    if refused is None:
        apivalidation.check(docs, "ns.yaml", namespaces=existing)
    else:
        assert refused in str(pytest.raises(MeshlabError, apivalidation.check, docs, "ns.yaml", namespaces=existing).value)


@pytest.mark.parametrize("value, ok", [("a", True), ("a-b.c", True), ("-a", False), ("a" * 253, True), ("a" * 254, False),
                                       ("a..b", False), ("A", False)])
def test_dns_subdomain(value, ok):
    assert (rules.DNS1123_SUBDOMAIN.check(value) == []) is ok


@pytest.mark.parametrize("value, ok", [("http", True), ("h2c", True), ("80", False), ("a--b", False), ("-a", False),
                                       ("abcdefghijklmnop", False), ("Http", False)])
def test_port_names(value, ok):
    assert (rules.port_name(value) == []) is ok


# ---- the strict loader and bad bytes -------------------------------------------------------------------------------

def test_a_key_twice_in_one_mapping_is_refused_with_file_line():
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n"
    message = str(pytest.raises(MeshlabError, manifests.load, text, "dup.yaml").value)
    assert message.startswith('dup.yaml:5:3: invalid YAML: mapping key "name" already defined at line 4'), message


def test_merge_keys_still_override():
    (doc,) = manifests.load("base: &b {x: 1}\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata:\n  <<: *b\n  x: '2'\n")
    assert doc["data"] == {"x": "2"}


def test_non_utf8_bytes_get_one_line():
    message = str(pytest.raises(MeshlabError, manifests.load, b"kind: ConfigMap\ndata: {a: \xff}\n", "bad.yaml").value)
    assert message.startswith("bad.yaml:2: not UTF-8 text: byte 0xff at offset 26") and "\n" not in message


def test_utf8_bytes_and_a_bom_load():
    (doc,) = manifests.load("\ufeffapiVersion: v1\nkind: ConfigMap\nmetadata: {name: caf\u00e9s}\n".encode())
    assert doc["metadata"]["name"] == "caf\u00e9s"


def test_surrogates_in_text_get_one_line():
    text = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \xff}\n".decode("utf-8", "surrogateescape")
    assert "bad.yaml:3: not UTF-8 text" in str(pytest.raises(MeshlabError, manifests.load, text, "bad.yaml").value)


def test_files_over_5_mib_are_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (5 * 1024 * 1024 + 1))
    assert "more than the 5 MiB" in str(pytest.raises(MeshlabError, manifests.read_file, str(big)).value)
    assert "more than the 5 MiB" in str(pytest.raises(MeshlabError, manifests.load, "#" * (5 * 1024 * 1024 + 1)).value)
    assert "more than the 5 MiB" in str(pytest.raises(MeshlabError, manifests.read_file, "-",
                                                      io.BytesIO(b"#" * (6 * 1024 * 1024))).value)


def test_read_file_errors_are_one_line(tmp_path):
    assert "cannot read" in str(pytest.raises(MeshlabError, manifests.read_file, str(tmp_path / "nope.yaml")).value)
    (tmp_path / "latin1.yaml").write_bytes("name: caf\u00e9\n".encode("latin-1"))
    assert "not UTF-8 text: byte 0xe9" in str(pytest.raises(MeshlabError, manifests.read_file, str(tmp_path / "latin1.yaml")).value)


# ---- no file outside the volume --------------------------------------------------------------------------------------

def test_projection_writes_items_in_subfolders_and_links_the_top(tmp_path):
    volumes.project(tmp_path / "v", {"conf/app.yaml": "a: 1", "top.txt": "x"})
    assert (tmp_path / "v" / "conf" / "app.yaml").read_text() == "a: 1" and (tmp_path / "v" / "conf").is_symlink()
    volumes.project(tmp_path / "v", {"top.txt": "y"})
    assert not (tmp_path / "v" / "conf").exists() and (tmp_path / "v" / "top.txt").read_text() == "y"


@pytest.mark.parametrize("key", ["../escape.txt", "../../escape.txt", "a/../../escape.txt", "/tmp/escape.txt"])
def test_projection_never_writes_outside_its_folder(tmp_path, key):
    with pytest.raises(MeshlabError):
        volumes.project(tmp_path / "lab" / "v", {key: "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab"]
    assert not any(p.name == "escape.txt" for p in tmp_path.rglob("*"))


def test_inside_follows_symlinks(tmp_path):
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "out").symlink_to(tmp_path)
    with pytest.raises(MeshlabError):
        paths.inside(tmp_path / "lab", "out/x")
    assert paths.inside(tmp_path / "lab", "a/b") == (tmp_path / "lab" / "a" / "b").resolve()


def with_selector(labels, expressions=None) -> dict:
    doc = deployment()
    doc["spec"]["selector"] = {"matchLabels": labels, **({"matchExpressions": expressions} if expressions else {})}
    doc["spec"]["template"]["metadata"]["labels"] = dict(labels)
    return doc


@pytest.mark.parametrize("new, error", [
    (with_selector({"app": "web"}), None),
    (with_selector({"app": "web", "sidecar.istio.io/inject": "true"}),
     'Deployment.apps "web" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string'
     '{"app":"web", "sidecar.istio.io/inject":"true"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: '
     'field is immutable'),
    (with_selector({"app": "web2"}), "field is immutable"),
])
def test_a_deployment_selector_cannot_change_once_stored(new, error):
    stored = deployment()
    if error is None:
        apivalidation.check_updates([new], "d.yaml", lambda doc: stored)
        return
    with pytest.raises(MeshlabError) as caught:
        apivalidation.check_updates([new], "d.yaml", lambda doc: stored)
    assert error in caught.value.message and caught.value.message.startswith("d.yaml: ")
    assert "template" in caught.value.hint
    apivalidation.check_updates([new], "d.yaml", lambda doc: None)  # a first create may choose any selector


def test_a_stage_s_objects_share_nothing_and_dump_without_anchors():
    for number in stages.deployable():
        docs = stages.documents(number)
        text = manifests.dump(docs)
        assert "&id" not in text and "*id" not in text, number
        for doc in docs:
            if doc["kind"] == "Deployment":
                doc["spec"]["template"]["metadata"]["labels"]["x"] = "y"  # what lab 05's learner does
                assert "x" not in doc["spec"]["selector"]["matchLabels"] and "x" not in doc["metadata"]["labels"]
