"""Bad input gets one clear line (what, where, a hint) from Python and from the CLI, stores nothing,
and the lab keeps serving: background load sees zero failed requests while the bad applies land."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import meshlab
from meshlab import cli, traffic
from conftest import wait_no_processes

pytestmark = pytest.mark.integration
LAB = "badin"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# A tiny Envoy that answers from its ConfigMap: the target of the bad Envoy config.
ECHO_CONFIG = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: echo-envoy}
data:
  envoy.yaml: |
    admin: {address: {socket_address: {address: 0.0.0.0, port_value: 15000}}}
    static_resources:
      listeners:
      - name: http
        address: {socket_address: {address: 0.0.0.0, port_value: 8080}}
        filter_chains:
        - filters:
          - name: envoy.filters.network.http_connection_manager
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
              stat_prefix: echo
              route_config:
                virtual_hosts:
                - name: all
                  domains: ["*"]
                  routes:
                  - match: {prefix: /}
                    ROUTE
              http_filters:
              - name: envoy.filters.http.router
                typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
"""
GOOD_ROUTE = """direct_response: {status: 200, body: {inline_string: '{"service": "echo", "version": "v1"}'}}"""
ECHO_WORKLOAD = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: envoy
        image: envoyproxy/envoy:v1.36-latest
        args: [-c, /etc/envoy/envoy.yaml, -l, warning]
        ports: [{containerPort: 8080, name: http}]
        volumeMounts: [{name: config, mountPath: /etc/envoy}]
      volumes: [{name: config, configMap: {name: echo-envoy}}]
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 8080, targetPort: http}]
"""
# Every bad case starts with a valid object: a rejected apply must not store it either.
CANARY = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: canary}\ndata: {a: b}\n---\n"
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      EXTRA
      containers: [{name: web, image: "python:3.12", command: [python, -m, http.server]}]
"""
CASES = {  # id: (YAML, what the one line must name)
    "malformed-yaml": ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n data: [\n",
                       ["invalid YAML"]),
    "kind-statefulset": ("apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n"
                         "  selector: {matchLabels: {app: db}}\n  serviceName: db\n  template:\n"
                         "    metadata: {labels: {app: db}}\n    spec:\n"
                         "      containers: [{name: db, image: 'python:3.12'}]\n",
                         ["StatefulSet/db", "StatefulSet"]),
    "kind-cronjob": ("apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: tick}\nspec:\n  schedule: '* * * * *'\n"
                     "  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n"
                     "          containers: [{name: t, image: 'python:3.12'}]\n",
                     ["CronJob/tick"]),
    "kind-gateway": ("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n"
                     "  gatewayClassName: edge\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n",
                     ["Gateway/gw"]),
    "unsupported-field": (DEPLOYMENT.replace("EXTRA", "hostNetwork: true"),
                          ["Deployment/web", "spec.template.spec.hostNetwork", "not supported"]),
    "schema-invalid": ("apiVersion: v1\nkind: Service\nmetadata: {name: shop}\nspec:\n  ports: [{port: eighty}]\n",
                       ["Service/shop", "spec.ports.0.port", "eighty"]),
    "envoy-invalid": (ECHO_CONFIG.replace("ROUTE", "route: {cluster: nowhere}"),
                      ["Envoy", "echo", "nowhere"]),
}


@pytest.fixture(scope="module")
def lab():
    lab = meshlab.Lab(LAB)
    try:
        lab.up(stage="edge", quiet=True)
        lab.apply(ECHO_CONFIG.replace("ROUTE", GOOD_ROUTE) + "---\n" + ECHO_WORKLOAD, source="echo.yaml")
        yield lab
    finally:
        lab.down()
    assert not wait_no_processes(), "bad-input lab left processes behind"


def echo_url(lab) -> str:
    svc = next(s for s in lab.backend.status()["services"] if s["name"] == "echo")
    return f"http://{svc['cluster_ip']}:8080/"


@pytest.fixture(scope="module")
def loads(lab):
    """Continuous load on the edge and on the echo Envoy while the bad applies land."""
    running = [traffic.background(lab.url, concurrency=2), traffic.background(echo_url(lab), concurrency=1)]
    yield running
    for load in running:
        load.result()


def check_one_line(message: str, source: str, names: list[str]) -> None:
    assert "\n" not in message, message
    assert source in message, f"{message!r} does not say where ({source})"
    for name in names:
        assert name in message, f"{message!r} does not name {name!r}"
    assert "(hint: " in message and not message.endswith("(hint: )"), f"{message!r} has no hint"


@pytest.mark.parametrize("case", list(CASES))
def test_bad_apply_in_python_is_one_line_and_stores_nothing(lab, loads, case):
    text, names = CASES[case]
    source = f"{case}.yaml"
    with pytest.raises(meshlab.MeshlabError) as caught:
        lab.apply(CANARY + text, source=source)
    check_one_line(str(caught.value), source, names)
    assert caught.value.hint
    if case == "malformed-yaml":
        assert re.search(rf"{re.escape(source)}:\d+:\d+: ", str(caught.value)), "a YAML error names line:column"
    assert "canary" not in [d["metadata"]["name"] for d in lab.backend.objects("ConfigMap")]


def check_cli_answer(code: int, out: str, err: str, path, case: str) -> None:
    assert code == 2, (out, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    check_one_line(lines[0], str(path), CASES[case][1])


@pytest.mark.parametrize("case", list(CASES))
def test_bad_apply_in_the_cli_exits_2_with_one_line(lab, loads, case, tmp_path, capsys):
    """`meshlab apply -f bad.yaml`, run in this process (a new interpreter per case costs seconds)."""
    path = tmp_path / f"{case}.yaml"
    path.write_text(CANARY + CASES[case][0])
    code = cli.main(["apply", "--lab", LAB, "-f", str(path)])
    captured = capsys.readouterr()
    check_cli_answer(code, captured.out, captured.err, path, case)


def test_bad_apply_through_the_meshlab_command(lab, loads, tmp_path):
    """The same through the installed console script, as a learner's terminal runs it."""
    path = tmp_path / "envoy-invalid.yaml"
    path.write_text(CANARY + CASES["envoy-invalid"][0])
    script = Path(sys.executable).with_name("meshlab")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "meshlab.cli"]
    run = subprocess.run(argv + ["apply", "--lab", LAB, "-f", str(path)], capture_output=True, text=True, timeout=120)
    check_cli_answer(run.returncode, run.stdout, run.stderr, path, "envoy-invalid")


def test_the_previous_envoy_config_keeps_serving(lab):
    body = NO_PROXY.open(echo_url(lab), timeout=3).read()
    assert b'"version": "v1"' in body
    echo = [d for d in lab.backend.objects("ConfigMap") if d["metadata"]["name"] == "echo-envoy"]
    assert "direct_response" in echo[0]["data"]["envoy.yaml"]


def test_no_request_failed_during_the_bad_applies(loads):
    edge, echo = (load.result() for load in loads)
    assert edge.requests > 50 and echo.requests > 20, (str(edge), str(echo))
    assert edge.failed == 0, str(edge)
    assert echo.failed == 0, str(echo)
