"""What the API server refuses in an update of a stored object: fields that cannot change once set."""

from __future__ import annotations

import json

from .fielderr import FieldError, GoLiteral

IMMUTABLE_SELECTOR = {"Deployment", "DaemonSet", "StatefulSet", "ReplicaSet"}  # apps/v1: spec.selector


def label_selector(selector: dict) -> GoLiteral:
    """A LabelSelector as the API server prints it (Go's %#v)."""
    labels = ", ".join(f"{json.dumps(str(k))}:{json.dumps(str(v))}"
                       for k, v in sorted(((selector or {}).get("matchLabels") or {}).items()))
    expressions = (selector or {}).get("matchExpressions")
    shown = "[]v1.LabelSelectorRequirement(nil)" if not expressions else \
        "[]v1.LabelSelectorRequirement{" + ", ".join(json.dumps(e, sort_keys=True) for e in expressions) + "}"
    return GoLiteral(f"v1.LabelSelector{{MatchLabels:map[string]string{{{labels}}}, MatchExpressions:{shown}}}")


def errors(doc: dict, stored: dict | None) -> list[FieldError]:
    """Every immutable field this object changes against the stored one (none when nothing is stored)."""
    if not stored or doc.get("kind") not in IMMUTABLE_SELECTOR:
        return []
    new, old = (doc.get("spec") or {}).get("selector"), (stored.get("spec") or {}).get("selector")
    if _normal(new) == _normal(old):
        return []
    return [FieldError("spec.selector", "Invalid value", label_selector(new), "field is immutable")]


def _normal(selector) -> tuple:
    """A selector with its empty parts dropped, for comparison."""
    selector = selector or {}
    return (tuple(sorted((selector.get("matchLabels") or {}).items())),
            json.dumps(selector.get("matchExpressions") or [], sort_keys=True))
