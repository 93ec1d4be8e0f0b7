"""Rules across the objects of one apply: no object twice, and every namespace exists (or is created first)."""

from __future__ import annotations

from .meta import group_of, namespaced

BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")  # every cluster has these


def identity(doc: dict) -> tuple:
    """(API group, kind, namespace, name): what makes an object one object."""
    meta = doc.get("metadata") or {}
    namespace = (meta.get("namespace") or "default") if namespaced(doc) else None
    return group_of(doc), doc.get("kind"), namespace, meta.get("name")


def duplicates(docs: list[dict]) -> tuple[int, int, dict] | None:
    """(first index, second index, object) of the first object that appears twice, else None."""
    seen: dict[tuple, int] = {}
    for index, doc in enumerate(docs):
        key = identity(doc)
        if key in seen:
            return seen[key], index, doc
        seen[key] = index
    return None


def missing_namespace(docs: list[dict], existing) -> tuple[int, str] | None:
    """(index, namespace) of the first object whose namespace neither exists nor is created earlier in this apply."""
    known = set(BUILTIN_NAMESPACES) | set(existing)
    for index, doc in enumerate(docs):
        meta = doc.get("metadata") or {}
        if doc.get("kind") == "Namespace" and doc.get("apiVersion") == "v1":
            known.add(meta.get("name"))
        elif namespaced(doc) and (meta.get("namespace") or "default") not in known:
            return index, meta.get("namespace")
    return None
