"""pytest plugin: every check cell of an untouched lab must report NOT DONE YET (and none PASS).

nbval (`--nbval-lax`) already fails a lab whose cells raise; this plugin reads the outputs nbval
collected for each cell of `labs/*.ipynb` and fails the cell when a check in it did not say
"NOT DONE YET", so a check that passes whatever the learner writes cannot go unnoticed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CHECK_CALL = re.compile(r"^\s*(check|CheckButton)\(", re.M)


def _texts(outputs) -> str:
    parts = []
    for out in outputs or []:
        parts.append(str(out.get("text", "")))
        data = out.get("data") or {}
        parts += [str(data.get("text/plain", "")), str(data.get("text/html", ""))]
    return "\n".join(parts)


def problem(source: str, outputs) -> str | None:
    """Why a lab cell's output breaks the rule, or None."""
    if not CHECK_CALL.search(source):
        return None
    text = _texts(outputs)
    if re.search(r"(^|>)PASS\b", text, re.M):
        return "a check PASSED on the untouched lab: it cannot tell a missing answer from a right one"
    if "NOT DONE YET" not in text:
        return "a check cell of the untouched lab did not report NOT DONE YET"
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or report.failed or Path(str(item.fspath)).parent.name != "labs":
        return
    cell = getattr(item, "cell", None)
    if cell is None or not hasattr(item, "test_outputs"):
        return
    why = problem(cell.source, item.test_outputs)
    if why:
        report.outcome = "failed"
        report.longrepr = f"{item.name}: {why}\n--- cell ---\n{cell.source}"
