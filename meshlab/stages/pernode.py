"""Stage 3: one Envoy per node (a DaemonSet); each app calls through its own node's proxy."""

from __future__ import annotations

from . import edge, envoyconf, shop

NAME = "node-proxy"
PORT = 15001
RETRIES = 2
CONFIGMAP = "node-proxy-envoy"
LABELS = {"app": NAME, "meshlab.io/proxy-role": "node"}
# The downward API gives each pod its node's IP; the node proxy listens there on a hostPort.
PROXY_ENV = [shop.field_env("HOST_IP", "status.hostIP"),
             {"name": "HTTP_PROXY", "value": f"http://$(HOST_IP):{PORT}"}]


def config_map(retries: int = RETRIES, weights: dict | None = None, namespace: str | None = None) -> dict:
    """The node proxies' Envoy config (one copy, used on every node): route by Host to the callee's pods."""
    listener = envoyconf.http_listener("node-proxy", PORT, "node", envoyconf.service_hosts(retries, weights))
    return envoyconf.config_map(CONFIGMAP, "node-proxy", [listener], envoyconf.version_clusters(shop.APP_PORT),
                                "the node proxies (stage 3)", namespace)


def daemonset(namespace: str | None = None) -> dict:
    """An Envoy on every node, reachable on the node's IP at hostPort 15001."""
    container = envoyconf.envoy_container([{"containerPort": PORT, "hostPort": PORT, "name": "proxy"}])
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": shop.meta(NAME, namespace, labels=dict(LABELS)),
            "spec": {"selector": {"matchLabels": {"app": NAME}},
                     "template": {"metadata": {"labels": dict(LABELS)},
                                  "spec": {"containers": [container], "volumes": [envoyconf.config_volume(CONFIGMAP)]}}}}


def documents(retries: int = RETRIES, namespace: str | None = None) -> list[dict]:
    """The shop with HTTP_PROXY at its node's proxy, per-version Services, the DaemonSet, the edge."""
    return (shop.documents(namespace, extra_env=PROXY_ENV) + envoyconf.version_services(namespace=namespace)
            + [config_map(retries, namespace=namespace), daemonset(namespace), edge.ingress(namespace=namespace)])
