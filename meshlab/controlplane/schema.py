"""The Istio subset the local control plane serves: one table of fields, in the wording of Istio's validation
(istio_fields.py tells a field outside the subset from a field Istio does not have)."""

from __future__ import annotations

from ..backends.base import MeshlabError
from .istio_fields import ISTIO_SHAPES, TOP, unknown_field
from .schema_rules import (MapOf, Obj, Problem, Seq, Unsupported, boolean, dns_label, duration, enum, header_name,
                           integer, ip_address, labels, locality, match_value, nonempty, percentage, regex, region,
                           retry_on, shape, show, string, walk, weight)

GROUP_VERSIONS = {"networking.istio.io": ("v1", "v1beta1", "v1alpha3"), "security.istio.io": ("v1", "v1beta1")}
KINDS = {("networking.istio.io", "VirtualService"), ("networking.istio.io", "DestinationRule"),
         ("networking.istio.io", "ServiceEntry"),
         ("security.istio.io", "PeerAuthentication"), ("security.istio.io", "AuthorizationPolicy")}
UNSUPPORTED_HINT = ("the local control plane implements the Istio subset in docs/controlplane.md; "
                    "use --backend kind for the full Istio API")
INVALID_HINT = "Istio's validation webhook refuses this too; fix it and apply again (nothing was changed)"


def _one_string_match(value) -> tuple[str, str] | None:
    """A StringMatch sets exactly one of its kinds."""
    present = [k for k in ("exact", "prefix", "regex") if k in value]
    return None if len(present) == 1 else ("", "exactly one of exact, prefix, regex is required")


def _total_weight(route) -> tuple[str, str] | None:
    """Weights are relative (weight/sum), so any total serves, but 2+ destinations cannot all weigh 0 (Istio's rule)."""
    if not isinstance(route, list) or len(route) < 2:
        return None
    return None if sum(d.get("weight") or 0 for d in route if isinstance(d, dict)) else \
        ("route", "total destination weight = 0")


def _unique_subsets(spec) -> tuple[str, str] | None:
    """Subset names of a DestinationRule are unique."""
    subsets = spec.get("subsets") if isinstance(spec.get("subsets"), list) else []
    names = [s.get("name") for s in subsets if isinstance(s, dict)]
    dupes = sorted({n for n in names if names.count(n) > 1 and n})
    return ("subsets", f"duplicate subset names: {', '.join(dupes)}") if dupes else None


def _percent(fields: dict, required: dict) -> Obj:
    """A fault part: its own fields plus `percentage.value`."""
    return Obj({**fields, "percentage": Obj({"value": percentage})}, required=required)


def _distribute_or_failover(setting) -> tuple[str, str] | None:
    """localityLbSetting sets distribute or failover, not both."""
    if setting.get("distribute") and setting.get("failover"):
        return "", "can not simultaneously specify 'distribute' and 'failover'"
    return None


def _distribute_total(rule) -> tuple[str, str] | None:
    """A distribute rule's `to` weights are each 1..100 and add up to 100."""
    weights = [w for w in (rule.get("to") or {}).values() if isinstance(w, int)]
    if any(w <= 0 or w > 100 for w in weights):
        return "to", "locality weight must be in range [1, 100]"
    return None if sum(weights) == 100 else ("to", f"total locality weight {sum(weights)} != 100")


def _failover_regions_differ(rule) -> tuple[str, str] | None:
    """A failover goes from one region to another."""
    return ("", "locality lb failover settings must specify different regions") \
        if rule.get("from") and rule.get("from") == rule.get("to") else None


LOCALITY_LB = Obj({
    "enabled": boolean,
    "distribute": Seq(Obj({"from": locality, "to": MapOf(locality, integer())},
                          required={"from": "locality lb distribute must specify `from`",
                                    "to": "locality lb distribute must specify `to`"}, rules=(_distribute_total,))),
    "failover": Seq(Obj({"from": region, "to": region},
                        required={"from": "locality lb failover must specify `from`",
                                  "to": "locality lb failover must specify `to`"}, rules=(_failover_regions_differ,))),
}, rules=(_distribute_or_failover,))
STRING_MATCH = Obj({"exact": string, "prefix": string, "regex": regex}, rules=(_one_string_match,))
SELECTOR = Obj({"matchLabels": labels})
TRAFFIC_POLICY = Obj({
    "loadBalancer": Obj({"simple": enum("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "UNSPECIFIED", "LEAST_CONN",
                                        local_only=("PASSTHROUGH",)),
                      "localityLbSetting": LOCALITY_LB}),
    "connectionPool": Obj({
        "tcp": Obj({"maxConnections": integer(0, wording="max connections must be non-negative")}),
        "http": Obj({"http1MaxPendingRequests": integer(0, wording="http1 max pending requests must be non-negative"),
                     "http2MaxRequests": integer(0, wording="http2 max requests must be non-negative"),
                     "maxRequestsPerConnection": integer(0, wording="max requests per connection must be non-negative"),
                     "maxRetries": integer(0, wording="max retries must be non-negative")})}),
    "outlierDetection": Obj({
        "consecutive5xxErrors": integer(0, wording="outlier detection consecutive errors cannot be negative"),
        "consecutiveGatewayErrors": integer(0, wording="outlier detection consecutive errors cannot be negative"),
        "interval": duration, "baseEjectionTime": duration,
        "maxEjectionPercent": integer(0, 100, wording="max ejection percent must be in range [0..100]")}),
    "tls": Obj({"mode": enum("DISABLE", "ISTIO_MUTUAL", local_only=("SIMPLE", "MUTUAL"))},
               required={"mode": "tls mode is required"}),
})
SOURCE = Obj({k: Seq(match_value) for k in ("principals", "notPrincipals", "namespaces", "notNamespaces")})
OPERATION = Obj({k: Seq(match_value) for k in ("methods", "notMethods", "paths", "notPaths")})

SE_PROTOCOLS = ("HTTP", "TCP")
SE_OTHER_PROTOCOLS = ("HTTPS", "HTTP2", "GRPC", "GRPC-WEB", "TLS", "MONGO", "MYSQL", "REDIS", "UDP")


def protocol(value) -> str | None:
    """A ServiceEntry port protocol (case-insensitive, as Istio); the local backend serves HTTP and TCP."""
    if string(value):
        return string(value)
    if value.upper() in SE_OTHER_PROTOCOLS:
        return Unsupported(f"protocol {value} is not supported by the local backend (HTTP, TCP)")
    return None if value.upper() in SE_PROTOCOLS else f"unsupported protocol {value!r}"


def _unique_ports(spec) -> tuple[str, str] | None:
    """ServiceEntry port numbers and names are unique."""
    ports = [p for p in spec.get("ports") or () if isinstance(p, dict)]
    for key in ("number", "name"):
        values = [p.get(key) for p in ports]
        dupes = sorted({str(v) for v in values if values.count(v) > 1})
        if dupes:
            return "ports", f"port {key} {dupes[0]} already defined"
    return None


def _resolution(spec) -> tuple[str, str] | None:
    """Resolution NONE (Istio's default) is passthrough, which the local backend does not serve."""
    if spec.get("resolution") in (None, "NONE"):
        return "resolution", Unsupported("resolution NONE (the default) is not supported by the local backend; "
                                         "set STATIC or DNS")
    return None


def _endpoints_fit(spec) -> tuple[str, str] | None:
    """STATIC needs IP endpoints; endpoint ports name declared ports; DNS hosts are not wildcards."""
    endpoints = [e for e in spec.get("endpoints") or () if isinstance(e, dict)]
    names = {p.get("name") for p in spec.get("ports") or () if isinstance(p, dict)}
    if spec.get("resolution") == "STATIC" and not endpoints:
        return "endpoints", "endpoints must be provided for resolution STATIC"
    for index, endpoint in enumerate(endpoints):
        if spec.get("resolution") == "STATIC" and ip_address(endpoint.get("address")):
            return f"endpoints[{index}].address", ip_address(endpoint.get("address"))
        for name in endpoint.get("ports") or {}:
            if name not in names:
                return f"endpoints[{index}].ports.{name}", f"endpoint port {name} is not defined by the service entry"
    wild = [h for h in spec.get("hosts") or () if isinstance(h, str) and "*" in h]
    if spec.get("resolution") == "DNS" and wild:
        return "hosts", f"wildcard host {wild[0]} is not allowed with resolution DNS"
    return None


SPECS = {
    "VirtualService": Obj({
        "hosts": Seq(nonempty, empty="virtual service must have at least one host"),
        "http": Seq(Obj({
            "name": string,
            "match": Seq(Obj({"name": string, "uri": STRING_MATCH, "headers": MapOf(header_name, STRING_MATCH)})),
            "route": Seq(Obj({
                "destination": Obj({"host": nonempty, "subset": dns_label,
                                    "port": Obj({"number": integer(1, 65535,
                                                                   "port number {v} must be in the range 1..65535")})},
                                   required={"host": "destination must have a host"}),
                "weight": weight}, required={"destination": "destination is required"}),
                empty="HTTP route or redirect or direct response is required"),
            "retries": Obj({"attempts": integer(0, wording="attempts cannot be negative"), "perTryTimeout": duration,
                            "retryOn": retry_on}),
            "timeout": duration,
            "fault": Obj({"delay": _percent({"fixedDelay": duration}, {"fixedDelay": "delay must have a fixedDelay"}),
                          "abort": _percent({"httpStatus": integer(200, 599, "HTTP status {v} is not in range 200..599")},
                                            {"httpStatus": "abort must have an httpStatus"})},
                rules=(lambda f: None if f.get("delay") or f.get("abort")
                       else ("", "fault must have at least delay or abort"),)),
        }, required={"route": "HTTP route or redirect or direct response is required"}, rules=(
            lambda http: _total_weight(http.get("route")),))),
    }, required={"hosts": "virtual service must have at least one host"}),
    "DestinationRule": Obj({
        "host": nonempty,
        "trafficPolicy": TRAFFIC_POLICY,
        "subsets": Seq(Obj({"name": dns_label, "labels": labels, "trafficPolicy": TRAFFIC_POLICY},
                           required={"name": "subset name is invalid: (empty)"})),
    }, required={"host": "destination rule must have a host"}, rules=(_unique_subsets,)),
    "ServiceEntry": Obj({
        "hosts": Seq(nonempty, empty="service entry must have at least one host"),
        "ports": Seq(Obj({"number": integer(1, 65535, "port number {v} must be in the range 1..65535"),
                          "name": nonempty, "protocol": protocol},
                         required={"number": "port number must be set", "name": "port name must be set"}),
                     empty="service entry must have at least one port"),
        "location": enum("MESH_EXTERNAL", "MESH_INTERNAL"),
        "resolution": enum("STATIC", "DNS", local_only=("NONE", "DNS_ROUND_ROBIN")),
        "endpoints": Seq(Obj({"address": nonempty,
                              "ports": MapOf(dns_label, integer(1, 65535, "port number {v} must be in the range 1..65535"))},
                             required={"address": "endpoint must have an address"})),
    }, required={"hosts": "service entry must have at least one host",
                 "ports": "service entry must have at least one port"},
        rules=(_unique_ports, _resolution, _endpoints_fit)),
    "PeerAuthentication": Obj({
        "selector": SELECTOR,
        "mtls": Obj({"mode": enum("UNSET", "DISABLE", "PERMISSIVE", "STRICT")}),
    }),
    "AuthorizationPolicy": Obj({
        "selector": SELECTOR,
        "action": enum("ALLOW", "DENY", local_only=("AUDIT", "CUSTOM")),
        "rules": Seq(Obj({
            "from": Seq(Obj({"source": SOURCE}, required={"source": "`source` must not be empty"}),
                        empty="`from` must not be empty"),
            "to": Seq(Obj({"operation": OPERATION}, required={"operation": "`operation` must not be empty"}),
                      empty="`to` must not be empty"),
        })),
    }),
}


def group_version(doc: dict) -> tuple[str, str]:
    """("networking.istio.io", "v1") from a document's apiVersion."""
    group, _, version = str(doc.get("apiVersion") or "").rpartition("/")
    return group, version


def is_istio(doc: dict) -> bool:
    """Whether a document is an Istio object (any *.istio.io API group)."""
    return isinstance(doc, dict) and group_version(doc)[0].endswith("istio.io")


def check(doc: dict, source: str = "<yaml>", subset: bool = True) -> None:
    """Raise a one-line MeshlabError naming the object and field when `doc` is invalid, or outside the local subset
    (subset=False, a cluster with Istio: what Istio has but the local subset lacks is left to Istio's webhook)."""
    group, version = group_version(doc)
    kind = doc.get("kind")
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    ref = f"{source}: {kind}/{meta.get('name')}"
    if (group, kind) not in KINDS:
        if not subset:
            return
        raise MeshlabError(f"{ref}: kind {kind} ({doc.get('apiVersion')}) is not supported by the local backend",
                           UNSUPPORTED_HINT)
    if version not in GROUP_VERSIONS[group]:
        raise MeshlabError(f"{ref}: apiVersion {doc.get('apiVersion')} is not served (use {group}/"
                           f"{GROUP_VERSIONS[group][0]})", INVALID_HINT)
    if not meta.get("name"):
        raise MeshlabError(f"{ref}: metadata.name is required", INVALID_HINT)
    for key in doc:
        if key not in TOP:
            raise unknown_field(ref, kind, (key,))
    try:
        walk(doc.get("spec") or {}, SPECS[kind], ("spec",))
    except Problem as problem:
        if problem.unsupported and not problem.message:  # a field the local table lacks: Istio's, or nobody's?
            if shape(problem.steps) not in ISTIO_SHAPES[kind]:
                raise unknown_field(ref, kind, problem.steps) from None
        if problem.unsupported and not subset:
            return
        if problem.unsupported and not problem.message:
            raise MeshlabError(f"{ref}: field {problem.path} is not supported by the local backend",
                               UNSUPPORTED_HINT) from None
        raise MeshlabError(f"{ref}: {problem.path}: {problem.message}",
                           UNSUPPORTED_HINT if problem.unsupported else INVALID_HINT) from None
