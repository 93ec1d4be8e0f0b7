"""meshlab's public API is exactly the documented set of names, and every one of them imports."""

from __future__ import annotations

import importlib
import inspect

import meshlab

# The public API. Adding or removing a name is a deliberate API change: update this set, meshlab/__init__.py
# and the README's "In a notebook" section together.
DOCUMENTED = {
    "Availability", "CheckResult", "Lab", "MeshlabError", "NodeInfo", "PodInfo", "ProxyInfo",
    "STAGES", "TrafficResult", "check", "show_hint", "stage_documents", "__version__",
}


def test_all_is_exactly_the_documented_set():
    assert len(meshlab.__all__) == len(set(meshlab.__all__)), "duplicates in __all__"
    assert set(meshlab.__all__) == DOCUMENTED


def test_every_public_name_imports():
    namespace: dict = {}
    exec("from meshlab import *", namespace)
    assert DOCUMENTED - {"__version__"} <= set(namespace)
    for name in meshlab.__all__:
        assert getattr(importlib.import_module("meshlab"), name) is not None


def test_public_classes_and_functions_are_documented():
    for name in meshlab.__all__:
        value = getattr(meshlab, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"meshlab.{name} has no docstring"


def test_version_is_a_string():
    assert isinstance(meshlab.__version__, str) and meshlab.__version__.count(".") >= 1
