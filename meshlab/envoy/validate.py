"""Check an Envoy config with Envoy itself (`--mode validate`) before it reaches a running proxy."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import tempfile
from pathlib import Path

import yaml

from .binary import find

FILE_SOURCES = (("lds_config", "listeners"), ("cds_config", "clusters"))


def read_config_file(path: str):
    """A YAML or JSON Envoy file (Envoy itself picks the parser by extension)."""
    text = Path(path).read_text()
    return json.loads(text) if path.endswith(".json") else yaml.safe_load(text)


def fold_file_resources(bootstrap: dict) -> dict:
    """The bootstrap with its file-based LDS/CDS moved into static_resources, which validate mode checks."""
    config = copy.deepcopy(bootstrap)
    dynamic = config.pop("dynamic_resources", None) or {}
    static = config.setdefault("static_resources", {})
    for source_key, field in FILE_SOURCES:
        source = dynamic.get(source_key) or {}
        path = (source.get("path_config_source") or {}).get("path") or source.get("path")
        if not path:
            continue
        data = read_config_file(path) or {}
        for resource in data.get("resources") or []:
            resource = dict(resource)
            resource.pop("@type", None)
            static.setdefault(field, []).append(resource)
    return config


def shorten(message: str) -> str:
    """Envoy's protobuf complaints, cut to where and what: `at <field path>: no such field: 'x'`."""
    match = re.search(r"@ (\S+?):? message .*?(no such field: '[^']+'|invalid value [^)]*|[a-z ]+: '[^']*')", message)
    return f"at {match.group(1).rstrip(':')}: {match.group(2).strip()}" if match else message


def snake(name: str) -> str:
    """`VirtualHosts[0]` -> `virtual_hosts[0]` (protoc-gen-validate names fields in CamelCase)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def constraint_reason(text: str) -> str | None:
    """`Proto constraint validation failed (A: ... | caused by B.X: ... | caused by field: "f", reason: r)` ->
    `at x.f: r`, the field path and Envoy's reason, without the nesting."""
    if "Proto constraint validation failed" not in text:
        return None
    parts = [p.strip() for p in re.split(r"\| caused by", text.split("Proto constraint validation failed", 1)[1])]
    path = [snake(m.group(1)) for p in parts if (m := re.match(r"\(?\w+ValidationError\.(\w+(?:\[\d+\])?)", p))]
    last = re.search(r'field: "([^"]+)", reason: ([^)|]+)', parts[-1])
    if last:
        path.append(last.group(1))
        return f"at {'.'.join(path)}: {last.group(2).strip()}"
    reason = re.sub(r"^\(?\w+ValidationError\.\w+(\[\d+\])?: ", "", parts[-1]).rstrip(")")
    return f"at {'.'.join(path)}: {reason}" if path else reason


def error_line(output: str) -> str:
    """The one line of Envoy's output that says what is wrong (its debug dump of the proto left out)."""
    lines = [line for line in output.splitlines() if line.strip()]
    match = re.search(r"error initializing configuration '[^']*': (.*)", output, re.S)
    if match:
        body = match.group(1)
        if body.lstrip().startswith("goo.gle/debug"):  # Envoy printed the offending proto before ': reason'
            body = body.rsplit("\n: ", 1)[-1]
        body = " ".join(body.split())
        return (constraint_reason(body) or shorten(body))[:400]
    for line in lines:
        match = re.search(r"error initializing configuration '[^']*': (.*)", line)
        if match:
            return shorten(" ".join(match.group(1).split()))[:400]
    critical = [line for line in lines if "[critical]" in line or "[error]" in line]
    text = (critical or lines or ["Envoy rejected the configuration"])[-1]
    return " ".join(re.sub(r"^\[[^\]]*\]\[[^\]]*\]\[[^\]]*\]\[[^\]]*\] (\[[^\]]*\] )?", "", text).split())[:400]


async def check(bootstrap: dict) -> str | None:
    """None when Envoy accepts the config (files included); else its one-line complaint."""
    try:
        config = fold_file_resources(bootstrap)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        return f"cannot read a file the bootstrap names: {exc}".splitlines()[0]
    with tempfile.TemporaryDirectory(prefix="meshlab-validate-") as folder:
        path = Path(folder) / "envoy.json"
        path.write_text(json.dumps(config))
        proc = await asyncio.create_subprocess_exec(
            find(), "--mode", "validate", "-c", str(path), "-l", "critical", "--disable-hot-restart",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await proc.communicate()
    if proc.returncode == 0:
        return None
    return error_line(output.decode(errors="replace"))
