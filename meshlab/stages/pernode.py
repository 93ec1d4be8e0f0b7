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

Shared nodes (the kube backend, a class on one cluster): a hostPort is refused by Pod Security "baseline"
and lets only one learner per node bind 15001. There the apps reach their node's proxy through the
Service `node-proxy-local` with `internalTrafficPolicy: Local` (kube-proxy sends a pod's call only to the
proxy on the pod's own node) instead of hostPort + status.hostIP: `documents(shared_nodes=True)`, or
`for_shared_nodes(docs)` for objects written the hostPort way. kind and local keep the hostPort; the
local backend does not run `internalTrafficPolicy` and refuses it by name.
"""

from __future__ import annotations

import copy

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
LOCAL_SERVICE = "node-proxy-local"  # shared nodes: the node's own proxy through a Service, not a hostPort
SHARED_PROXY_ENV = [{"name": "HTTP_PROXY", "value": f"http://{LOCAL_SERVICE}:{PORT}"}]


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


def daemonset(namespace: str | None = None, shared_nodes: bool = False) -> dict:
    """An Envoy on every node: outgoing on the node's IP at hostPort 15001 (shared nodes: on its pod IP only,
    behind Service node-proxy-local), incoming on its pod IP at 15002."""
    outgoing = {"containerPort": PORT, **({} if shared_nodes else {"hostPort": PORT}), "name": "outgoing"}
    container = envoyconf.envoy_container([outgoing, {"containerPort": INCOMING_PORT, "name": "incoming"}])
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


def local_service(namespace: str | None = None) -> dict:
    """Shared nodes: the node proxies' outgoing port as a Service that keeps each call on the caller's node
    (`internalTrafficPolicy: Local`; with no ready proxy on that node the call fails, as with a dead hostPort)."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": shop.meta(LOCAL_SERVICE, namespace, labels={"app": NAME}),
            "spec": {"selector": {"app": NAME}, "internalTrafficPolicy": "Local",
                     "ports": [{"name": "outgoing", "port": PORT, "targetPort": "outgoing"}]}}


def documents(retries: int = RETRIES, namespace: str | None = None, shared_nodes: bool = False) -> list[dict]:
    """The shop with HTTP_PROXY at its node's proxy, per-version Services, the DaemonSet and its Service(s), the edge;
    `shared_nodes` for a cluster shared by a class (no hostPort, see the module docstring)."""
    env = SHARED_PROXY_ENV if shared_nodes else PROXY_ENV
    return (shop.documents(namespace, extra_env=env) + envoyconf.version_services(namespace=namespace)
            + [config_map(retries, namespace=namespace), daemonset(namespace, shared_nodes),
               *([local_service(namespace)] if shared_nodes else []), service(namespace),
               edge.ingress(namespace=namespace)])


def _shared_env(env: list[dict]) -> list[dict]:
    """A container's env with HTTP_PROXY at node-proxy-local instead of $(HOST_IP):15001 (HOST_IP dropped)."""
    if not any(e.get("name") == "HTTP_PROXY" and e.get("value") == PROXY_ENV[1]["value"] for e in env):
        return env
    out = [e for e in env if e != PROXY_ENV[0]]
    return [SHARED_PROXY_ENV[0] if e.get("name") == "HTTP_PROXY" else e for e in out]


def for_shared_nodes(docs: list[dict]) -> list[dict]:
    """The same objects for shared nodes: the node proxies without hostPort plus Service node-proxy-local right
    after their DaemonSet, and every pod's HTTP_PROXY at that Service; other objects are returned unchanged."""
    def named(doc: dict, kind: str, name: str) -> bool:
        return doc.get("kind") == kind and (doc.get("metadata") or {}).get("name") == name

    out, has_local = [], any(named(d, "Service", LOCAL_SERVICE) for d in docs)
    for doc in copy.deepcopy(docs):
        spec = doc.get("spec") or {}
        pod = spec if doc.get("kind") == "Pod" else (spec.get("template") or {}).get("spec") or {}
        for container in pod.get("containers") or []:
            if container.get("env"):
                container["env"] = _shared_env(container["env"])
        node_proxy = named(doc, "DaemonSet", NAME)
        if node_proxy:
            for container in pod["containers"]:
                for port in container.get("ports") or []:
                    if port.get("containerPort") == PORT:
                        port.pop("hostPort", None)
        out.append(doc)
        if node_proxy and not has_local:
            out.append(local_service(doc["metadata"].get("namespace")))
    return out
