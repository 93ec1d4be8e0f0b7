"""Polling for the integration tests: wait until something holds, or fail naming what was awaited."""

from __future__ import annotations

import time


def wait_for(what: str, predicate, timeout: float = 15.0, interval: float = 0.05, tolerate: tuple = ()):
    """Poll predicate until it returns something truthy (returned); exceptions in `tolerate` count as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except tolerate:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
