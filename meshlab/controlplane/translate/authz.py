"""AuthorizationPolicy -> Envoy RBAC http filters (DENY first, then ALLOW), with Istio's semantics."""

from __future__ import annotations

import re

from ..model import TRUST_DOMAIN, Model, Pod, Policy
from .common import RBAC, RBAC_FILTER

SPIFFE = "spiffe://"


def value_matcher(value: str, prefix: str = "") -> dict:
    """An Istio match value (exact, `pre*`, `*suf`, `*`) -> Envoy StringMatcher, `prefix` prepended to literals."""
    if value == "*":
        return {"safe_regex": {"regex": ".+"}}
    if value.endswith("*"):
        return {"prefix": prefix + value[:-1]}
    if value.startswith("*"):
        return {"suffix": value[1:]}
    return {"exact": prefix + value}


def translate_principal(value: str) -> dict:
    """`cluster.local/ns/x/sa/y` -> the peer certificate's SPIFFE URI `spiffe://cluster.local/ns/x/sa/y`."""
    return {"authenticated": {"principal_name": value_matcher(value, SPIFFE)}}


def translate_namespace(value: str) -> dict:
    """A source namespace -> a regex on the peer's SPIFFE URI (.../ns/NS/...)."""
    if value == "*":
        pattern = "[^/]+"
    elif value.endswith("*"):
        pattern = re.escape(value[:-1]) + "[^/]*"
    elif value.startswith("*"):
        pattern = "[^/]*" + re.escape(value[1:])
    else:
        pattern = re.escape(value)
    regex = f"{SPIFFE}{re.escape(TRUST_DOMAIN)}/ns/{pattern}/.*"
    return {"authenticated": {"principal_name": {"safe_regex": {"regex": regex}}}}


def translate_method(value: str) -> dict:
    """An HTTP method -> a `:method` header permission."""
    if value == "*":
        return {"header": {"name": ":method", "present_match": True}}
    return {"header": {"name": ":method", "string_match": value_matcher(value)}}


def translate_path(value: str) -> dict:
    """A path (exact, prefix*, *suffix) -> a url_path permission (query string ignored)."""
    if value == "*":
        return {"any": True}
    return {"url_path": {"path": value_matcher(value)}}


PRINCIPAL_FIELDS = (("principals", "notPrincipals", translate_principal),
                    ("namespaces", "notNamespaces", translate_namespace))
PERMISSION_FIELDS = (("methods", "notMethods", translate_method), ("paths", "notPaths", translate_path))


def _combine(items, fields, any_of: str, list_key: str, negate: str, all_of: str) -> dict:
    """AND over an Istio source/operation's fields, each an OR of its values; `not*` fields negated."""
    parts = []
    for positive, negative, translate in fields:
        for field, wrap in ((positive, False), (negative, True)):
            values = items.get(field) or ()
            if values:
                group = {any_of: {list_key: [translate(v) for v in values]}}
                parts.append({negate: group} if wrap else group)
    if not parts:
        return {"any": True}
    return parts[0] if len(parts) == 1 else {all_of: {list_key: parts}}


def translate_source(source) -> dict:
    """rules[].from[].source -> one RBAC Principal."""
    return _combine(source or {}, PRINCIPAL_FIELDS, "or_ids", "ids", "not_id", "and_ids")


def translate_operation(operation) -> dict:
    """rules[].to[].operation -> one RBAC Permission."""
    return _combine(operation or {}, PERMISSION_FIELDS, "or_rules", "rules", "not_rule", "and_rules")


def translate_rule(rule) -> dict:
    """One Istio rule -> one RBAC Policy: any `from` entry AND any `to` entry; an empty rule matches everything."""
    principals = [translate_source(f.get("source")) for f in rule.get("from") or ()] or [{"any": True}]
    permissions = [translate_operation(t.get("operation")) for t in rule.get("to") or ()] or [{"any": True}]
    return {"permissions": permissions, "principals": principals}


def translate_policy(policy: Policy) -> dict:
    """An AuthorizationPolicy -> named RBAC policies, one per rule (none: an ALLOW policy then allows nothing)."""
    return {f"ns[{policy.namespace}]-policy[{policy.name}]-rule[{i}]": translate_rule(rule)
            for i, rule in enumerate(policy.spec.get("rules") or ())}


def policies_for(model: Model, pod: Pod, action: str) -> list[Policy]:
    """AuthorizationPolicies of one action that apply to a pod (mesh-wide, namespace, or selecting it)."""
    return [p for p in model.of_kind("AuthorizationPolicy")
            if (p.spec.get("action") or "ALLOW") == action and p.applies_to(pod)]


def rbac_filter(action: str, policies: dict) -> dict:
    """One envoy.filters.http.rbac filter."""
    return {"name": RBAC_FILTER, "typed_config": {"@type": RBAC, "rules": {"action": action, "policies": policies}}}


def rbac_filters(model: Model, pod: Pod) -> list[dict]:
    """The inbound RBAC filters of a pod: DENY (if any rule), then ALLOW (if any ALLOW policy applies: deny by default)."""
    out = []
    deny = {k: v for p in policies_for(model, pod, "DENY") for k, v in translate_policy(p).items()}
    if deny:
        out.append(rbac_filter("DENY", deny))
    allow_policies = policies_for(model, pod, "ALLOW")
    if allow_policies:
        out.append(rbac_filter("ALLOW", {k: v for p in allow_policies for k, v in translate_policy(p).items()}))
    return out
