"""Load and validate Kubernetes/Istio YAML, with one-line errors that say where."""

from __future__ import annotations

import yaml

from .backends.base import MeshlabError

KUBERNETES_VERSION = "1.33"


def load(text: str, source: str = "<yaml>") -> list[dict]:
    """Parse a multi-document YAML string into objects; empty documents are skipped."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise MeshlabError(f"{where}: invalid YAML: {problem}", "check the indentation and the ':' after each key") from None
    for index, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise MeshlabError(f"{source}: document {index + 1} is a {type(doc).__name__}, not a Kubernetes object",
                               "each document needs apiVersion, kind and metadata")
        for key in ("apiVersion", "kind"):
            if not doc.get(key):
                raise MeshlabError(f"{source}: document {index + 1} has no {key}", "each document needs apiVersion, kind and metadata")
        if not (doc.get("metadata") or {}).get("name"):
            raise MeshlabError(f"{source}: {doc['kind']} in document {index + 1} has no metadata.name", "give every object a name")
    return docs


def ref(doc: dict) -> str:
    """`Kind/name` (with namespace when set) for messages."""
    meta = doc.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{doc.get('kind')}/{meta.get('name')}" + (f" (namespace {ns})" if ns else "")


def is_istio(doc: dict) -> bool:
    """True for Istio's policy objects (networking.istio.io, security.istio.io)."""
    return str(doc.get("apiVersion", "")).split("/")[0].endswith("istio.io")


def validate(docs: list[dict], source: str = "<yaml>") -> None:
    """Check each built-in object against the Kubernetes schema (strict, offline), Istio objects against the subset."""
    import kubernetes_validate

    for doc in docs:
        if is_istio(doc):
            from .controlplane import schema

            schema.check(doc, source)  # the Istio subset, the same on every backend
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path) or "(top level)"
            raise MeshlabError(f"{source}: {ref(doc)}: {path}: {exc.message}",
                               "compare with the Kubernetes API reference for this kind") from None
        except kubernetes_validate.SchemaNotFoundError:
            raise MeshlabError(f"{source}: {ref(doc)}: {doc.get('apiVersion')}/{doc.get('kind')} is not a built-in Kubernetes kind",
                               "check the spelling of apiVersion and kind; custom resources (e.g. Gateway API) "
                               "need a cluster with their CRDs: use --backend kind") from None


class _ReadableDumper(yaml.SafeDumper):
    """Multi-line strings (Envoy config inside ConfigMaps) as `|` blocks a person can read and edit."""


def _str(dumper, value: str):
    style = "|" if "\n" in value and all(line == line.rstrip() for line in value.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ReadableDumper.add_representer(str, _str)


def dump(docs: list[dict]) -> str:
    """Objects back to multi-document YAML text."""
    return yaml.dump_all(docs, Dumper=_ReadableDumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
