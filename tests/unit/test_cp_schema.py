"""The Istio subset of the local control plane: good objects pass, each bad field gets its one-line error."""

from __future__ import annotations

import copy

import pytest

from meshlab.backends.base import MeshlabError
from meshlab import manifests
from meshlab.controlplane import istio_fields, schema, schema_rules


def vs(**spec):
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "default"},
            "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}],
                     **spec}}


def dr(**spec):
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule", "metadata": {"name": "reviews"},
            "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}], **spec}}


def pa(**spec):
    return {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": "mesh-system"}, "spec": {"mtls": {"mode": "STRICT"}, **spec}}


def ap(**spec):
    return {"apiVersion": "security.istio.io/v1beta1", "kind": "AuthorizationPolicy", "metadata": {"name": "ratings"},
            "spec": {"selector": {"matchLabels": {"app": "ratings"}}, "action": "ALLOW", **spec}}


FULL_HTTP = {
    "name": "jason", "match": [{"uri": {"prefix": "/api"}, "headers": {"end-user": {"exact": "jason"}}},
                               {"uri": {"regex": "^/v[0-9]+/.*"}}, {"headers": {"x-canary": {"prefix": "y"}}}],
    "route": [{"destination": {"host": "reviews", "subset": "v1", "port": {"number": 9080}}, "weight": 75},
              {"destination": {"host": "reviews.default.svc.cluster.local", "subset": "v2"}, "weight": 25}],
    "retries": {"attempts": 3, "perTryTimeout": "250ms", "retryOn": "5xx,connect-failure,503"},
    "timeout": "1.5s",
    "fault": {"delay": {"fixedDelay": "2s", "percentage": {"value": 12.5}}, "abort": {"httpStatus": 503, "percentage": {"value": 0}}},
}
def se(**spec):
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "payments"},
            "spec": {"hosts": ["payments.legacy.example"], "location": "MESH_EXTERNAL", "resolution": "STATIC",
                     "ports": [{"number": 9080, "name": "http", "protocol": "HTTP"}],
                     "endpoints": [{"address": "127.0.0.9"}], **spec}}


FAILOVER = {"loadBalancer": {"localityLbSetting": {"enabled": True, "failover": [{"from": "region-1", "to": "region-2"}]}},
            "outlierDetection": {"consecutive5xxErrors": 1}}
DISTRIBUTE = {"loadBalancer": {"simple": "ROUND_ROBIN", "localityLbSetting": {"distribute": [
    {"from": "region-1/zone-1a/*", "to": {"region-1/zone-1a/*": 80, "region-2/*": 20}}]}}}
POLICY = {"loadBalancer": {"simple": "ROUND_ROBIN"},
          "connectionPool": {"tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 1, "http2MaxRequests": 10,
                                                                   "maxRequestsPerConnection": 1, "maxRetries": 2}},
          "outlierDetection": {"consecutive5xxErrors": 3, "consecutiveGatewayErrors": 2, "interval": "1s",
                               "baseEjectionTime": "30s", "maxEjectionPercent": 100},
          "tls": {"mode": "ISTIO_MUTUAL"}}
GOOD = [
    vs(),
    vs(http=[FULL_HTTP]),
    {**vs(), "apiVersion": "networking.istio.io/v1alpha3"},
    vs(http=[{"route": [{"destination": {"host": "reviews"}}], "timeout": "1m30s"}]),
    dr(),
    dr(trafficPolicy=POLICY, subsets=[{"name": "v2", "labels": {"version": "v2"}, "trafficPolicy": {"tls": {"mode": "DISABLE"}}}]),
    pa(),
    pa(selector={"matchLabels": {"app": "reviews"}}, mtls={"mode": "PERMISSIVE"}),
    pa(mtls={"mode": "UNSET"}),
    {**pa(), "spec": {}},
    ap(),
    ap(rules=[{}]),
    ap(action="DENY", rules=[{"from": [{"source": {"notPrincipals": ["cluster.local/ns/default/sa/shop-reviews"],
                                                   "namespaces": ["default", "prod-*"], "notNamespaces": ["*-test"]}}],
                              "to": [{"operation": {"methods": ["POST", "DELETE"], "paths": ["/admin*"],
                                                    "notMethods": ["GET"], "notPaths": ["*.html"]}}]}]),
    {**ap(), "metadata": {"name": "x", "namespace": "default", "labels": {"a": "b"}, "creationTimestamp": "2024-01-01T00:00:00Z"}},
    dr(trafficPolicy=FAILOVER),
    dr(trafficPolicy=DISTRIBUTE),
    dr(trafficPolicy={"loadBalancer": {"localityLbSetting": {"enabled": False}}}),
    se(),
    se(location="MESH_INTERNAL", endpoints=[{"address": "127.0.0.9", "ports": {"http": 8080}}, {"address": "::1"}],
       ports=[{"number": 9080, "name": "http", "protocol": "http"}, {"number": 5432, "name": "db", "protocol": "TCP"}]),
    se(resolution="DNS", endpoints=[]),
    se(resolution="DNS", endpoints=[{"address": "legacy.internal"}]),
]


def split(*weights):
    """An http route to reviews v1, v2, v3... with these weights (None: no weight written)."""
    return [{"route": [{"destination": {"host": "reviews", "subset": f"v{i}"}, **({} if w is None else {"weight": w})}
                       for i, w in enumerate(weights, 1)]}]


GOOD += [vs(http=split(*weights)) for weights in (  # relative weights: a destination gets weight/(sum of all weights)
    (90, 5), (300, 100), (1, 1, 1), (0, 10), (None, 10), (90, 10, 0), (0,), (250,), (2**31 - 1, 2**31 - 1))]


@pytest.mark.parametrize("doc", GOOD, ids=lambda d: f"{d['kind']}-{GOOD.index(d)}")
def test_good_objects_pass(doc):
    assert schema.check(doc, "shop.yaml") is None


def set_path(doc: dict, path: str, value) -> dict:
    """A copy of doc with the dotted path (numbers index lists) set to value; value DELETE removes the field."""
    doc = copy.deepcopy(doc)
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    target = doc
    for key in keys[:-1]:
        target = target[key]
    if value is DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return doc


DELETE = object()
FULL = vs(http=[FULL_HTTP])
H = "spec.http.0"
BAD = [  # (doc, path, value, expected message after "shop.yaml: Kind/name: ")
    (FULL, f"{H}.mirror", {"host": "x"}, "field spec.http[0].mirror is not supported by the local backend"),
    (FULL, "spec.gateways", ["gw"], "field spec.gateways is not supported by the local backend"),
    (FULL, f"{H}.match.0.queryParams", {}, "field spec.http[0].match[0].queryParams is not supported by the local backend"),
    (FULL, f"{H}.route.0.weight", -5, "spec.http[0].route[0].weight: weight -5 < 0"),
    (FULL, f"{H}.route.0.weight", "75", "spec.http[0].route[0].weight: must be an integer, got '75'"),
    (FULL, f"{H}.fault.delay.percentage.value", 101,
     "spec.http[0].fault.delay.percentage.value: percentage 101 is neither 0.0, nor in range [0.0, 100.0]"),
    (FULL, f"{H}.fault.abort.percentage.value", -1,
     "spec.http[0].fault.abort.percentage.value: percentage -1 is neither 0.0, nor in range [0.0, 100.0]"),
    (FULL, f"{H}.fault.abort.httpStatus", 600, "spec.http[0].fault.abort.httpStatus: HTTP status 600 is not in range 200..599"),
    (FULL, f"{H}.fault.abort.httpStatus", 199, "spec.http[0].fault.abort.httpStatus: HTTP status 199 is not in range 200..599"),
    (FULL, f"{H}.fault.abort.httpStatus", DELETE, "spec.http[0].fault.abort: abort must have an httpStatus"),
    (FULL, f"{H}.fault", {}, "spec.http[0].fault: fault must have at least delay or abort"),
    (FULL, f"{H}.fault.delay.fixedDelay", "0s", "spec.http[0].fault.delay.fixedDelay: duration must be greater than 1ms"),
    (FULL, f"{H}.timeout", "5", "spec.http[0].timeout: invalid duration '5' (use e.g. 1s, 250ms, 1.5s)"),
    (FULL, f"{H}.timeout", "1.0001s", "spec.http[0].timeout: only durations to ms precision are supported"),
    (FULL, f"{H}.retries.perTryTimeout", "500us", "spec.http[0].retries.perTryTimeout: duration must be greater than 1ms"),
    (FULL, f"{H}.retries.attempts", -1, "spec.http[0].retries.attempts: attempts cannot be negative"),
    (FULL, f"{H}.retries.retryOn", "5xx,sometimes", "spec.http[0].retries.retryOn: 'sometimes' is not a valid retryOn policy"),
    (FULL, f"{H}.match.0.uri", {"exact": "/a", "prefix": "/"}, "spec.http[0].match[0].uri: exactly one of exact, prefix, regex is required"),
    (FULL, f"{H}.match.0.uri", {}, "spec.http[0].match[0].uri: exactly one of exact, prefix, regex is required"),
    (FULL, f"{H}.match.0.uri", {"suffix": "x"}, "unknown field spec.http[0].match[0].uri.suffix: Istio's VirtualService has"),
    (FULL, f"{H}.match.1.uri.regex", "([a-z]", "spec.http[0].match[1].uri.regex: '([a-z]': missing ), unterminated subpattern"),
    (FULL, f"{H}.match.1.uri.regex", "(?=a)b", "spec.http[0].match[1].uri.regex: '(?=a)b': lookarounds"),
    (FULL, f"{H}.match.0.headers", {"bad header": {"exact": "x"}}, "spec.http[0].match[0].headers.bad header: invalid header name 'bad header'"),
    (FULL, f"{H}.route.1.destination.subset", "V_2", "spec.http[0].route[1].destination.subset: subset name is invalid: V_2"),
    (FULL, f"{H}.route.0.destination.port.number", 70000,
     "spec.http[0].route[0].destination.port.number: port number 70000 must be in the range 1..65535"),
    (FULL, f"{H}.route.0.destination.host", "", "spec.http[0].route[0].destination: destination must have a host"),
    (FULL, f"{H}.route", [], "spec.http[0]: HTTP route or redirect or direct response is required"),
    (FULL, "spec.hosts", [], "spec: virtual service must have at least one host"),
    (FULL, "spec.hosts", "reviews", "spec.hosts: must be a list, got 'reviews'"),
    (dr(), "spec.trafficPolicy", {"loadBalancer": {"simple": "ROUND"}},
     "spec.trafficPolicy.loadBalancer.simple: unknown value 'ROUND' (one of ROUND_ROBIN, LEAST_REQUEST, RANDOM, UNSPECIFIED, "
     "LEAST_CONN, PASSTHROUGH)"),
    (dr(), "spec.trafficPolicy", {"loadBalancer": {"simple": "PASSTHROUGH"}},
     "spec.trafficPolicy.loadBalancer.simple: value PASSTHROUGH is not supported by the local backend"),
    (dr(), "spec.trafficPolicy", {"loadBalancer": {"consistentHash": {"useSourceIp": True}}},
     "field spec.trafficPolicy.loadBalancer.consistentHash is not supported by the local backend"),
    (dr(), "spec.trafficPolicy", {"tls": {"mode": "STRICT"}},
     "spec.trafficPolicy.tls.mode: unknown value 'STRICT' (one of DISABLE, ISTIO_MUTUAL, SIMPLE, MUTUAL)"),
    (dr(), "spec.trafficPolicy", {"connectionPool": {"http": {"maxRetries": -1}}},
     "spec.trafficPolicy.connectionPool.http.maxRetries: max retries must be non-negative"),
    (dr(), "spec.trafficPolicy", {"outlierDetection": {"maxEjectionPercent": 101}},
     "spec.trafficPolicy.outlierDetection.maxEjectionPercent: max ejection percent must be in range [0..100]"),
    (dr(), "spec.trafficPolicy", {"outlierDetection": {"consecutive5xxErrors": -2}},
     "spec.trafficPolicy.outlierDetection.consecutive5xxErrors: outlier detection consecutive errors cannot be negative"),
    (dr(), "spec.trafficPolicy", {"outlierDetection": {"baseEjectionTime": "1d"}},
     "spec.trafficPolicy.outlierDetection.baseEjectionTime: invalid duration '1d' (use e.g. 1s, 250ms, 1.5s)"),
    (dr(), "spec.subsets.0.name", "v1.0", "spec.subsets[0].name: subset name is invalid: v1.0"),
    (dr(), "spec.subsets", [{"name": "v1"}, {"name": "v1"}], "spec.subsets: duplicate subset names: v1"),
    (dr(), "spec.subsets.0.labels", {"version": 1}, "spec.subsets[0].labels: must be a map of strings, got {'version': 1}"),
    (dr(), "spec.host", DELETE, "spec: destination rule must have a host"),
    (dr(), "spec.exportTo", ["."], "field spec.exportTo is not supported by the local backend"),
    (pa(), "spec.mtls.mode", "ON", "spec.mtls.mode: unknown value 'ON' (one of UNSET, DISABLE, PERMISSIVE, STRICT)"),
    (pa(), "spec.portLevelMtls", {"9080": {"mode": "DISABLE"}}, "field spec.portLevelMtls is not supported by the local backend"),
    (pa(), "spec.selector", {"matchLabels": {"app": ["x"]}}, "spec.selector.matchLabels: must be a map of strings, got {'app': ['x']}"),
    (ap(), "spec.action", "MAYBE", "spec.action: unknown value 'MAYBE' (one of ALLOW, DENY, AUDIT, CUSTOM)"),
    (ap(), "spec.action", "CUSTOM", "spec.action: value CUSTOM is not supported by the local backend"),
    (ap(), "spec.rules", [{"from": []}], "spec.rules[0].from: `from` must not be empty"),
    (ap(), "spec.rules", [{"to": [{}]}], "spec.rules[0].to[0]: `operation` must not be empty"),
    (ap(), "spec.rules", [{"from": [{"source": {"principals": [""]}}]}],
     "spec.rules[0].from[0].source.principals[0]: empty value not allowed"),
    (ap(), "spec.rules", [{"to": [{"operation": {"paths": ["/a*b"]}}]}],
     "spec.rules[0].to[0].operation.paths[0]: invalid value '/a*b': `*` is only allowed as a prefix or a suffix"),
    (ap(), "spec.rules", [{"from": [{"source": {"ipBlocks": ["1.2.3.4"]}}]}],
     "field spec.rules[0].from[0].source.ipBlocks is not supported by the local backend"),
    (ap(), "spec.rules", [{"when": [{"key": "request.headers[x]"}]}], "field spec.rules[0].when is not supported by the local backend"),
    (dr(), "spec.trafficPolicy", {"loadBalancer": {"localityLbSetting": {"enabled": "yes"}}},
     "spec.trafficPolicy.loadBalancer.localityLbSetting.enabled: must be a boolean, got 'yes'"),
    (dr(), "spec.trafficPolicy", {"loadBalancer": {"localityLbSetting": {**FAILOVER["loadBalancer"]["localityLbSetting"],
                                                                           **DISTRIBUTE["loadBalancer"]["localityLbSetting"]}}},
     "spec.trafficPolicy.loadBalancer.localityLbSetting: can not simultaneously specify 'distribute' and 'failover'"),
    (dr(trafficPolicy=DISTRIBUTE), "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute.0.to.region-2/*", 30,
     "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: total locality weight 110 != 100"),
    (dr(trafficPolicy=DISTRIBUTE), "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute.0.to.region-2/*", 0,
     "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: locality weight must be in range [1, 100]"),
    (dr(trafficPolicy=DISTRIBUTE), "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute.0.from", "*/zone-1a",
     "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].from: locality '*/zone-1a': wildcard '*' must be"),
    (dr(trafficPolicy=FAILOVER), "spec.trafficPolicy.loadBalancer.localityLbSetting.failover.0.to", "region-1",
     "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]: locality lb failover settings must specify different"),
    (dr(trafficPolicy=FAILOVER), "spec.trafficPolicy.loadBalancer.localityLbSetting.failover.0.to", "region-2/zone-2a",
     "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0].to: locality lb failover only specify region"),
    (dr(trafficPolicy=FAILOVER), "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority", ["x"],
     "field spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority is not supported by the local backend"),
    (se(), "spec.hosts", [], "spec: service entry must have at least one host"),
    (se(), "spec.ports", DELETE, "spec: service entry must have at least one port"),
    (se(), "spec.ports.0.number", 0, "spec.ports[0].number: port number 0 must be in the range 1..65535"),
    (se(), "spec.ports.0.name", DELETE, "spec.ports[0]: port name must be set"),
    (se(), "spec.ports.0.protocol", "HTTPS", "spec.ports[0].protocol: protocol HTTPS is not supported by the local backend"),
    (se(), "spec.ports.0.protocol", "SMTP", "spec.ports[0].protocol: unsupported protocol 'SMTP'"),
    (se(), "spec.ports", [{"number": 1, "name": "a"}, {"number": 1, "name": "b"}], "spec.ports: port number 1 already defined"),
    (se(), "spec.location", "OUTSIDE", "spec.location: unknown value 'OUTSIDE' (one of MESH_EXTERNAL, MESH_INTERNAL)"),
    (se(), "spec.resolution", "DNS_ROUND_ROBIN", "spec.resolution: value DNS_ROUND_ROBIN is not supported by the local backend"),
    (se(), "spec.resolution", DELETE, "spec.resolution: resolution NONE (the default) is not supported by the local backend"),
    (se(), "spec.endpoints", [], "spec.endpoints: endpoints must be provided for resolution STATIC"),
    (se(), "spec.endpoints.0.address", "legacy.internal",
     "spec.endpoints[0].address: endpoint address 'legacy.internal' is not a valid IP address"),
    (se(), "spec.endpoints.0.ports", {"grpc": 9090}, "spec.endpoints[0].ports.grpc: endpoint port grpc is not defined"),
    (se(), "spec.endpoints.0.labels", {"a": "b"}, "field spec.endpoints[0].labels is not supported by the local backend"),
    (se(), "spec.workloadSelector", {"labels": {"a": "b"}}, "field spec.workloadSelector is not supported by the local backend"),
    (se(resolution="DNS"), "spec.hosts", ["*.legacy.example"],
     "spec.hosts: wildcard host *.legacy.example is not allowed with resolution DNS"),
]


@pytest.mark.parametrize("doc,path,value,expected", BAD, ids=[f"{b[1]}={b[2]!r}"[:60] for b in BAD])
def test_bad_field_gets_one_line_error(doc, path, value, expected):
    bad = set_path(doc, path, value)
    with pytest.raises(MeshlabError) as caught:
        schema.check(bad, "shop.yaml")
    error = caught.value
    assert error.message.startswith(f"shop.yaml: {doc['kind']}/{doc['metadata']['name']}: ")
    assert error.message.split(": ", 2)[2].startswith(expected)
    assert "\n" not in str(error)
    assert ("--backend kind" in error.hint) == ("not supported by the local backend" in error.message)


@pytest.mark.parametrize("doc,expected", [
    ({"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry", "metadata": {"name": "ext"}, "spec": {}},
     "shop.yaml: WorkloadEntry/ext: kind WorkloadEntry (networking.istio.io/v1) is not supported by the local backend"),
    ({"apiVersion": "networking.istio.io/v2", "kind": "VirtualService", "metadata": {"name": "r"}, "spec": {}},
     "shop.yaml: VirtualService/r: apiVersion networking.istio.io/v2 is not served (use networking.istio.io/v1)"),
    ({"apiVersion": "security.istio.io/v1alpha3", "kind": "PeerAuthentication", "metadata": {"name": "p"}},
     "shop.yaml: PeerAuthentication/p: apiVersion security.istio.io/v1alpha3 is not served (use security.istio.io/v1)"),
    ({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {}},
     "shop.yaml: PeerAuthentication/None: metadata.name is required"),
    ({**pa(), "data": {}}, "shop.yaml: PeerAuthentication/default: unknown field data: Istio's PeerAuthentication has no "
                           "such field"),
])
def test_kind_version_and_top_level(doc, expected):
    with pytest.raises(MeshlabError) as caught:
        schema.check(doc, "shop.yaml")
    assert caught.value.message == expected


@pytest.mark.parametrize("doc,expected", [
    (vs(), True), (pa(), True), ({"apiVersion": "networking.istio.io/v1", "kind": "Gateway"}, True),
    ({"apiVersion": "v1", "kind": "Service"}, False), ({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress"}, False),
    ("not a doc", False),
])
def test_is_istio(doc, expected):
    assert schema.is_istio(doc) is expected


def test_kinds_are_the_five_of_the_subset():
    assert {kind for _, kind in schema.KINDS} == {"VirtualService", "DestinationRule", "ServiceEntry",
                                                  "PeerAuthentication", "AuthorizationPolicy"}


@pytest.mark.parametrize("text,seconds", [("1s", 1), ("250ms", 0.25), ("1.5s", 1.5), ("1m30s", 90), ("2h", 7200), (".5s", 0.5)])
def test_durations(text, seconds):
    assert schema_rules.seconds(text) == pytest.approx(seconds)


# ---- weights: relative in Istio (weight/sum); refused only where Istio refuses ----

@pytest.mark.parametrize("weights,expected", [
    ((0, 0), "spec.http[0].route: total destination weight = 0"),
    ((None, None), "spec.http[0].route: total destination weight = 0"),
    ((0, None, 0), "spec.http[0].route: total destination weight = 0"),
    ((110, -10), "spec.http[0].route[1].weight: weight -10 < 0"),
    ((-1,), "spec.http[0].route[0].weight: weight -1 < 0"),
    ((2**31, 1), "spec.http[0].route[0].weight: weight 2147483648 does not fit Istio's int32 (at most 2147483647)"),
    ((90, "10"), "spec.http[0].route[1].weight: must be an integer, got '10'"),
    ((90, 10.5), "spec.http[0].route[1].weight: must be an integer, got 10.5"),
])
def test_weights_istio_refuses(weights, expected):
    with pytest.raises(MeshlabError) as caught:
        schema.check(vs(http=split(*weights)), "shop.yaml")
    assert caught.value.message == f"shop.yaml: VirtualService/reviews: {expected}"
    assert caught.value.hint == schema.INVALID_HINT


def test_relative_weights_reach_envoy_as_written():
    """90/5 passes the schema, becomes weighted_clusters 90/5 with no total_weight (Envoy splits by the sum, as
    Istio's sidecars do), and Envoy itself accepts the sidecar config."""
    from meshlab.controlplane import envoy_check, model, snapshot

    route = vs(http=split(90, 5))
    schema.check(route, "shop.yaml")
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "default"},
               "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080, "targetPort": "http"}]}}
    subsets = dr(subsets=[{"name": v, "labels": {"version": v}} for v in ("v1", "v2")])
    pods = [{"name": f"reviews-{v}-0", "namespace": "default", "ip": f"127.20.1.{i}", "node": "node-1",
             "labels": {"app": "reviews", "version": v}, "annotations": {}, "service_account": "shop-reviews",
             "ready": True, "injected": True, "ports": {"http": 9080}} for i, v in ((11, "v1"), (12, "v2"))]
    snaps = snapshot.build_all(model.from_watch({"revision": 1, "objects": [service, subsets, route], "pods": pods}))
    sidecar = next(iter(snaps.values()))
    hosts = sidecar.resources[snapshot.ROUTE_TYPE]["9080"]["virtual_hosts"]
    action = next(h for h in hosts if h["name"].startswith("reviews."))["routes"][0]["route"]
    assert action["weighted_clusters"] == {"clusters": [
        {"name": "outbound|9080|v1|reviews.default.svc.cluster.local", "weight": 90},
        {"name": "outbound|9080|v2|reviews.default.svc.cluster.local", "weight": 5}]}
    assert envoy_check.validate(sidecar, "shop.yaml") is None


# ---- fields: Istio's but not served locally (use kind) vs. not Istio's at all (a typo or a wrong indent) ----

def unknown(kind, path, guess=""):
    tail = f"; did you mean {guess}? check the indentation" if guess else ""
    return f"unknown field {path}: Istio's {kind} has no such field{tail}"


VS_ROUTE = "spec.http.0.route.0"
UNKNOWN = [  # (doc, path, value, the whole message after "shop.yaml: Kind/name: ")
    (pa(), "spec", {"mtls": None, "mode": "STRICT"}, unknown("PeerAuthentication", "spec.mode", "spec.mtls.mode")),
    (pa(), "spec.mode", "STRICT", unknown("PeerAuthentication", "spec.mode", "spec.mtls.mode")),
    (pa(), "spec.selector", {"app": "reviews"}, unknown("PeerAuthentication", "spec.selector.app")),
    (pa(), "spec.mtls.mtls", {"mode": "STRICT"}, unknown("PeerAuthentication", "spec.mtls.mtls", "spec.mtls")),
    (pa(), "spec.matchLabels", {"app": "reviews"},
     unknown("PeerAuthentication", "spec.matchLabels", "spec.selector.matchLabels")),
    (pa(), "mtls", {"mode": "STRICT"}, unknown("PeerAuthentication", "mtls", "spec.mtls")),
    (FULL, f"{H}.weight", 50, unknown("VirtualService", "spec.http[0].weight", "spec.http[0].route[].weight")),
    (FULL, f"{VS_ROUTE}.destination.weight", 50,
     unknown("VirtualService", "spec.http[0].route[0].destination.weight", "spec.http[0].route[0].weight")),
    (FULL, f"{VS_ROUTE}.subset", "v1",
     unknown("VirtualService", "spec.http[0].route[0].subset", "spec.http[0].route[0].destination.subset")),
    (FULL, f"{H}.match.0.route", [], unknown("VirtualService", "spec.http[0].match[0].route", "spec.http[0].route")),
    (FULL, f"{H}.match.0.end-user", {"exact": "jason"}, unknown("VirtualService", "spec.http[0].match[0].end-user")),
    (FULL, f"{H}.match.0.headers.end-user", {"exact": "jason", "suffix": "n"},
     unknown("VirtualService", "spec.http[0].match[0].headers.end-user.suffix")),
    (FULL, f"{H}.retry", {"attempts": 1}, unknown("VirtualService", "spec.http[0].retry")),
    (FULL, "hosts", ["reviews"], unknown("VirtualService", "hosts", "spec.hosts")),
    (dr(), "spec.trafficPolicy", {"consecutive5xxErrors": 1}, unknown(
        "DestinationRule", "spec.trafficPolicy.consecutive5xxErrors", "spec.trafficPolicy.outlierDetection.consecutive5xxErrors")),
    (dr(), "spec.trafficPolicy", {"mode": "ISTIO_MUTUAL"},
     unknown("DestinationRule", "spec.trafficPolicy.mode", "spec.trafficPolicy.tls.mode")),
    (dr(), "spec.trafficPolicy", {"connectionPool": {"idleTimeout": "1s"}}, unknown(
        "DestinationRule", "spec.trafficPolicy.connectionPool.idleTimeout",
        "spec.trafficPolicy.connectionPool.http.idleTimeout or spec.trafficPolicy.connectionPool.tcp.idleTimeout")),
    (dr(), "spec.trafficPolicy", {"host": "reviews"}, unknown("DestinationRule", "spec.trafficPolicy.host", "spec.host")),
    (dr(), "spec.subsets.0.version", "v1", unknown("DestinationRule", "spec.subsets[0].version")),
    (ap(), "spec.rules", [{"from": [{"principals": ["x"]}]}],
     unknown("AuthorizationPolicy", "spec.rules[0].from[0].principals", "spec.rules[0].from[0].source.principals")),
    (ap(), "spec.rules", [{"source": {"principals": ["x"]}}],
     unknown("AuthorizationPolicy", "spec.rules[0].source", "spec.rules[0].from[].source")),
    (ap(), "spec.rules", [{"to": [{"operation": {"method": ["GET"]}}]}],
     unknown("AuthorizationPolicy", "spec.rules[0].to[0].operation.method")),
    (se(), "spec.ports.0.port", 80, unknown("ServiceEntry", "spec.ports[0].port")),
    (se(), "spec.endpoints.0.ip", "127.0.0.9", unknown("ServiceEntry", "spec.endpoints[0].ip")),
]
ISTIO_NOT_LOCAL = [  # fields Istio has, which the local backend does not serve: the kind hint stays
    (FULL, f"{H}.mirror", {"host": "x"}, "spec.http[0].mirror"),
    (FULL, f"{H}.corsPolicy", {"allowMethods": ["GET"]}, "spec.http[0].corsPolicy"),
    (FULL, f"{VS_ROUTE}.headers", {"request": {"set": {"a": "b"}}}, "spec.http[0].route[0].headers"),
    (FULL, f"{H}.match.0.withoutHeaders", {}, "spec.http[0].match[0].withoutHeaders"),
    (FULL, "spec.tcp", [], "spec.tcp"),
    (dr(), "spec.trafficPolicy", {"portLevelSettings": []}, "spec.trafficPolicy.portLevelSettings"),
    (dr(), "spec.subsets.0.trafficPolicy", {"connectionPool": {"tcp": {"connectTimeout": "1s"}}},
     "spec.subsets[0].trafficPolicy.connectionPool.tcp.connectTimeout"),
    (pa(), "spec.portLevelMtls", {"9080": {"mode": "DISABLE"}}, "spec.portLevelMtls"),
    (ap(), "spec.targetRefs", [{"kind": "Service", "name": "ratings"}], "spec.targetRefs"),
    (ap(), "spec.rules", [{"from": [{"source": {"requestPrincipals": ["*"]}}]}],
     "spec.rules[0].from[0].source.requestPrincipals"),
    (se(), "spec.addresses", ["10.0.0.1"], "spec.addresses"),
]


@pytest.mark.parametrize("doc,path,value,expected", UNKNOWN, ids=[f"{u[1]}={u[2]!r}"[:60] for u in UNKNOWN])
def test_a_field_istio_does_not_have_is_unknown(doc, path, value, expected):
    with pytest.raises(MeshlabError) as caught:
        schema.check(set_path(doc, path, value), "shop.yaml")
    assert caught.value.message == f"shop.yaml: {doc['kind']}/{doc['metadata']['name']}: {expected}"
    assert caught.value.hint == istio_fields.UNKNOWN_HINT and "--backend kind" not in str(caught.value)


@pytest.mark.parametrize("doc,path,value,field", ISTIO_NOT_LOCAL, ids=[u[1] for u in ISTIO_NOT_LOCAL])
def test_a_field_istio_has_outside_the_subset_points_to_kind(doc, path, value, field):
    with pytest.raises(MeshlabError) as caught:
        schema.check(set_path(doc, path, value), "shop.yaml")
    assert caught.value.message == (f"shop.yaml: {doc['kind']}/{doc['metadata']['name']}: field {field} is not "
                                    "supported by the local backend")
    assert caught.value.hint == schema.UNSUPPORTED_HINT


@pytest.mark.parametrize("doc,path,value,field", ISTIO_NOT_LOCAL, ids=[u[1] for u in ISTIO_NOT_LOCAL])
def test_on_a_cluster_with_istio_what_istio_has_is_left_to_its_webhook(doc, path, value, field):
    schema.check(set_path(doc, path, value), "shop.yaml", subset=False)  # kind/kube: the full Istio API
    manifests.validate([set_path(doc, path, value)], "shop.yaml", istio_subset=False)


def test_on_a_cluster_with_istio_other_istio_kinds_pass_and_unknown_fields_are_still_refused():
    gateway = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "gw"},
               "spec": {"selector": {"istio": "ingressgateway"}, "servers": []}}
    schema.check(gateway, "gw.yaml", subset=False)
    with pytest.raises(MeshlabError, match="not supported by the local backend"):
        schema.check(gateway, "gw.yaml")
    with pytest.raises(MeshlabError, match="unknown field spec.mode"):
        schema.check(set_path(pa(), "spec.mode", "STRICT"), "pa.yaml", subset=False)


def local_shapes(node, prefix: str) -> set[str]:
    """Every field of the local subset's table, as istio_fields.field_shapes writes Istio's."""
    if isinstance(node, schema_rules.Seq):
        return local_shapes(node.item, prefix[:-1] + "[].") if prefix else set()
    if isinstance(node, schema_rules.MapOf):
        return local_shapes(node.value, prefix + "*.")
    if not isinstance(node, schema_rules.Obj):
        return set()
    out = set()
    for key, sub in node.fields.items():
        out.add(prefix + key)
        out |= local_shapes(sub, prefix + key + ".")
    return out


@pytest.mark.parametrize("kind", sorted(schema.SPECS))
def test_every_local_field_is_an_istio_field(kind):
    assert local_shapes(schema.SPECS[kind], "spec.") <= istio_fields.ISTIO_SHAPES[kind]
    assert istio_fields.ISTIO_SHAPES[kind] >= {"spec", "metadata", "status"}


@pytest.mark.parametrize("capabilities, subset", [({"mesh", "convergence"}, True), ({"mesh", "istio"}, False)])
def test_a_lab_keeps_istio_objects_to_the_subset_only_where_meshlabs_control_plane_serves_them(
        monkeypatch, capabilities, subset):
    import meshlab

    seen = []
    monkeypatch.setattr(manifests, "validate", lambda docs, source, istio_subset=True: seen.append(istio_subset))

    class Backend:
        def capabilities(self):
            return capabilities

        def apply(self, docs, source):
            return []

    lab = meshlab.Lab("schema-subset")
    lab.backend = Backend()
    lab._apply_docs([pa()], "pa.yaml")
    assert seen == [subset]
