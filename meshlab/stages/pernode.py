"""Stage 3: one Envoy per node (a DaemonSet), as Linkerd 1 was deployed: a call leaves through the caller's
node proxy (outgoing) and enters through the callee's node proxy (incoming), so a node's proxy carries every
call from *and* to the pods on its node.

Linkerd 1 asked the Kubernetes API which node each pod runs on. These proxies have only their static
config, so they find out by health checks (one a second):

- incoming, port 15002: a virtual host per service version (`reviews-v2`) to cluster `local-reviews-v2`,
  the version's pods (headless Service) checked with this proxy's node name in `x-meshlab-node`; an app
  answers that check only when it runs on the same node, so only the node's own pods stay in the cluster.
- outgoing, port 15001 (hostPort, the apps' HTTP_PROXY): a virtual host per service, routed to cluster
  `reviews-v2`, the node proxies (headless Service `node-proxy`, port 15002) checked with Host `reviews-v2`:
  only node proxies with a ready reviews-v2 pod on their node pass. The Host is rewritten to the version's
  name on the way, so the incoming proxy knows which pods to reach.
"""

from __future__ import annotations

from . import edge, envoyconf, shop

NAME = "node-proxy"
PORT = 15001  # outgoing: the apps' HTTP_PROXY, a hostPort on the node's IP
INCOMING_PORT = 15002  # incoming: other node proxies call it on the proxy's pod IP
RETRIES = 2
CONFIGMAP = "node-proxy-envoy"
NODE_HEADER = "x-meshlab-node"  # the app answers a health check carrying it only on that node
LABELS = {"app": NAME, "meshlab.io/proxy-role": "node"}
# The downward API gives each pod its node's IP; the node proxy listens there on a hostPort.
PROXY_ENV = [shop.field_env("HOST_IP", "status.hostIP"),
             {"name": "HTTP_PROXY", "value": f"http://$(HOST_IP):{PORT}"}]


def version_names() -> list[str]:
    """`reviews-v2` and the like: one per service version of the shop."""
    return [f"{s}-{v}" for s, vs in envoyconf.versions().items() for v in vs]


def incoming_hosts() -> list[dict]:
    """One virtual host per service version, to that version's pods on this node."""
    return [{"name": name, "domains": [name], "routes": [{"match": {"prefix": "/"}, "route": {
        "cluster": f"local-{name}", "timeout": envoyconf.ROUTE_TIMEOUT}}]} for name in version_names()] \
        + [envoyconf.unknown_host()]


def clusters() -> list[dict]:
    """Per version: the node proxies that can reach it (outgoing) and its pods on this node (incoming)."""
    out = [envoyconf.health_checked(envoyconf.dns_cluster(name, NAME, INCOMING_PORT), host=name)
           for name in version_names()]
    local = [envoyconf.health_checked(envoyconf.dns_cluster(f"local-{name}", name, shop.APP_PORT),
                                      headers={NODE_HEADER: "%ENVIRONMENT(NODE_NAME)%"})
             for name in version_names()]
    return out + local


def config_map(retries: int = RETRIES, weights: dict | None = None, namespace: str | None = None) -> dict:
    """The node proxies' Envoy config (one copy, used on every node): outgoing and incoming listeners."""
    outgoing = envoyconf.http_listener("outgoing", PORT, "node", envoyconf.service_hosts(retries, weights, name_version=True),
                                       dir="out")
    incoming = envoyconf.http_listener("incoming", INCOMING_PORT, "node", incoming_hosts(), dir="in")
    return envoyconf.config_map(CONFIGMAP, "node-proxy", [outgoing, incoming], clusters(),
                                "the node proxies (stage 3)", namespace)


def daemonset(namespace: str | None = None) -> dict:
    """An Envoy on every node: outgoing on the node's IP at hostPort 15001, incoming on its pod IP at 15002."""
    container = envoyconf.envoy_container([{"containerPort": PORT, "hostPort": PORT, "name": "outgoing"},
                                           {"containerPort": INCOMING_PORT, "name": "incoming"}])
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": shop.meta(NAME, namespace, labels=dict(LABELS)),
            "spec": {"selector": {"matchLabels": {"app": NAME}},
                     "template": {"metadata": {"labels": dict(LABELS)},
                                  "spec": {"containers": [container], "volumes": [envoyconf.config_volume(CONFIGMAP)]}}}}


def service(namespace: str | None = None) -> dict:
    """A headless Service of the node proxies' incoming port: DNS gives every ready node proxy's pod IP."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": shop.meta(NAME, namespace, labels={"app": NAME}),
            "spec": {"clusterIP": "None", "selector": {"app": NAME},
                     "ports": [{"name": "incoming", "port": INCOMING_PORT, "targetPort": INCOMING_PORT}]}}


def documents(retries: int = RETRIES, namespace: str | None = None) -> list[dict]:
    """The shop with HTTP_PROXY at its node's proxy, per-version Services, the DaemonSet and its Service, the edge."""
    return (shop.documents(namespace, extra_env=PROXY_ENV) + envoyconf.version_services(namespace=namespace)
            + [config_map(retries, namespace=namespace), daemonset(namespace), service(namespace),
               edge.ingress(namespace=namespace)])
