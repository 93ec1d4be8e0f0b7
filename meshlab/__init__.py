"""meshlab: build each stage of a service mesh for real, from edge proxy to multi-cluster."""

from __future__ import annotations

import _signal  # first, and already loaded by Python itself: the window before the handler below is a few lines
import sys

if sys.argv and sys.argv[0].rsplit("/", 1)[-1] == "meshlab":
    # The `meshlab` command is starting: a Ctrl-C before it has begun anything leaves quietly (exit 130).
    # cli.main() puts Python's KeyboardInterrupt back once it runs; notebooks and tests never come here.
    def _leave(signum, frame):
        sys.stderr.write("interrupted: nothing was started\n")
        sys.exit(130)

    _signal.signal(_signal.SIGINT, _leave)

import importlib  # noqa: E402 (after the handler: a Ctrl-C while these load is meshlab's to answer)

__version__ = "0.1.0"

# Public names and the module each comes from; imported on first use, so `meshlab` (and the CLI that starts
# with it) loads fast and a Ctrl-C in its first moments meets almost nothing half-imported.
_EXPORTS = {
    "Availability": "backends.base", "MeshlabError": "backends.base", "NodeInfo": "backends.base",
    "PodInfo": "backends.base", "ProxyInfo": "backends.base",
    "CheckResult": "checks.base", "check": "checks.base", "show_hint": "checks.base",
    "Lab": "lab", "STAGES": "stages.info", "TrafficResult": "traffic",
}

__all__ = sorted(_EXPORTS) + ["stage_documents", "__version__"]


def __getattr__(name: str):
    """A public name (imported now), or a submodule such as `meshlab.manifests`."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name == "stage_documents":
        value = importlib.import_module(".stages", __name__).documents
    else:
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'meshlab' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
