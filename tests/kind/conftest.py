"""The opt-in kind suite's gate: every kind test skips when a tool is missing, or fails with one line naming it
under MESHLAB_REQUIRE_KIND=1 (CI); a failed test's lab leaves its container logs in $MESHLAB_KIND_LOGS."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import kind_required

VERDICT = pytest.StashKey[kind_required.Verdict]()


def pytest_runtest_setup(item):
    if item.get_closest_marker("kind") is None:
        return
    if VERDICT not in item.config.stash:  # probe once per session: `docker info` and `istioctl version` take a moment
        item.config.stash[VERDICT] = kind_required.decide(os.environ, kind_required.probe())
    verdict = item.config.stash[VERDICT]
    if verdict.action == "fail":
        pytest.fail(verdict.reason, pytrace=False)
    if verdict.action == "skip":
        pytest.skip(verdict.reason)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    folder = os.environ.get("MESHLAB_KIND_LOGS")
    lab = getattr(item, "funcargs", {}).get("lab")
    # At the call's report the module's lab is still up; its fixture takes it down later.
    if folder and report.when == "call" and report.failed and hasattr(lab, "logs"):
        dest = Path(folder) / re.sub(r"[^\w.-]+", "_", item.nodeid)
        try:
            lab.logs(dest)
        except Exception as exc:  # the logs are a help for the failure above, never a second failure
            report.sections.append(("meshlab logs", f"could not collect the lab's logs into {dest}: {exc}"))
        else:
            report.sections.append(("meshlab logs", f"the lab's container logs are in {dest}"))
    return report
