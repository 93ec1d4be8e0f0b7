"""Stage 4: an Envoy sidecar in every app pod, each with its own static, hot-reloadable config."""

from __future__ import annotations

from . import edge, envoyconf, shop

INBOUND_PORT = 15006
OUTBOUND_PORT = 15001
RETRIES = 0  # a bare static fabric: add retries per sidecar, by hand
# Explicit proxying: the app sends its calls to its own sidecar (Istio intercepts them with iptables instead).
# MESHLAB_CAPTURED: the app resolves the callee's name first, as before iptables captures its connection.
PROXY_ENV = [{"name": "HTTP_PROXY", "value": f"http://127.0.0.1:{OUTBOUND_PORT}"},
             {"name": "MESHLAB_CAPTURED", "value": "1"}]


def configmap_name(service: str, version: str) -> str:
    """One ConfigMap per service version: `sidecar-reviews-v2`."""
    return f"sidecar-{service}-{version}"


def config_map(service: str, version: str, weights: dict | None = None, retries: int = RETRIES,
               namespace: str | None = None) -> dict:
    """The sidecar config of one service version.

    Inbound :15006 -> the app at 127.0.0.1:9080; outbound :15001 -> the callee's pods (their sidecars'
    inbound port). `weights={"reviews": {"v1": 80, "v2": 20, "v3": 0}}` splits a service by version.
    """
    inbound = envoyconf.http_listener("inbound", INBOUND_PORT, "sidecar", [
        {"name": "app", "domains": ["*"], "routes": [{"match": {"prefix": "/"},
                                                      "route": {"cluster": "app", "timeout": "10s"}}]}], dir="in")
    outbound = envoyconf.http_listener("outbound", OUTBOUND_PORT, "sidecar",
                                       envoyconf.service_hosts(retries, weights), dir="out")
    clusters = [envoyconf.static_cluster("app", "127.0.0.1", shop.APP_PORT)] + envoyconf.version_clusters(INBOUND_PORT)
    return envoyconf.config_map(configmap_name(service, version), f"sidecar~{service}-{version}", [inbound, outbound],
                                clusters, f"the sidecars of {service} {version} (stage 4)", namespace)


def containers(service: str, version: str) -> tuple[list[dict], list[dict]]:
    """(the sidecar container, its config volume) for one service version's pods."""
    ports = [{"containerPort": INBOUND_PORT, "name": "inbound"}, {"containerPort": OUTBOUND_PORT, "name": "outbound"}]
    return [envoyconf.envoy_container(ports)], [envoyconf.config_volume(configmap_name(service, version))]


def _through_sidecar(doc: dict) -> dict:
    """A shop Service whose targetPort is the sidecar's inbound port, so inbound calls pass through it."""
    if doc["kind"] == "Service":
        for port in doc["spec"]["ports"]:
            port["targetPort"] = INBOUND_PORT
    return doc


def documents(weights: dict | None = None, namespace: str | None = None) -> list[dict]:
    """Sidecar ConfigMaps, the shop with a sidecar per pod, per-version Services, the edge."""
    configs = [config_map(s, v, weights, namespace=namespace) for s, vs in envoyconf.versions().items() for v in vs]
    shop_docs = [_through_sidecar(d) for d in shop.documents(namespace, extra_env=PROXY_ENV, sidecar=containers)]
    return (configs + shop_docs + envoyconf.version_services(INBOUND_PORT, INBOUND_PORT, namespace)
            + [edge.ingress(namespace=namespace)])
