"""The `meshlab` command against a real stage-1 lab: up, status --json, traffic --json, kill,
restore, down; bad arguments exit 2 with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meshlab.backends.local import paths
from conftest import wait_no_processes

pytestmark = pytest.mark.integration
LAB = "clilab"
_SCRIPT = Path(sys.executable).with_name("meshlab")
MESHLAB = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "meshlab.cli"]


def meshlab_cmd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(MESHLAB + list(args), capture_output=True, text=True, timeout=timeout)


def ok(*args: str) -> str:
    run = meshlab_cmd(*args)
    assert run.returncode == 0, (args, run.stdout, run.stderr)
    return run.stdout


def status() -> dict:
    return json.loads(ok("status", "--lab", LAB, "--json"))


def traffic(n: int = 40) -> dict:
    return json.loads(ok("traffic", "--lab", LAB, "-n", str(n), "--json"))


def restore() -> None:
    assert "restored" in ok("restore", "--lab", LAB)  # returns once the pods serve again


def app_pods(data: dict) -> set[str]:
    return {h["name"] for p in data["paths"] for h in p["hops"] if h["kind"] == "app"}


@pytest.fixture(scope="module")
def lab():
    try:
        out = ok("up", "--lab", LAB, "--stage", "edge")
        yield out
    finally:
        meshlab_cmd("down", "--lab", LAB)
    assert not wait_no_processes(), "CLI lab left processes behind"


def test_up_prints_the_entry_and_how_to_stop(lab):
    assert f"lab {LAB}: stage 1 is up" in lab
    assert "entry: http://127." in lab and f"meshlab down --lab {LAB}" in lab


def test_status_json_lists_nodes_pods_and_proxies(lab):
    data = status()
    assert [n["name"] for n in data["nodes"]] == ["node-1", "node-2", "node-3"]
    assert all(n["ready"] and n["ip"].startswith("127.") for n in data["nodes"])
    assert len(data["pods"]) == 8 and all(p["ready"] and p["phase"] == "Running" for p in data["pods"])
    assert {p["labels"].get("app") for p in data["pods"]} == {"frontend", "catalog", "reviews", "ratings", "edge"}
    [edge] = data["proxies"]
    assert edge["role"] == "edge" and edge["state"] == "running" and edge["admin_url"].startswith("http://127.")
    text = ok("status", "--lab", LAB)  # the human-readable form names the same things
    assert "node-1" in text and edge["name"] in text


def test_traffic_json_has_the_documented_keys(lab):
    data = traffic(40)
    assert {"requests", "ok", "success_rate", "latency_ms", "paths"} <= set(data)
    assert (data["requests"], data["ok"], data["success_rate"]) == (40, 40, 1.0)
    assert set(data["latency_ms"]) == {"p50", "p90", "p99"}
    assert 0 < data["latency_ms"]["p50"] <= data["latency_ms"]["p90"] <= data["latency_ms"]["p99"]
    assert data["paths"] and all(isinstance(p["count"], int) and p["count"] > 0 for p in data["paths"])
    for path in data["paths"]:
        assert all({"kind", "name"} <= set(h) for h in path["hops"])
        assert path["hops"][0]["kind"] == "proxy" and path["hops"][0]["role"] == "edge"
    text = ok("traffic", "--lab", LAB, "-n", "10")
    assert "10 requests" in text and "(edge@node-1)" in text


def test_kill_pod_then_restore(lab):
    out = ok("kill", "--lab", LAB, "pod", "ratings")
    assert out.startswith("killed: ratings-")
    pod = out.split()[1].split("/")[0]
    try:
        assert {p["name"]: p["phase"] for p in status()["pods"]}[pod] == "Killed"
        data = traffic(40)
        assert data["ok"] == 40 and pod not in app_pods(data)
    finally:
        restore()
    assert pod in app_pods(traffic(40))


def test_kill_node_then_restore(lab):
    out = ok("kill", "--lab", LAB, "node", "node-3")
    try:
        data = status()
        assert [n["ready"] for n in data["nodes"] if n["name"] == "node-3"] == [False]
        on_node = [p for p in data["pods"] if p["node"] == "node-3"]
        assert on_node and all(p["phase"] == "Killed" for p in on_node)
        assert all(p["name"] in out for p in on_node)
        assert not {p["name"] for p in on_node} & app_pods(traffic(40))
    finally:
        restore()
    data = status()
    assert all(n["ready"] for n in data["nodes"]) and all(p["ready"] for p in data["pods"])


def test_kill_proxy_then_restore(lab):
    out = ok("kill", "--lab", LAB, "proxy", "edge")
    assert out.startswith("killed: edge-")
    try:
        assert status()["proxies"][0]["state"] == "killed"
        data = traffic(10)  # nothing listens at the entry any more: every request fails
        assert data["ok"] == 0 and data["statuses"] == {"0": 10}
    finally:
        restore()
    assert traffic(20)["ok"] == 20


BAD_ARGS = {
    "unknown-stage": (["up", "--lab", "nolab", "--stage", "banana"], "unknown stage"),
    "bad-lab-name": (["status", "--lab", "Bad_Name"], "not valid"),
    "lab-not-running": (["traffic", "--lab", "nolab"], "not running"),
    "no-such-pod": (["kill", "--lab", LAB, "pod", "nosuch"], "no pod nosuch"),
    "no-such-node": (["kill", "--lab", LAB, "node", "node-9"], "no node node-9"),
    "missing-file": (["apply", "--lab", LAB, "-f", "/nonexistent/x.yaml"], "cannot read"),
}
USAGE_ERRORS = {  # caught by argparse, which prints its usage before the error
    "unknown-command": (["bogus"], "invalid choice"),
    "bad-kill-target": (["kill", "banana", "x"], "invalid choice"),
    "missing-name": (["kill", "pod"], "required"),
    "not-a-number": (["traffic", "-n", "abc"], "invalid int"),
}


def check_bad(argv: list[str], expected: str) -> None:
    run = meshlab_cmd(*argv)
    assert run.returncode == 2, (argv, run.stdout, run.stderr)
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and expected in lines[0], run.stderr
    assert "error" in lines[0]


@pytest.mark.parametrize("case", list(BAD_ARGS))
def test_bad_arguments_exit_2_with_one_line(lab, case):
    check_bad(*BAD_ARGS[case])


@pytest.mark.parametrize("case", list(USAGE_ERRORS))
def test_usage_errors_exit_2_and_end_with_the_error(case):
    argv, expected = USAGE_ERRORS[case]
    run = meshlab_cmd(*argv)
    assert run.returncode == 2 and run.stdout == ""
    assert expected in run.stderr.splitlines()[-1] and "error:" in run.stderr.splitlines()[-1]


def test_usage_errors_are_one_line():
    for argv, expected in USAGE_ERRORS.values():
        check_bad(argv, expected)


def test_down_removes_the_lab_and_is_idempotent(lab):
    assert f"lab {LAB} is down" in ok("down", "--lab", LAB)
    assert not wait_no_processes(timeout=5)
    assert not paths.lab_dir(LAB).exists()
    assert f"lab {LAB} is down" in ok("down", "--lab", LAB)
    check_bad(["status", "--lab", LAB], "not running")
