"""Table tests of the pure translators: Istio fragment in, Envoy fragment out."""

from __future__ import annotations

import pytest

from meshlab.controlplane import model
from meshlab.controlplane.translate import authz, clusters, common, endpoints, listeners, mtls, routes

SPIFFE_REVIEWS = "spiffe://cluster.local/ns/default/sa/shop-reviews"


def pod(name="reviews-v1-a", ns="default", ip="127.20.1.11", labels=None, injected=True, ready=True, sa="shop-reviews",
        ports=None):
    return {"name": name, "namespace": ns, "ip": ip, "node": "node-1", "labels": labels or {"app": "reviews", "version": "v1"},
            "annotations": {}, "service_account": sa, "ready": ready, "injected": injected,
            "ports": {"http": 9080} if ports is None else ports}


def service(name, ns="default", port=9080, target="http"):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": port, "targetPort": target}]}}


def istio(kind, name, spec, ns="default", created=""):
    group = "security" if kind in ("PeerAuthentication", "AuthorizationPolicy") else "networking"
    return {"apiVersion": f"{group}.istio.io/v1", "kind": kind,
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created}, "spec": spec}


def make(objects=(), pods=()):
    return model.from_watch({"revision": 1, "objects": list(objects), "pods": list(pods)})


SHOPLET = make([service("reviews"), service("ratings")], [pod()])
MS = "MILLION"


# ---- routes ----

@pytest.mark.parametrize("match,expected", [
    (None, {"prefix": "/"}),
    ({"uri": {"exact": "/a"}}, {"path": "/a"}),
    ({"uri": {"prefix": "/api"}}, {"prefix": "/api"}),
    ({"uri": {"regex": "/v[0-9]+"}}, {"safe_regex": {"regex": "/v[0-9]+"}}),
    ({"headers": {"End-User": {"exact": "jason"}}},
     {"prefix": "/", "headers": [{"name": "end-user", "string_match": {"exact": "jason"}}]}),
    ({"uri": {"prefix": "/"}, "headers": {"b": {"regex": "x.*"}, "a": {"prefix": "y"}}},
     {"prefix": "/", "headers": [{"name": "a", "string_match": {"prefix": "y"}},
                                 {"name": "b", "string_match": {"safe_regex": {"regex": "x.*"}}}]}),
])
def test_translate_match(match, expected):
    assert routes.translate_match(match) == expected


@pytest.mark.parametrize("destination,expected", [
    ({"host": "reviews"}, "outbound|9080||reviews.default.svc.cluster.local"),
    ({"host": "reviews", "subset": "v2"}, "outbound|9080|v2|reviews.default.svc.cluster.local"),
    ({"host": "reviews.default.svc.cluster.local", "port": {"number": 8000}}, "outbound|8000||reviews.default.svc.cluster.local"),
    ({"host": "nowhere"}, "outbound|80||nowhere.default.svc.cluster.local"),
])
def test_destination_cluster(destination, expected):
    assert routes.destination_cluster(destination, "default", SHOPLET, 80) == expected


def dest(subset, weight=None):
    out = {"destination": {"host": "reviews", "subset": subset}}
    return out if weight is None else {**out, "weight": weight}


def c(subset):
    return f"outbound|9080|{subset}|reviews.default.svc.cluster.local"


@pytest.mark.parametrize("route,expected", [
    ([dest("v1")], {"cluster": c("v1")}),
    ([dest("v1", 100)], {"cluster": c("v1")}),
    ([dest("v1", 90), dest("v2", 10)], {"weighted_clusters": {"clusters": [{"name": c("v1"), "weight": 90},
                                                                            {"name": c("v2"), "weight": 10}]}}),
    ([dest("v1", 100), dest("v2", 0)], {"cluster": c("v1")}),
    ([dest("v1", 0), dest("v2", 0)], {"cluster": c("v1")}),
    ([dest("v1", 50), dest("v1", 25), dest("v3", 25)],
     {"weighted_clusters": {"clusters": [{"name": c("v1"), "weight": 75}, {"name": c("v3"), "weight": 25}]}}),
])
def test_translate_destinations(route, expected):
    assert routes.translate_destinations(route, "default", SHOPLET, 80) == expected


PREVIOUS = [{"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {"@type": common.PREVIOUS_HOSTS}}]


@pytest.mark.parametrize("retries,expected", [
    (None, {"retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", "num_retries": 2,
            "retry_host_predicate": PREVIOUS, "host_selection_retry_max_attempts": 5, "retriable_status_codes": [503]}),
    ({"attempts": 0}, None),
    ({"perTryTimeout": "1s"}, None),
    ({"attempts": 3, "perTryTimeout": "250ms", "retryOn": "5xx,gateway-error"},
     {"retry_on": "5xx,gateway-error", "num_retries": 3, "per_try_timeout": "0.25s", "retry_host_predicate": PREVIOUS,
      "host_selection_retry_max_attempts": 5}),
    ({"attempts": 1, "retryOn": "connect-failure, 503,502"},
     {"retry_on": "connect-failure,retriable-status-codes", "num_retries": 1, "retry_host_predicate": PREVIOUS,
      "host_selection_retry_max_attempts": 5, "retriable_status_codes": [503, 502]}),
    ({"attempts": 5}, {"retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
                       "num_retries": 5, "retry_host_predicate": PREVIOUS, "host_selection_retry_max_attempts": 5,
                       "retriable_status_codes": [503]}),
])
def test_translate_retry_policy(retries, expected):
    assert routes.translate_retry_policy(retries) == expected


@pytest.mark.parametrize("fault,expected", [
    (None, None),
    ({"delay": {"fixedDelay": "5s", "percentage": {"value": 100}}},
     {"@type": common.FAULT, "delay": {"fixed_delay": "5s", "percentage": {"numerator": 1000000, "denominator": MS}}}),
    ({"abort": {"httpStatus": 500, "percentage": {"value": 12.5}}},
     {"@type": common.FAULT, "abort": {"http_status": 500, "percentage": {"numerator": 125000, "denominator": MS}}}),
    ({"delay": {"fixedDelay": "1.5s"}, "abort": {"httpStatus": 503}},  # Istio: "If left unspecified, no request will be ..."
     {"@type": common.FAULT, "delay": {"fixed_delay": "1.5s", "percentage": {"numerator": 0, "denominator": MS}},
      "abort": {"http_status": 503, "percentage": {"numerator": 0, "denominator": MS}}}),
])
def test_translate_fault(fault, expected):
    assert routes.translate_fault(fault) == expected


@pytest.mark.parametrize("text,expected", [("1s", "1s"), ("250ms", "0.25s"), ("1m", "60s"), ("1.5s", "1.5s"), ("1m30s", "90s")])
def test_envoy_duration(text, expected):
    assert common.envoy_duration(text) == expected


def test_http_route_one_envoy_route_per_match_sharing_action_and_fault():
    http = {"name": "jason", "match": [{"headers": {"end-user": {"exact": "jason"}}}, {"uri": {"prefix": "/beta"}}],
            "route": [dest("v2")], "timeout": "2s", "retries": {"attempts": 0},
            "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 50}}}}
    out = routes.translate_http_route(http, "default", SHOPLET, 9080)
    fault = {"envoy.filters.http.fault": {"@type": common.FAULT, "abort": {
        "http_status": 503, "percentage": {"numerator": 500000, "denominator": MS}}}}
    action = {"cluster": c("v2"), "timeout": "2s"}
    assert out == [
        {"name": "jason", "match": {"prefix": "/", "headers": [{"name": "end-user", "string_match": {"exact": "jason"}}]},
         "route": action, "typed_per_filter_config": fault},
        {"name": "jason", "match": {"prefix": "/beta"}, "route": action, "typed_per_filter_config": fault}]


def test_default_route_has_no_timeout_and_istio_retries():
    route = routes.default_route(SHOPLET.services[1])
    assert route["route"]["cluster"] == c("")
    assert route["route"]["timeout"] == "0s" and route["route"]["retry_policy"]["num_retries"] == 2


@pytest.mark.parametrize("proxy_ns,expected", [
    ("default", ["reviews.default.svc.cluster.local", "reviews.default.svc", "reviews.default", "reviews"]),
    ("other", ["reviews.default.svc.cluster.local", "reviews.default.svc", "reviews.default"]),
])
def test_domains(proxy_ns, expected):
    assert routes.domains(SHOPLET.service("reviews.default.svc.cluster.local"), proxy_ns) == expected


def test_virtual_service_oldest_wins_and_short_host_is_read_in_its_namespace():
    m = make([service("reviews"), istio("VirtualService", "new", {"hosts": ["reviews"], "http": [{"route": [dest("v2")]}]},
                                         created="2024-02-01T00:00:00Z"),
              istio("VirtualService", "old", {"hosts": ["reviews.default.svc.cluster.local"],
                                              "http": [{"route": [dest("v1")]}]}, created="2024-01-01T00:00:00Z"),
              istio("VirtualService", "elsewhere", {"hosts": ["reviews"], "http": [{"route": [dest("v3")]}]}, ns="other")])
    host = routes.virtual_host(m, m.services[0], "default")
    assert [r["route"]["cluster"] for r in host["routes"]] == [c("v1")]


def test_route_config_name_is_the_common_port():
    assert routes.route_config_name(make([service("a"), service("b"), service("c", port=8080)])) == "9080"
    assert routes.route_config_name(make()) == "80"


# ---- clusters ----

@pytest.mark.parametrize("lb,expected", [(None, "LEAST_REQUEST"), ({"simple": "ROUND_ROBIN"}, "ROUND_ROBIN"),
                                         ({"simple": "RANDOM"}, "RANDOM"), ({"simple": "LEAST_CONN"}, "LEAST_REQUEST")])
def test_translate_lb_policy(lb, expected):
    assert clusters.translate_lb_policy(lb) == expected


U = clusters.UNLIMITED


@pytest.mark.parametrize("pool,expected", [
    (None, {"max_connections": U, "max_pending_requests": U, "max_requests": U, "max_retries": U}),
    ({"tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 2, "http2MaxRequests": 3, "maxRetries": 4}},
     {"max_connections": 1, "max_pending_requests": 2, "max_requests": 3, "max_retries": 4}),
])
def test_translate_circuit_breakers(pool, expected):
    assert clusters.translate_circuit_breakers(pool) == {"thresholds": [{**expected, "track_remaining": True}]}


def test_translate_protocol_options():
    assert clusters.translate_protocol_options(None) is None
    options = clusters.translate_protocol_options({"http": {"maxRequestsPerConnection": 1}})
    assert options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["common_http_protocol_options"] == \
        {"max_requests_per_connection": 1}


@pytest.mark.parametrize("outlier,expected", [
    (None, None),
    ({"consecutive5xxErrors": 3, "interval": "1s", "baseEjectionTime": "30s", "maxEjectionPercent": 50},
     {"enforcing_success_rate": 0, "consecutive_5xx": 3, "enforcing_consecutive_5xx": 100, "interval": "1s",
      "base_ejection_time": "30s", "max_ejection_percent": 50}),
    ({"consecutive5xxErrors": 0, "consecutiveGatewayErrors": 2},
     {"enforcing_success_rate": 0, "consecutive_5xx": 0, "enforcing_consecutive_5xx": 0,
      "consecutive_gateway_failure": 2, "enforcing_consecutive_gateway_failure": 100}),
])
def test_translate_outlier_detection(outlier, expected):
    assert clusters.translate_outlier_detection(outlier) == expected


@pytest.mark.parametrize("policy,expected", [
    ({}, None),
    ({"loadBalancer": {"simple": "ROUND_ROBIN"}}, None),
    ({"outlierDetection": {"consecutive5xxErrors": 1}, "loadBalancer": {"localityLbSetting": {"enabled": False}}},
     {"update_merge_window": "0s"}),
    ({"outlierDetection": {"consecutive5xxErrors": 1}},  # Istio's mesh default turns locality LB on
     {"update_merge_window": "0s", "locality_weighted_lb_config": {}}),
])
def test_eds_cluster_common_lb_config(policy, expected):
    """Ejections reach the load balancer at once (no 1 s merge window), and locality LB when it is in effect."""
    assert clusters.eds_cluster(c("v1"), policy, ()).get("common_lb_config") == expected


def test_translate_tls_modes():
    name = c("v1")
    auto = clusters.translate_tls(None, name, (SPIFFE_REVIEWS,))
    matches = auto["transport_socket_matches"]
    assert [m["match"] for m in matches] == [{"tlsMode": "istio"}, {}]
    tls = matches[0]["transport_socket"]["typed_config"]
    assert tls["sni"] == "outbound_.9080_.v1_.reviews.default.svc.cluster.local"
    context = tls["common_tls_context"]
    assert context["tls_certificate_sds_secret_configs"] == [{"name": "default", "sds_config": common.ADS}]
    assert context["combined_validation_context"] == {
        "default_validation_context": {"match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": SPIFFE_REVIEWS}}]},
        "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": common.ADS}}
    assert matches[1]["transport_socket"]["name"] == "envoy.transport_sockets.raw_buffer"
    assert clusters.translate_tls({"mode": "ISTIO_MUTUAL"}, name, ())["transport_socket"] == matches[0]["transport_socket"] | {
        "typed_config": {**tls, "common_tls_context": {**context, "combined_validation_context": {
            "default_validation_context": {}, "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": common.ADS}}}}}
    assert clusters.translate_tls({"mode": "DISABLE"}, name, ()) == {}


def test_destination_rule_precedence_proxy_namespace_then_service_then_root():
    rules = [istio("DestinationRule", "root", {"host": "reviews.default.svc.cluster.local"}, ns="mesh-system"),
             istio("DestinationRule", "svc", {"host": "reviews"}),
             istio("DestinationRule", "mine", {"host": "reviews.default.svc.cluster.local"}, ns="client")]
    m = make([service("reviews")] + rules)
    host = "reviews.default.svc.cluster.local"
    assert clusters.destination_rule_for(m, host, "client").name == "mine"
    assert clusters.destination_rule_for(m, host, "default").name == "svc"
    assert clusters.destination_rule_for(make(rules[:1]), host, "x").name == "root"
    assert clusters.destination_rule_for(m, "ratings.default.svc.cluster.local", "default") is None


def test_subset_policy_overrides_the_rule_part_by_part():
    top = {"loadBalancer": {"simple": "RANDOM"}, "tls": {"mode": "ISTIO_MUTUAL"}}
    assert clusters.merge_policy(top, {"tls": {"mode": "DISABLE"}}) == {"loadBalancer": {"simple": "RANDOM"},
                                                                        "tls": {"mode": "DISABLE"}}


def test_outbound_clusters_one_per_port_and_subset():
    m = make([service("reviews"), service("ratings"), istio("DestinationRule", "reviews", {
        "host": "reviews", "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}},
        "subsets": [{"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}},
                    {"name": "v2", "labels": {"version": "v2"}}]})], [pod()])
    out = {cl["name"]: cl for cl in clusters.outbound_clusters(m, m.pods[0])}
    assert sorted(out) == sorted(["outbound|9080||ratings.default.svc.cluster.local", c(""), c("v1"), c("v2")])
    assert out[c("v1")]["lb_policy"] == "RANDOM" and out[c("v2")]["lb_policy"] == "ROUND_ROBIN"
    assert out[c("")]["eds_cluster_config"] == {"eds_config": common.ADS, "service_name": c("")}
    assert out[c("")]["type"] == "EDS" and out[c("")]["connect_timeout"] == "10s"


def test_inbound_cluster_is_the_app_at_pod_ip():
    cl = clusters.inbound_cluster(SHOPLET.pods[0], 9080)
    assert cl["name"] == "inbound|9080||" and cl["type"] == "STATIC" and "@type" not in cl
    assert cl["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] == \
        {"socket_address": {"address": "127.20.1.11", "port_value": 9080}}


# ---- endpoints ----

TLS_META = {"filter_metadata": {"envoy.transport_socket_match": {"tlsMode": "istio"}}}


def addresses(cla):
    return [(e["endpoint"]["address"]["socket_address"]["address"], e["endpoint"]["address"]["socket_address"]["port_value"],
             "metadata" in e) for group in cla["endpoints"] for e in group["lb_endpoints"]]


def test_endpoints_sidecar_pods_at_15006_with_tls_mode_others_at_target_port():
    m = make([service("reviews"), istio("DestinationRule", "r", {"host": "reviews", "subsets": [
        {"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]})],
             [pod(), pod("reviews-v2-a", ip="127.20.1.12", labels={"app": "reviews", "version": "v2"}, injected=False,
                         ports={"http": 9081}),
              pod("reviews-v2-b", ip="127.20.1.13", labels={"app": "reviews", "version": "v2"}, ready=False)])
    out = {cla["cluster_name"]: cla for cla in endpoints.load_assignments(m, m.pods[0])}
    assert addresses(out[c("")]) == [("127.20.1.11", 15006, True), ("127.20.1.12", 9081, False)]
    assert addresses(out[c("v1")]) == [("127.20.1.11", 15006, True)]
    assert addresses(out[c("v2")]) == [("127.20.1.12", 9081, False)]
    assert endpoints.lb_endpoint(m.pods[0], m.services[0].ports[0], "PERMISSIVE")["metadata"] == TLS_META


def test_endpoints_of_a_workload_with_mtls_disabled_are_called_in_plaintext():
    m = make([service("reviews"), istio("PeerAuthentication", "off", {"mtls": {"mode": "DISABLE"}})], [pod()])
    assert addresses(endpoints.load_assignments(m, m.pods[0])[0]) == [("127.20.1.11", 15006, False)]


def test_endpoints_empty_when_no_ready_pod():
    m = make([service("reviews")], [pod(ready=False)])
    assert endpoints.load_assignments(m, m.pods[0]) == [{"cluster_name": c(""), "endpoints": []}]


# ---- mTLS ----

PA = "PeerAuthentication"


@pytest.mark.parametrize("policies,expected", [
    ([], "PERMISSIVE"),
    ([istio(PA, "mesh", {"mtls": {"mode": "STRICT"}}, ns="mesh-system")], "STRICT"),
    ([istio(PA, "mesh", {"mtls": {"mode": "STRICT"}}, ns="mesh-system"), istio(PA, "ns", {"mtls": {"mode": "DISABLE"}})],
     "DISABLE"),
    ([istio(PA, "ns", {"mtls": {"mode": "DISABLE"}}),
      istio(PA, "wl", {"selector": {"matchLabels": {"app": "reviews"}}, "mtls": {"mode": "STRICT"}})], "STRICT"),
    ([istio(PA, "ns", {"mtls": {"mode": "STRICT"}}),
      istio(PA, "wl", {"selector": {"matchLabels": {"app": "ratings"}}, "mtls": {"mode": "DISABLE"}})], "STRICT"),
    ([istio(PA, "mesh", {"mtls": {"mode": "STRICT"}}, ns="mesh-system"), istio(PA, "ns", {"mtls": {"mode": "UNSET"}})],
     "STRICT"),
    ([istio(PA, "other", {"mtls": {"mode": "STRICT"}}, ns="other")], "PERMISSIVE"),
    ([istio(PA, "root-selector", {"selector": {"matchLabels": {"app": "reviews"}}, "mtls": {"mode": "STRICT"}},
            ns="mesh-system")], "PERMISSIVE"),
])
def test_workload_mode(policies, expected):
    m = make(policies, [pod()])
    assert mtls.workload_mode(m, m.pods[0]) == expected


# ---- authorization ----

@pytest.mark.parametrize("value,expected", [
    ("cluster.local/ns/default/sa/shop-reviews", {"exact": SPIFFE_REVIEWS}),
    ("cluster.local/ns/default/*", {"prefix": "spiffe://cluster.local/ns/default/"}),
    ("*/sa/shop-reviews", {"suffix": "/sa/shop-reviews"}),
    ("*", {"safe_regex": {"regex": ".+"}}),
])
def test_translate_principal(value, expected):
    assert authz.translate_principal(value) == {"authenticated": {"principal_name": expected}}


@pytest.mark.parametrize("value,regex", [
    ("default", r"spiffe://cluster\.local/ns/default/.*"),
    ("prod-*", r"spiffe://cluster\.local/ns/prod\-[^/]*/.*"),
    ("*", r"spiffe://cluster\.local/ns/[^/]+/.*"),
])
def test_translate_namespace(value, regex):
    assert authz.translate_namespace(value) == {"authenticated": {"principal_name": {"safe_regex": {"regex": regex}}}}


@pytest.mark.parametrize("function,value,expected", [
    (authz.translate_method, "GET", {"header": {"name": ":method", "string_match": {"exact": "GET"}}}),
    (authz.translate_method, "*", {"header": {"name": ":method", "present_match": True}}),
    (authz.translate_path, "/api/v1", {"url_path": {"path": {"exact": "/api/v1"}}}),
    (authz.translate_path, "/api/*", {"url_path": {"path": {"prefix": "/api/"}}}),
    (authz.translate_path, "*.html", {"url_path": {"path": {"suffix": ".html"}}}),
    (authz.translate_path, "*", {"any": True}),
])
def test_translate_operation_values(function, value, expected):
    assert function(value) == expected


GET = {"header": {"name": ":method", "string_match": {"exact": "GET"}}}
REVIEWS_ID = {"authenticated": {"principal_name": {"exact": SPIFFE_REVIEWS}}}


@pytest.mark.parametrize("rule,expected", [
    ({}, {"permissions": [{"any": True}], "principals": [{"any": True}]}),
    ({"to": [{"operation": {"methods": ["GET"]}}]}, {"permissions": [{"or_rules": {"rules": [GET]}}], "principals": [{"any": True}]}),
    ({"from": [{"source": {"principals": ["cluster.local/ns/default/sa/shop-reviews"]}}],
      "to": [{"operation": {"methods": ["GET"], "notPaths": ["/admin*"]}}]},
     {"permissions": [{"and_rules": {"rules": [
         {"or_rules": {"rules": [GET]}},
         {"not_rule": {"or_rules": {"rules": [{"url_path": {"path": {"prefix": "/admin"}}}]}}}]}}],
      "principals": [{"or_ids": {"ids": [REVIEWS_ID]}}]}),
    ({"from": [{"source": {"notNamespaces": ["default"]}}, {"source": {"principals": ["*"]}}]},
     {"permissions": [{"any": True}], "principals": [
         {"not_id": {"or_ids": {"ids": [authz.translate_namespace("default")]}}},
         {"or_ids": {"ids": [authz.translate_principal("*")]}}]}),
])
def test_translate_rule(rule, expected):
    assert authz.translate_rule(rule) == expected


AP = "AuthorizationPolicy"
RATINGS = {"selector": {"matchLabels": {"app": "reviews"}}}


@pytest.mark.parametrize("policies,expected", [
    ([], []),
    ([istio(AP, "deny-nothing", {"action": "DENY"})], []),
    ([istio(AP, "allow-nothing", {})], [("ALLOW", [])]),
    ([istio(AP, "allow-all", {"rules": [{}]})], [("ALLOW", ["ns[default]-policy[allow-all]-rule[0]"])]),
    ([istio(AP, "a", {**RATINGS, "rules": [{}, {}]}), istio(AP, "d", {"action": "DENY", "rules": [{}]}, ns="mesh-system")],
     [("DENY", ["ns[mesh-system]-policy[d]-rule[0]"]),
      ("ALLOW", ["ns[default]-policy[a]-rule[0]", "ns[default]-policy[a]-rule[1]"])]),
    ([istio(AP, "other-workload", {"selector": {"matchLabels": {"app": "ratings"}}, "rules": [{}]})], []),
    ([istio(AP, "other-namespace", {"rules": [{}]}, ns="other")], []),
])
def test_rbac_filters_deny_then_allow(policies, expected):
    m = make(policies, [pod()])
    out = authz.rbac_filters(m, m.pods[0])
    assert all(f["name"] == "envoy.filters.http.rbac" and f["typed_config"]["@type"] == common.RBAC for f in out)
    assert [(f["typed_config"]["rules"]["action"], list(f["typed_config"]["rules"]["policies"])) for f in out] == expected


# ---- listeners ----

def test_outbound_listener():
    out = listeners.outbound_listener(SHOPLET.pods[0], "9080")
    assert out["name"] == "virtualOutbound" and out["address"] == {"socket_address": {"address": "127.20.1.11", "port_value": 15001}}
    hcm = out["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["rds"] == {"config_source": common.ADS, "route_config_name": "9080"}
    assert hcm["strip_any_host_port"] is True and hcm["http_protocol_options"] == {"allow_absolute_url": True}
    assert [f["name"] for f in hcm["http_filters"]] == ["envoy.filters.http.fault", "envoy.filters.http.router"]


@pytest.mark.parametrize("mode,chains", [("PERMISSIVE", ["tls", "raw_buffer"]), ("STRICT", ["tls"]), ("DISABLE", ["raw_buffer"])])
def test_inbound_listener_chains_by_mode(mode, chains):
    rbac = authz.rbac_filters(make([istio(AP, "x", {"rules": [{}]})], [pod()]), SHOPLET.pods[0])
    out = listeners.inbound_listener(SHOPLET.pods[0], 9080, mode, rbac)
    assert out["name"] == "virtualInbound" and out["address"]["socket_address"]["port_value"] == 15006
    assert out["listener_filters"][0]["name"] == "envoy.filters.listener.tls_inspector"
    assert [ch["filter_chain_match"]["transport_protocol"] for ch in out["filter_chains"]] == chains
    for chain in out["filter_chains"]:
        hcm = chain["filters"][0]["typed_config"]
        assert [f["name"] for f in hcm["http_filters"]] == ["envoy.filters.http.rbac", "envoy.filters.http.router"]
        route = hcm["route_config"]
        assert route["virtual_hosts"][0]["routes"][0]["route"]["cluster"] == "inbound|9080||"
        hop = route["request_headers_to_add"][0]["header"]["value"]
        tls = chain["filter_chain_match"]["transport_protocol"] == "tls"
        assert hop == ("kind=proxy;role=sidecar;name=%ENVIRONMENT(POD_NAME)%;node=%ENVIRONMENT(NODE_NAME)%;dir=in"
                       + (";peer=%DOWNSTREAM_PEER_URI_SAN%" if tls else ""))
        if tls:
            context = chain["transport_socket"]["typed_config"]
            assert context["require_client_certificate"] is True
            assert context["common_tls_context"]["combined_validation_context"]["validation_context_sds_secret_config"][
                "name"] == "ROOTCA"


@pytest.mark.parametrize("services,pod_ports,expected", [
    ([service("reviews", target="http")], {"http": 9080}, 9080),
    ([service("reviews", port=80, target=8080)], {}, 8080),
    ([], {"web": 8000}, 8000),
    ([], {}, None),
])
def test_app_port(services, pod_ports, expected):
    m = make(services, [pod(ports=pod_ports)])
    assert listeners.app_port(m, m.pods[0]) == expected
