"""The check of lesson 00: read one request's trace and count the calls it caused."""

from __future__ import annotations

from typing import Any, Mapping

from .base import CheckResult, exercise

LESSON = "00-welcome"


@exercise(LESSON, "read-a-trace", hints=[
    "Look at the second list printed above: every line `caller -> callee` is one call between services.",
    "Count the entries of reply['calls']: frontend calls catalog and reviews; some reviews versions call ratings.",
    "my_count = len(reply['calls'])",
])
def east_west_calls(reply: Mapping, my_count: Any) -> CheckResult:
    """The learner's count of calls behind one request, against the calls the trace really lists."""
    calls = list((reply or {}).get("calls") or [])
    truth = len(calls)
    expected = "the number of calls between services listed in reply['calls']"
    if my_count is None:
        return CheckResult(False, expected, "no answer yet: set my_count")
    if isinstance(my_count, bool) or not isinstance(my_count, int):
        return CheckResult(False, expected, f"my_count is {my_count!r}: give a whole number")
    if my_count == 1:
        return CheckResult(False, expected, "1: that is your own call to the frontend; count the calls between services")
    if my_count != truth:
        return CheckResult(False, expected, f"{my_count}: count again, one per line `caller -> callee`")
    names = ", ".join(f"{c.get('from')}->{c.get('to')}" for c in calls)
    return CheckResult(True, expected, f"{my_count}: {names}")
