"""Building blocks of schema.py: leaf validators (value -> Istio's complaint) and the walk over a field table."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Callable

RETRY_ON = {"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited",
            "retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers", "http3-post-connect-failure",
            "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d*)?|\.\d+)(h|m|s|ms|us|µs|ns))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_RE2_ONLY = re.compile(r"\(\?<?[=!]|\\[1-9]")  # lookarounds and backreferences: Python has them, RE2 does not


class Unsupported(str):
    """A leaf result meaning: valid Istio, but not served by the local backend."""


# ---- leaf validators: value -> Istio's complaint, or None ----

def seconds(text: str) -> float:
    """A Go/Istio duration ("1s", "250ms", "1.5s", "1m30s") in seconds."""
    if not isinstance(text, str) or not _DURATION.match(text):
        raise ValueError(f"invalid duration {text!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def duration(value) -> str | None:
    """A duration Istio accepts: Go syntax, at least 1ms, ms precision."""
    try:
        total = seconds(value)
    except ValueError:
        return f"invalid duration {value!r} (use e.g. 1s, 250ms, 1.5s)"
    if total < 1e-3:
        return "duration must be greater than 1ms"
    if abs(total * 1000 - round(total * 1000)) > 1e-6:
        return "only durations to ms precision are supported"
    return None


def string(value) -> str | None:
    """A string."""
    return None if isinstance(value, str) else f"must be a string, got {value!r}"


def nonempty(value) -> str | None:
    """A non-empty string."""
    return string(value) or (None if value else "must not be empty")


def integer(low: int | None = None, high: int | None = None, wording: str = "") -> Callable:
    """An integer within bounds; `wording` is Istio's message ({v}, {lo}, {hi})."""
    def check(value) -> str | None:
        """The bound integer check."""
        if not isinstance(value, int) or isinstance(value, bool):
            return f"must be an integer, got {value!r}"
        if (low is not None and value < low) or (high is not None and value > high):
            return (wording or "{v} is not in range {lo}..{hi}").format(v=value, lo=low, hi=high)
        return None
    return check


INT32_MAX = 2**31 - 1


def weight(value) -> str | None:
    """A route weight (Istio's int32): relative, a destination gets weight/(sum of all weights); never negative."""
    problem = integer()(value)
    if problem:
        return problem
    if value < 0:
        return f"weight {value} < 0"
    return None if value <= INT32_MAX else f"weight {value} does not fit Istio's int32 (at most {INT32_MAX})"


def percentage(value) -> str | None:
    """A percentage 0..100 (Istio's Percent.value)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return f"must be a number, got {value!r}"
    return None if 0 <= value <= 100 else f"percentage {value} is neither 0.0, nor in range [0.0, 100.0]"


def enum(*allowed: str, local_only: tuple[str, ...] = ()) -> Callable:
    """One of `allowed`; `local_only` values are valid Istio the local backend does not serve."""
    def check(value) -> str | None:
        """The enum check."""
        if value in local_only:
            return Unsupported(f"value {value} is not supported by the local backend")
        if value not in allowed + local_only:
            return f"unknown value {value!r} (one of {', '.join(allowed + local_only)})"
        return None
    return check


def dns_label(value) -> str | None:
    """A DNS-1123 label (subset names)."""
    return string(value) or (None if _DNS_LABEL.match(value) and len(value) <= 63 else f"subset name is invalid: {value}")


def regex(value) -> str | None:
    """A regex that compiles and uses no Python-only (non-RE2) syntax."""
    if string(value):
        return string(value)
    try:
        re.compile(value)
    except re.error as exc:
        return f"{value!r}: {exc}; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)"
    if _RE2_ONLY.search(value):
        return f"{value!r}: lookarounds and backreferences are not RE2; Istio uses RE2 style regex-based match"
    return None


def boolean(value) -> str | None:
    """A boolean."""
    return None if isinstance(value, bool) else f"must be a boolean, got {value!r}"


def locality(value) -> str | None:
    """A locality `region/zone/subzone`; `*` only as the whole last segment (Istio's validateLocalities)."""
    if nonempty(value):
        return nonempty(value)
    parts = value.split("/")
    if len(parts) > 3 or any(p == "" for p in parts):
        return f"invalid locality {value!r} (use region, region/zone or region/zone/subzone)"
    if any("*" in p for p in parts[:-1]) or ("*" in parts[-1] and parts[-1] != "*"):
        return f"locality {value!r}: wildcard '*' must be the whole last segment"
    return None


def region(value) -> str | None:
    """A failover region: no `/`, no `*` (Istio: failover only names regions)."""
    if nonempty(value):
        return nonempty(value)
    if "/" in value:
        return "locality lb failover only specify region"
    return "locality lb failover region should not contain '*' wildcard" if "*" in value else None


def ip_address(value) -> str | None:
    """An IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"endpoint address {value!r} is not a valid IP address"
    return None


def labels(value) -> str | None:
    """A map of string labels."""
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return f"must be a map of strings, got {value!r}"
    return None


def header_name(value) -> str | None:
    """An HTTP header name (an RFC 7230 token)."""
    return None if _HEADER_NAME.match(value) else f"invalid header name {value!r}"


def retry_on(value) -> str | None:
    """Envoy retry conditions or HTTP status codes, comma separated."""
    if string(value):
        return string(value)
    for policy in value.split(","):
        policy = policy.strip()
        if policy not in RETRY_ON and not (policy.isdigit() and 100 <= int(policy) <= 599):
            return f"{policy!r} is not a valid retryOn policy"
    return None


def match_value(value) -> str | None:
    """An authorization match value: exact, `prefix*`, `*suffix` or `*`."""
    if string(value):
        return string(value)
    if not value:
        return "empty value not allowed"
    if "*" in value[1:-1] or value.count("*") > 1 and value != "*":
        return f"invalid value {value!r}: `*` is only allowed as a prefix or a suffix"
    return None


# ---- structure: the one table of fields ----

@dataclass(frozen=True)
class Obj:
    """A mapping with known fields; `required` maps a field to Istio's message when it is missing."""
    fields: dict
    required: dict = field(default_factory=dict)
    rules: tuple = ()  # callables (value) -> (relative path, message) | None


@dataclass(frozen=True)
class Seq:
    """A list whose items follow one schema; `empty` is Istio's message when the list must not be empty."""
    item: object
    empty: str = ""


@dataclass(frozen=True)
class MapOf:
    """A mapping of free keys (checked by `key`) to values that follow one schema."""
    key: Callable
    value: object


class Key(str):
    """A map key in a field path: data the user chose, not a field name."""


def show(steps: tuple) -> str:
    """A field path as the learner reads it: ("spec", "http", 0, "route") -> spec.http[0].route."""
    out = ""
    for step in steps:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def shape(steps: tuple) -> str:
    """A field path as Istio's reference writes it (list items [], map keys *): spec.http[].route[].weight."""
    out = ""
    for step in steps:
        out += "[]" if isinstance(step, int) else (f".{'*' if isinstance(step, Key) else step}" if out else str(step))
    return out


class Problem(Exception):
    """Where (field path) and what is wrong; `unsupported` when valid Istio outside the local subset.

    A field missing from the local table comes with no message and its `steps`: schema.py tells whether
    Istio has it (outside the subset) or not (unknown)."""

    def __init__(self, path: str, message: str, unsupported: bool = False, steps: tuple = ()):
        super().__init__(message)
        self.path, self.message, self.unsupported, self.steps = path, message, unsupported, steps


def _join(path: str, key) -> str:
    """A child's field path: spec.http[0].route."""
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))


def walk(value, schema, steps: tuple) -> None:
    """Check value against a schema node; raise Problem at the first field that is wrong or not in the table."""
    path = show(steps)
    if isinstance(schema, Obj):
        if not isinstance(value, dict):
            raise Problem(path, f"must be a mapping, got {value!r}")
        for key in value:
            if key not in schema.fields:
                raise Problem(_join(path, key), "", unsupported=True, steps=steps + (key,))
        for key, message in schema.required.items():
            if value.get(key) in (None, "", [], {}):
                raise Problem(path, message)
        for key, sub in value.items():
            if sub is not None:
                walk(sub, schema.fields[key], steps + (key,))
        for rule in schema.rules:
            found = rule(value)
            if found:
                raise Problem(_join(path, found[0]) if found[0] else path, found[1],
                              unsupported=isinstance(found[1], Unsupported))
    elif isinstance(schema, Seq):
        if not isinstance(value, list):
            raise Problem(path, f"must be a list, got {value!r}")
        if not value and schema.empty:
            raise Problem(path, schema.empty)
        for index, item in enumerate(value):
            walk(item, schema.item, steps + (index,))
    elif isinstance(schema, MapOf):
        if not isinstance(value, dict):
            raise Problem(path, f"must be a mapping, got {value!r}")
        for key, sub in value.items():
            problem = schema.key(key) if isinstance(key, str) else f"invalid key {key!r}"
            if problem:
                raise Problem(_join(path, key), problem)
            walk(sub, schema.value, steps + (Key(key),))
    else:
        problem = schema(value)
        if problem:
            raise Problem(path, str(problem), unsupported=isinstance(problem, Unsupported))
