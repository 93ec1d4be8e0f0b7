"""The maintainer's CI (.github/workflows): valid against GitHub's workflow schema (and actionlint where present); the jobs run what they say."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from meshlab.backends import istio

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def schema_errors(path: Path) -> list[str]:
    """Where a workflow breaks SchemaStore's GitHub workflow schema (vendored by check-jsonschema, a dev extra)."""
    from importlib.resources import files

    import jsonschema

    schema = json.loads((files("check_jsonschema") / "builtin_schemas/vendor/github-workflows.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    doc = yaml.safe_load(path.read_text())
    if True in doc:
        doc["on"] = doc.pop(True)  # YAML 1.1 reads the bare key `on` as true; GitHub reads it as "on"
    return [f"{e.json_path}: {e.message[:120]}" for e in validator.iter_errors(doc)]


def lint(*files: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess | None:
    """actionlint, when a maintainer has it on PATH (not a dependency: PyPI has no official wheel of it)."""
    found = shutil.which("actionlint")
    return found and subprocess.run([found, "-no-color", "-oneline", *map(str, files)], cwd=cwd,
                                    capture_output=True, text=True, timeout=60)


def workflow(name: str) -> dict:
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the bare key `on` as true
    return doc


def commands(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_the_workflows_match_github_actions_schema():
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "kind.yml"]
    assert {p.name: schema_errors(p) for p in WORKFLOWS} == {"ci.yml": [], "kind.yml": []}


def test_the_schema_check_does_report_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  t:\n    runs_on: ubuntu-latest\n    steps:\n      - run: echo hi\n")
    assert any(e.startswith("$.jobs.t") for e in schema_errors(bad))


def test_actionlint_reports_nothing_when_a_maintainer_has_it():
    result = lint(*WORKFLOWS)
    if result is None:
        pytest.skip("actionlint is not on PATH (optional: the schema test above always runs)")
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_tests_job_runs_ci_run_on_ubuntu_with_python_3_11():
    doc = workflow("ci.yml")
    assert {"push", "pull_request"} <= set(doc["on"])
    job = doc["jobs"]["tests"]
    assert job["runs-on"] == "ubuntu-latest" and job["timeout-minutes"] <= 60
    assert job["container"].startswith("python:3.11-")  # Debian, as root: scripts/setup installs chromium
    assert "bash .ci/run" in commands(job)
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("exec scripts/test")


def test_the_kind_job_requires_every_tool_and_runs_the_kind_suite_and_the_notebooks():
    doc = workflow("kind.yml")
    job = doc["jobs"]["kind"]
    assert job["runs-on"] == "ubuntu-latest" and 0 < job["timeout-minutes"] <= 360
    assert job["env"]["MESHLAB_REQUIRE_KIND"] == "1" and job["env"]["MESHLAB_BACKEND"] == "kind"
    assert set(job["strategy"]["matrix"]["part"]) == {"tests", "notebooks"}
    assert 'scripts/test-kind "${{ matrix.part }}"' in commands(job)
    assert any(s.get("with", {}).get("python-version") == "3.11" for s in job["steps"])
    run = commands(job)
    assert "/dl/${KIND_VERSION}/kind-linux-amd64" in run and "/${KUBECTL_VERSION}/bin/linux/amd64/kubectl" in run
    assert 'archive="istioctl-${ISTIO_VERSION}-linux-amd64.tar.gz"' in run
    assert "install -m 0755 kind kubectl istioctl" in run and run.count("sha256sum -c -") == 3


def test_the_kind_job_pins_its_tools_and_istio_is_meshlabs_pin():
    env = workflow("kind.yml")["env"]
    assert re.fullmatch(r"v\d+\.\d+\.\d+", env["KIND_VERSION"]) and re.fullmatch(r"v\d+\.\d+\.\d+", env["KUBECTL_VERSION"])
    assert env["ISTIO_VERSION"] == istio.VERSION


def test_a_failed_kind_job_uploads_meshlab_logs():
    steps = workflow("kind.yml")["jobs"]["kind"]["steps"]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "failure()" and upload["with"]["name"].startswith("meshlab-logs")
    assert upload["with"]["path"] == "test-output/meshlab-logs"


def test_scripts_test_kind_requires_kind_and_runs_both_parts():
    script = ROOT / "scripts" / "test-kind"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    assert "export MESHLAB_REQUIRE_KIND=1 MESHLAB_BACKEND=kind" in text
    assert "pytest -m kind tests/kind" in text and "--nbval-lax" in text and "lessons solutions" in text
    assert "test-output/meshlab-logs" in text
    wrong = subprocess.run([str(script), "everything"], capture_output=True, text=True, timeout=10)
    assert wrong.returncode == 2 and wrong.stderr.startswith("usage: scripts/test-kind")
