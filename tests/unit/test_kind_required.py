"""The kind suite's gate: skip when a tool is missing, fail with one line naming it under MESHLAB_REQUIRE_KIND=1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_kube_backend import FakeRunner

import kind_required
from kind_required import Missing, decide, probe, required
from meshlab.backends import istio

KIND = [("kind", "install kind: `go install sigs.k8s.io/kind@latest`")]
ENGINE = [("docker engine (not running or not reachable)", "start the Docker engine")]
ISTIOCTL = [("istioctl", "get istioctl 1.30.3")]
ON = {"MESHLAB_REQUIRE_KIND": "1"}
CONFTEST = Path(__file__).resolve().parents[1] / "kind" / "conftest.py"
pytest_plugins = ["pytester"]


@pytest.mark.parametrize("value", ["1", "true", "YES", "on", "2"])
def test_any_value_but_off_requires_the_suite(value):
    assert required({"MESHLAB_REQUIRE_KIND": value})


@pytest.mark.parametrize("env", [{}, {"MESHLAB_REQUIRE_KIND": ""}, {"MESHLAB_REQUIRE_KIND": "0"},
                                 {"MESHLAB_REQUIRE_KIND": " False "}, {"MESHLAB_REQUIRE_KIND": "no"}])
def test_unset_empty_or_off_does_not(env):
    assert not required(env)


def test_with_everything_there_the_tests_run_either_way():
    assert decide({}, Missing()).action == decide(ON, Missing()).action == "run"


def test_a_missing_tool_skips_and_says_how_to_make_it_fail():
    verdict = decide({}, Missing(kind=KIND + ENGINE))
    assert verdict.action == "skip"
    assert verdict.reason == ("kind backend not available here: missing kind, docker engine (not running or not "
                              "reachable) (set MESHLAB_REQUIRE_KIND=1 to make this a failure)")


def test_required_a_missing_tool_fails_in_one_line_naming_it_and_how_to_get_it():
    verdict = decide(ON, Missing(kind=KIND))
    assert verdict.action == "fail" and "\n" not in verdict.reason
    assert verdict.reason == ("MESHLAB_REQUIRE_KIND=1 but the kind suite cannot run here: missing kind; "
                              "how: install kind: `go install sigs.k8s.io/kind@latest`")


def test_required_no_running_docker_fails():
    verdict = decide(ON, Missing(kind=ENGINE))
    assert verdict.action == "fail" and "missing docker engine (not running or not reachable)" in verdict.reason


def test_istioctl_is_required_only_when_the_whole_suite_is():
    assert decide({}, Missing(istio=ISTIOCTL)).action == "run"  # stages 1-4 run; 5 and 6 skip on their own
    verdict = decide(ON, Missing(kind=KIND, istio=ISTIOCTL))
    assert verdict.action == "fail" and "missing kind, istioctl; how: install kind" in verdict.reason


# ---- probe: what this machine lacks, asked through a fake runner ----------------------------------------------


def istioctl_says(version: str) -> FakeRunner:
    reply = json.dumps({"clientVersion": {"version": version}})
    return FakeRunner().on("docker", "info", stdout="27.0.1\n").on("istioctl", "version", stdout=reply)


def every(tool):
    return f"/usr/bin/{tool}"


def test_probe_finds_nothing_missing_with_the_pinned_istioctl():
    assert probe(istioctl_says(istio.VERSION), which=every) == Missing()


def test_probe_names_each_missing_tool():
    missing = probe(FakeRunner(), which=lambda tool: None)
    assert [what for what, _ in missing.kind] == ["docker", "kind", "kubectl"]
    assert [what for what, _ in missing.istio] == ["istioctl"] and istio.VERSION in missing.istio[0][1]


def test_probe_sees_a_docker_engine_that_does_not_answer():
    runner = istioctl_says(istio.VERSION).on("docker", "info", rc=1, stderr="Cannot connect to the Docker daemon")
    missing = probe(runner, which=every)
    assert [what for what, _ in missing.kind] == ["docker engine (not running or not reachable)"]


def test_probe_refuses_an_istioctl_of_another_minor_version():
    missing = probe(istioctl_says("1.22.0"), which=every)
    assert missing.kind == [] and missing.istio[0][0] == f"istioctl {istio.VERSION} (found 1.22.0)"


# ---- the gate in tests/kind/conftest.py, in a pytest run of its own ------------------------------------------


@pytest.fixture
def gated(pytester, monkeypatch):
    """A pytester folder with the kind suite's conftest, one kind test and one other; probe() answers `missing`."""
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini("[pytest]\nmarkers =\n    kind: opt-in\n")
    pytester.makepyfile(test_gate="import pytest\n\n@pytest.mark.kind\ndef test_on_kind():\n    pass\n\n"
                                  "def test_elsewhere():\n    pass\n")

    def run(env: dict, missing: Missing):
        monkeypatch.setattr(kind_required, "probe", lambda: missing)
        monkeypatch.delenv("MESHLAB_REQUIRE_KIND", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return pytester.runpytest_inprocess("-rA", "-p", "no:cacheprovider")

    return run


def test_the_gate_skips_a_kind_test_when_kind_is_missing(gated):
    gated({}, Missing(kind=KIND)).assert_outcomes(passed=1, skipped=1)


def test_the_gate_fails_a_kind_test_loudly_when_required(gated):
    result = gated(ON, Missing(kind=KIND))
    result.assert_outcomes(passed=1, errors=1)
    lines = result.stdout.lines
    at = next(i for i, line in enumerate(lines) if "ERROR at setup of test_on_kind" in line)
    assert lines[at + 1] == decide(ON, Missing(kind=KIND)).reason and lines[at + 2].startswith("====")  # no traceback


def test_the_gate_lets_a_kind_test_run_when_everything_is_there(gated):
    gated(ON, Missing()).assert_outcomes(passed=2)


def test_a_failed_kind_test_leaves_its_labs_logs_in_meshlab_kind_logs(gated, pytester, tmp_path):
    pytester.makepyfile(test_gate="import pytest\n\nclass Lab:\n    def logs(self, dest):\n"
                                  "        dest.mkdir(parents=True)\n        (dest / 'edge.log').write_text('edge said no')\n\n"
                                  "@pytest.fixture\ndef lab():\n    return Lab()\n\n"
                                  "@pytest.mark.kind\ndef test_on_kind(lab):\n    assert False\n\n"
                                  "@pytest.mark.kind\ndef test_passes(lab):\n    pass\n")
    result = gated({**ON, "MESHLAB_KIND_LOGS": str(tmp_path / "logs")}, Missing())
    result.assert_outcomes(passed=1, failed=1)
    assert [p.name for p in (tmp_path / "logs").iterdir()] == ["test_gate.py_test_on_kind"]
    assert (tmp_path / "logs" / "test_gate.py_test_on_kind" / "edge.log").read_text() == "edge said no"
    result.stdout.fnmatch_lines(["*meshlab logs*", f"the lab's container logs are in {tmp_path / 'logs'}/test_gate.py_test_on_kind"])
