"""Load and validate Kubernetes/Istio YAML, with one-line errors that say where."""

from __future__ import annotations

import json
import sys

import yaml

from .backends.base import MeshlabError

KUBERNETES_VERSION = "1.33"
MAX_BYTES = 5 * 1024 * 1024  # a manifest larger than this is a mistake (the API server's own limit is 3 MiB per object)
SIZE_HINT = "split the manifest, or check that this is the file you meant"


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key repeated in one mapping (kubectl's strict decoding does too)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue  # an unhashable key: the base class says so
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"mapping key {json.dumps(str(key))} already defined at line {first.line + 1}",
                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_bytes(data: bytes, source: str = "<yaml>") -> str:
    """Manifest bytes as text: UTF-8 only (a BOM is dropped), at most MAX_BYTES; one-line errors otherwise."""
    if len(data) > MAX_BYTES:
        raise MeshlabError(f"{source}: {len(data)} bytes is more than the {MAX_BYTES // (1024 * 1024)} MiB a manifest may have",
                           SIZE_HINT)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise MeshlabError(f"{source}:{line}: not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start}",
                           "save the file as UTF-8 (Kubernetes manifests are UTF-8 YAML or JSON)") from None


def read_file(path: str, stdin=None) -> str:
    """The text of a manifest file (`-` reads stdin), through load_bytes; one-line errors when it cannot be read."""
    try:
        if path == "-":
            data = (stdin or sys.stdin.buffer).read(MAX_BYTES + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise MeshlabError(f"{path}: cannot read: {exc.strerror}", "give the path of a YAML file, or - for stdin") from None
    if len(data) > MAX_BYTES:
        raise MeshlabError(f"{path}: more than the {MAX_BYTES // (1024 * 1024)} MiB a manifest may have", SIZE_HINT)
    return load_bytes(data, path)


def _text(text, source: str) -> str:
    """A str or bytes manifest as checked text."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        return load_bytes(bytes(text), source)
    if not isinstance(text, str):
        raise MeshlabError(f"{source}: expected YAML text, got {type(text).__name__}", "pass a str (or bytes) of YAML")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        line = text[:exc.start].count("\n") + 1
        raise MeshlabError(f"{source}:{line}: not UTF-8 text: undecodable character {ascii(text[exc.start])}",
                           "save the file as UTF-8 (Kubernetes manifests are UTF-8 YAML or JSON)") from None
    if size > MAX_BYTES:
        raise MeshlabError(f"{source}: {size} bytes is more than the {MAX_BYTES // (1024 * 1024)} MiB a manifest may have",
                           SIZE_HINT)
    return text


def load(text: str | bytes, source: str = "<yaml>") -> list[dict]:
    """Parse a multi-document YAML string (or UTF-8 bytes) into objects; empty documents are skipped."""
    text = _text(text, source)
    try:
        docs = [d for d in yaml.load_all(text, Loader=StrictLoader) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        hint = "keep one of the two (kubectl refuses a repeated key too)" if problem.startswith("mapping key") \
            else "check the indentation and the ':' after each key"
        raise MeshlabError(f"{where}: invalid YAML: {problem}", hint) from None
    for index, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise MeshlabError(f"{source}: document {index + 1} is a {type(doc).__name__}, not a Kubernetes object",
                               "each document needs apiVersion, kind and metadata")
        for key in ("apiVersion", "kind"):
            if not doc.get(key):
                raise MeshlabError(f"{source}: document {index + 1} has no {key}", "each document needs apiVersion, kind and metadata")
        if not isinstance(doc.get("metadata"), dict):
            raise MeshlabError(f"{source}: {doc['kind']} in document {index + 1} has no metadata mapping",
                               "give every object metadata: {name: ...}")
        if not doc["metadata"].get("name"):
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


def validate(docs: list[dict], source: str = "<yaml>", istio_subset: bool = True) -> None:
    """Check each built-in object against the Kubernetes schema (strict, offline), Istio objects against Istio's
    rules and (istio_subset, the local backend) the subset the local control plane serves."""
    import kubernetes_validate

    for doc in docs:
        if is_istio(doc):
            from .controlplane import schema

            schema.check(doc, source, subset=istio_subset)
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
    """Multi-line strings (Envoy config inside ConfigMaps) as `|` blocks a person can read and edit; an object
    used in two places is written out twice, never as an &anchor / *alias (which loads back as one shared object)."""

    def ignore_aliases(self, data) -> bool:
        return True


def _str(dumper, value: str):
    style = "|" if "\n" in value and all(line == line.rstrip() for line in value.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ReadableDumper.add_representer(str, _str)


def dump(docs: list[dict]) -> str:
    """Objects back to multi-document YAML text."""
    return yaml.dump_all(docs, Dumper=_ReadableDumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
