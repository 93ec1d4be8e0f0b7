"""Stage 2: a central layer of Envoy routers; every east-west call goes through it."""

from __future__ import annotations

from . import edge, envoyconf, shop

NAME = "router"
PORT = 8080
REPLICAS = 2
RETRIES = 2
CONFIGMAP = "router-envoy"
LABELS = {"app": NAME, "meshlab.io/proxy-role": "router"}
PROXY_ENV = [{"name": "HTTP_PROXY", "value": f"http://{NAME}:{PORT}"}]


def config_map(retries: int = RETRIES, weights: dict | None = None, namespace: str | None = None) -> dict:
    """The router's Envoy config: a listener on :8080 routing by Host, one cluster per service version.

    `retries=0` leaves the retry policy out; `weights={"reviews": {"v1": 80, "v2": 20, "v3": 0}}`
    splits a service across its versions.
    """
    listener = envoyconf.http_listener("router", PORT, "router", envoyconf.service_hosts(retries, weights))
    return envoyconf.config_map(CONFIGMAP, "router", [listener], envoyconf.version_clusters(shop.APP_PORT),
                                "the router layer (stage 2)", namespace)


def deployment(namespace: str | None = None) -> dict:
    """Two Envoy routers (a layer, not one box), each reading the same ConfigMap."""
    container = envoyconf.envoy_container([{"containerPort": PORT, "name": "http"}], concurrency=2)
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": shop.meta(NAME, namespace, labels=dict(LABELS)),
            "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": NAME}},
                     "template": {"metadata": {"labels": dict(LABELS)},
                                  "spec": {"containers": [container], "volumes": [envoyconf.config_volume(CONFIGMAP)]}}}}


def service(namespace: str | None = None) -> dict:
    """The Service the apps use as their HTTP proxy: http://router:8080."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": shop.meta(NAME, namespace, labels={"app": NAME}),
            "spec": {"selector": {"app": NAME}, "ports": [{"name": "http", "port": PORT, "targetPort": "http"}]}}


def documents(retries: int = RETRIES, namespace: str | None = None) -> list[dict]:
    """The shop with HTTP_PROXY pointing at the router, per-version Services, the router, the edge."""
    return (shop.documents(namespace, extra_env=PROXY_ENV) + envoyconf.version_services(namespace=namespace)
            + [config_map(retries, namespace=namespace), deployment(namespace), service(namespace),
               edge.ingress(namespace=namespace)])
