"""Shared helpers of the benchmark scripts: an isolated state folder, timing, and text tables."""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import tempfile
import time
from contextlib import contextmanager

for _proxy in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    os.environ.pop(_proxy, None)  # every target is on loopback


@contextmanager
def private_state():
    """Run with a throw-away MESHLAB_HOME, so a learner's own labs are never touched."""
    old = os.environ.get("MESHLAB_HOME")
    root = tempfile.mkdtemp(prefix="meshlab-bench-")
    os.environ["MESHLAB_HOME"] = root
    try:
        yield root
    finally:
        from meshlab.backends.local import down_all

        down_all()
        shutil.rmtree(root, ignore_errors=True)
        if old is None:
            os.environ.pop("MESHLAB_HOME", None)
        else:
            os.environ["MESHLAB_HOME"] = old


def timed(fn) -> float:
    """Seconds fn() took."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_seconds() -> float:
    """CPU time of this process so far (every thread), user + system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def median(values) -> float:
    return statistics.median(values)


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline else "-"


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table (aligned, so it reads as well in a terminal as in a README)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(values):
        padded = (v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), rule] + [line(r) for r in cells])


def machine() -> str:
    """One line about where the numbers come from."""
    import platform

    return (f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")
