"""Field errors shaped and worded like the API server's (k8s.io/apimachinery field.Error)."""

from __future__ import annotations

import json
from dataclasses import dataclass


class GoLiteral(str):
    """A value already written as the API server prints it (e.g. a Go struct), shown as it is."""


def show(value) -> str:
    """A value as the API server prints it: strings quoted, numbers bare, maps as Go's %#v."""
    if isinstance(value, GoLiteral):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        inner = ", ".join(f"{json.dumps(str(k))}:{json.dumps(v)}" for k, v in sorted(value.items()))
        return "map[string]string{" + inner + "}"
    return json.dumps(value, sort_keys=True, default=str)


@dataclass(frozen=True)
class FieldError:
    """One problem: the field path, the error type, the bad value and the rule it breaks."""

    path: str
    kind: str  # Invalid value | Required value | Unsupported value | Duplicate value | Not found | Too long | Forbidden
    value: object = None
    detail: str = ""

    def __str__(self) -> str:
        if self.kind in ("Required value", "Forbidden", "Too long"):
            text = f"{self.path}: {self.kind}"
        else:
            text = f"{self.path}: {self.kind}: {show(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text


def invalid(path: str, value, detail: str) -> FieldError:
    """`Invalid value: <v>: <rule>`."""
    return FieldError(path, "Invalid value", value, detail)


def required(path: str, detail: str = "") -> FieldError:
    """`Required value`."""
    return FieldError(path, "Required value", None, detail)


def not_supported(path: str, value, supported) -> FieldError:
    """`Unsupported value: <v>: supported values: "a", "b"` (sorted, as the API server lists them)."""
    return FieldError(path, "Unsupported value", value, "supported values: " + ", ".join(show(s) for s in sorted(supported)))


def duplicate(path: str, value) -> FieldError:
    """`Duplicate value: <v>`."""
    return FieldError(path, "Duplicate value", value)


def not_found(path: str, value) -> FieldError:
    """`Not found: <v>`."""
    return FieldError(path, "Not found", value)


def too_long(path: str, limit: int) -> FieldError:
    """`Too long: may not be more than N bytes`."""
    return FieldError(path, "Too long", None, f"may not be more than {limit} bytes")


def many(path: str, value, messages: list[str]) -> list[FieldError]:
    """One Invalid error per message of a rule (the IsXxx helpers return several)."""
    return [invalid(path, value, m) for m in messages]
