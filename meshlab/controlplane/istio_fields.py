"""Istio's own fields, from its API reference and CRD schemas: to tell a field outside the local subset (use kind)
from a field Istio does not have (a typo, a wrong indent), and to say where it may have been meant."""

from __future__ import annotations

from ..backends.base import MeshlabError
from .schema_rules import shape, show

TOP = {"apiVersion", "kind", "metadata", "spec", "status"}
UNKNOWN_HINT = "Kubernetes refuses unknown fields of Istio's objects too; fix it and apply again (nothing was changed)"

# A table maps a field to its sub-table ("" for a value, a list of values or a map of strings); `x[]` is a list of
# objects, `*` the values of a map.

def leaves(names: str) -> dict:
    """Fields that hold values: {"a": "", "b": ""} from "a b"."""
    return dict.fromkeys(names.split(), "")


STRING_MATCH_F = leaves("exact prefix regex")
DESTINATION_F = {**leaves("host subset"), "port": leaves("number")}
HEADERS_F = {"request": leaves("set add remove"), "response": leaves("set add remove")}
PERCENT_F = leaves("value")
L4_ROUTE_F = {"destination": DESTINATION_F, "weight": ""}
L4_MATCH_F = leaves("destinationSubnets port sourceLabels gateways sourceNamespace")
TARGET_REF_F = leaves("group kind name namespace")
LOAD_BALANCER_F = {
    **leaves("simple warmupDurationSecs"),
    "consistentHash": {**leaves("httpHeaderName useSourceIp httpQueryParameterName minimumRingSize"),
                       "httpCookie": {**leaves("name path ttl"), "attributes[]": leaves("name value")},
                       "ringHash": leaves("minimumRingSize"), "maglev": leaves("tableSize")},
    "localityLbSetting": {**leaves("failoverPriority enabled"), "distribute[]": leaves("from to"),
                          "failover[]": leaves("from to")},
    "zoneAwareLbSetting": {**leaves("enabled failoverPriority minClusterSize"), "failover[]": leaves("from to")},
    "warmup": leaves("duration minimumPercent aggression")}
PORT_POLICY_F = {
    "port": leaves("number"), "loadBalancer": LOAD_BALANCER_F,
    "connectionPool": {
        "tcp": {**leaves("maxConnections connectTimeout maxConnectionDuration idleTimeout"),
                "tcpKeepalive": leaves("probes time interval")},
        "http": {**leaves("http1MaxPendingRequests http2MaxRequests maxRequestsPerConnection maxRetries idleTimeout "
                          "h2UpgradePolicy useClientProtocol maxConcurrentStreams"),
                 "http2KeepAlive": leaves("interval timeout")}},
    "outlierDetection": leaves("consecutiveErrors splitExternalLocalOriginErrors consecutiveLocalOriginFailures "
                               "consecutiveGatewayErrors consecutive5xxErrors interval baseEjectionTime "
                               "maxEjectionPercent minHealthPercent outlierDetectionHttpErrorCodes"),
    "tls": leaves("mode clientCertificate privateKey caCertificates credentialName subjectAltNames sni "
                  "insecureSkipVerify caCrl")}
TRAFFIC_POLICY_F = {**{k: v for k, v in PORT_POLICY_F.items() if k != "port"}, "portLevelSettings[]": PORT_POLICY_F,
                    "tunnel": leaves("protocol targetHost targetPort"), "proxyProtocol": leaves("version"),
                    "retryBudget": leaves("percent minRetryConcurrency budgetInterval")}
ISTIO_FIELDS = {
    "VirtualService": {
        **leaves("hosts gateways exportTo"),
        "http[]": {
            **leaves("name timeout mirrorPercent mirror_percent"),
            "match[]": {**leaves("name port sourceLabels gateways ignoreUriCase sourceNamespace statPrefix"),
                        **{k: STRING_MATCH_F for k in ("uri", "scheme", "method", "authority")},
                        **{k: {"*": STRING_MATCH_F} for k in ("headers", "queryParams", "withoutHeaders")}},
            "route[]": {**L4_ROUTE_F, "headers": HEADERS_F},
            "redirect": leaves("uri authority port derivePort scheme redirectCode prefixRewrite"),
            "directResponse": {"status": "", "body": leaves("string bytes")},
            "delegate": leaves("name namespace"),
            "rewrite": {**leaves("uri authority"), "uriRegexRewrite": leaves("match rewrite")},
            "retries": leaves("attempts perTryTimeout retryOn retryRemoteLocalities retryIgnorePreviousHosts backoff"),
            "fault": {"delay": {**leaves("fixedDelay exponentialDelay percent"), "percentage": PERCENT_F},
                      "abort": {**leaves("httpStatus grpcStatus http2Error"), "percentage": PERCENT_F}},
            "mirror": DESTINATION_F, "mirrors[]": {"destination": DESTINATION_F, "percentage": PERCENT_F},
            "mirrorPercentage": PERCENT_F,
            "corsPolicy": {**leaves("allowOrigin allowMethods allowHeaders exposeHeaders maxAge allowCredentials "
                                    "unmatchedPreflights"), "allowOrigins[]": STRING_MATCH_F},
            "headers": HEADERS_F},
        "tls[]": {"match[]": {**L4_MATCH_F, "sniHosts": ""}, "route[]": L4_ROUTE_F},
        "tcp[]": {"match[]": {**L4_MATCH_F, "sourceSubnet": ""}, "route[]": L4_ROUTE_F}},
    "DestinationRule": {
        **leaves("host exportTo"), "trafficPolicy": TRAFFIC_POLICY_F, "workloadSelector": leaves("matchLabels"),
        "subsets[]": {**leaves("name labels"), "trafficPolicy": TRAFFIC_POLICY_F}},
    "ServiceEntry": {
        **leaves("hosts addresses location resolution exportTo subjectAltNames"),
        "ports[]": leaves("number protocol name targetPort"),
        "endpoints[]": leaves("address ports labels network locality weight serviceAccount"),
        "workloadSelector": leaves("labels")},
    "PeerAuthentication": {"selector": leaves("matchLabels"), "mtls": leaves("mode"),
                           "portLevelMtls": {"*": leaves("mode")}},
    "AuthorizationPolicy": {
        "selector": leaves("matchLabels"), "targetRef": TARGET_REF_F, "targetRefs[]": TARGET_REF_F, "action": "",
        "provider": leaves("name"),
        "rules[]": {"from[]": {"source": leaves(
                        "principals notPrincipals requestPrincipals notRequestPrincipals namespaces notNamespaces "
                        "serviceAccounts notServiceAccounts ipBlocks notIpBlocks remoteIpBlocks notRemoteIpBlocks "
                        "trustDomains notTrustDomains")},
                    "to[]": {"operation": leaves("hosts notHosts ports notPorts methods notMethods paths notPaths")},
                    "when[]": leaves("key values notValues")}},
}


def field_shapes(table: dict, prefix: str = "") -> set[str]:
    """Every field of a table as a shape (see schema_rules.shape): {"spec.http", "spec.http[].route", ...}."""
    out = set()
    for key, sub in table.items():
        name = key.removesuffix("[]")
        out.add(f"{prefix}{name}")
        if sub:
            out |= field_shapes(sub, f"{prefix}{key}.")
    return out


ISTIO_SHAPES = {kind: frozenset(TOP | field_shapes(table, "spec.")) for kind, table in ISTIO_FIELDS.items()}


def moved(kind: str, steps: tuple) -> list[str]:
    """Where Istio's `kind` has a field of this name one level deeper or one shallower (as paths to show)."""
    known, name, parent = ISTIO_SHAPES[kind], str(steps[-1]), steps[:-1]
    base = shape(parent).split(".") if parent else []
    deeper = [f"{show(parent)}.{s[-2]}.{name}" if parent else f"{s[-2]}.{name}"
              for s in sorted(x.split(".") for x in known)
              if len(s) == len(base) + 2 and s[:-2] == base and s[-1] == name and s[-2] != "*"]
    up = parent
    while up and isinstance(up[-1], int):
        up = up[:-1]
    shallower = [show(up[:-1] + (name,))] if up and shape(up[:-1] + (name,)) in known else []
    return deeper + shallower


def unknown_field(ref: str, kind: str, steps: tuple) -> MeshlabError:
    """The one-line error for a field Istio's `kind` does not have, with where it may have been meant."""
    where = moved(kind, steps)
    guess = f"; did you mean {' or '.join(where)}? check the indentation" if where else ""
    return MeshlabError(f"{ref}: unknown field {show(steps)}: Istio's {kind} has no such field{guess}", UNKNOWN_HINT)
