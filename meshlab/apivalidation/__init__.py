"""The API server's own validation rules, locally: what kubectl would be told, in the API server's words."""

from __future__ import annotations

from ..backends.base import MeshlabError
from . import objects, updates
from .fielderr import FieldError
from .meta import object_meta, qualified_kind
from .specs import SPECS

HINT = "a Kubernetes API server refuses this too; nothing was changed: fix the field and apply again"
NAMESPACE_HINT = "create the Namespace first (a kind: Namespace object, applied before or earlier in the same file)"
UPDATE_HINT = ("a Kubernetes API server refuses this too; nothing was changed: keep the selector as it was (change the "
               "pod template's labels instead), or delete the object and create it anew")
DUPLICATE_HINT = "give each object its own name, or keep one copy"


def errors(doc: dict) -> list[FieldError]:
    """Every rule this object breaks (metadata first, then its kind's spec), as the API server lists them."""
    found = object_meta(doc)
    rule = SPECS.get(doc.get("kind")) if isinstance(doc.get("metadata"), dict) else None
    return found + (rule(doc) if rule else [])


def message(doc: dict, found: list[FieldError]) -> str:
    """`Deployment.apps "x" is invalid: <error>` (several errors in brackets, as the API server joins them)."""
    name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
    listed = str(found[0]) if len(found) == 1 else "[" + ", ".join(str(e) for e in found) + "]"
    return f'{qualified_kind(doc)} "{name or ""}" is invalid: {listed}'


def check(docs: list[dict], source: str = "<yaml>", namespaces=None) -> None:
    """Raise one MeshlabError line for the first object the API server would refuse; namespaces=None skips that rule.

    namespaces: the namespaces that exist before this apply (the built-in ones always do).
    """
    for doc in docs:
        found = errors(doc)
        if found:
            raise MeshlabError(f"{source}: {message(doc, found)}", HINT)
    twice = objects.duplicates(docs)
    if twice:
        first, second, doc = twice
        raise MeshlabError(f'{source}: {qualified_kind(doc)} "{doc["metadata"].get("name")}" appears twice in one apply '
                           f"(documents {first + 1} and {second + 1})", DUPLICATE_HINT)
    if namespaces is not None:
        check_namespaces(docs, source, namespaces)


def check_updates(docs: list[dict], source: str, stored) -> None:
    """Raise the API server's line for the first object that changes a field that cannot change (e.g. a
    Deployment's spec.selector); `stored(doc)` is the object as stored, or None."""
    for doc in docs:
        found = updates.errors(doc, stored(doc))
        if found:
            raise MeshlabError(f"{source}: {message(doc, found)}", UPDATE_HINT)


def check_namespaces(docs: list[dict], source: str, namespaces) -> None:
    """Raise `namespaces "x" not found` for an object whose namespace neither exists nor comes earlier in the apply."""
    missing = objects.missing_namespace(docs, namespaces)
    if missing:
        index, namespace = missing
        doc = docs[index]
        raise MeshlabError(f'{source}: {qualified_kind(doc)} "{doc["metadata"].get("name")}": '
                           f'namespaces "{namespace}" not found', NAMESPACE_HINT)
