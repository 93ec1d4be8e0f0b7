"""The control plane as Kubernetes objects (what `install_mesh()` applies on the local backend), and in a
multi-cluster lab the east-west gateway and the remote secrets that name each peer."""

from __future__ import annotations

import json

NAMESPACE = "mesh-system"
NAME = "meshlab-controlplane"
IMAGE = "python:3.12-slim"
XDS_PORT, STATUS_PORT = 15010, 15014
LABELS = {"app": NAME}
GATEWAY_NAME = "istio-eastwestgateway"
GATEWAY_LABELS = {"app": GATEWAY_NAME, "istio": "eastwestgateway", "meshlab.io/proxy-role": "gateway"}
GATEWAY_PORT, GATEWAY_ADMIN_PORT = 15443, 15000
GATEWAY_NODE_ID = "router~$(POD_IP)~$(POD_NAME).$(POD_NAMESPACE)~$(POD_NAMESPACE).svc.cluster.local"
NETWORK_LABEL = "topology.istio.io/network"
REMOTE_SECRET_LABEL = "istio/multiCluster"
NO_INJECTION = {"sidecar.istio.io/inject": "false"}


def _field_env(name: str, path: str) -> dict:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def container(cluster: str = "", network: str = "", root_ca: str = "") -> dict:
    """The `discovery` container: meshlab's xDS server, as istiod's is named; CLUSTER_ID and NETWORK as istiod's env."""
    args = ["--xds-port", str(XDS_PORT), "--status-port", str(STATUS_PORT)]
    env = [_field_env("POD_IP", "status.podIP"), _field_env("POD_NAME", "metadata.name"),
           _field_env("POD_NAMESPACE", "metadata.namespace")]
    if cluster:
        env += [{"name": "CLUSTER_ID", "value": cluster}, {"name": "NETWORK", "value": network}]
        args += ["--cluster", "$(CLUSTER_ID)", "--network", "$(NETWORK)"]
    if root_ca:
        args += ["--root-ca", root_ca]
    return {"name": "discovery", "image": IMAGE, "command": ["python", "-m", "meshlab.controlplane"],
            "args": args, "env": env,
            "ports": [{"containerPort": XDS_PORT, "name": "grpc-xds"},
                      {"containerPort": STATUS_PORT, "name": "http-monitoring"}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": STATUS_PORT}, "periodSeconds": 1}}


def namespace(network: str = "") -> dict:
    """mesh-system, labelled with its network in a multi-network mesh (as Istio's istio-system)."""
    meta = {"name": NAMESPACE, **({"labels": {NETWORK_LABEL: network}} if network else {})}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def documents(cluster: str = "", network: str = "", root_ca: str = "") -> list[dict]:
    """Namespace, ServiceAccount, Deployment and Service of the control plane (of `cluster` in a multi-cluster lab,
    signing with an intermediate under the shared root in `root_ca`)."""
    meta = {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)}
    template = {"metadata": {"labels": dict(LABELS), "annotations": dict(NO_INJECTION)},
                "spec": {"serviceAccountName": NAME, "containers": [container(cluster, network, root_ca)]}}
    return [
        namespace(network),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta)},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": dict(meta),
         "spec": {"replicas": 1, "selector": {"matchLabels": dict(LABELS)}, "template": template}},
        {"apiVersion": "v1", "kind": "Service", "metadata": dict(meta),
         "spec": {"selector": dict(LABELS), "ports": [
             {"name": "grpc-xds", "port": XDS_PORT, "targetPort": XDS_PORT},
             {"name": "http-monitoring", "port": STATUS_PORT, "targetPort": STATUS_PORT}]}},
    ]


def gateway_container() -> dict:
    """The east-west gateway's Envoy: a `router` node configured over ADS by its own cluster's control plane."""
    from ..backends.local import inject
    from ..stages.envoyconf import ENVOY_IMAGE

    bootstrap = inject.bootstrap(GATEWAY_NAME, node_id=GATEWAY_NODE_ID)
    return {"name": "istio-proxy", "image": ENVOY_IMAGE,
            "args": ["--config-yaml", json.dumps(bootstrap, separators=(",", ":")), "--concurrency", "1",
                     "-l", "warning"],
            "env": [_field_env("POD_NAME", "metadata.name"), _field_env("POD_NAMESPACE", "metadata.namespace"),
                    _field_env("POD_IP", "status.podIP"), _field_env("NODE_NAME", "spec.nodeName")],
            "ports": [{"containerPort": GATEWAY_PORT, "hostPort": GATEWAY_PORT, "name": "tls"},
                      {"containerPort": GATEWAY_ADMIN_PORT, "name": "proxy-admin"}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": GATEWAY_ADMIN_PORT}, "periodSeconds": 1}}


def gateway_documents() -> list[dict]:
    """Deployment + Service `istio-eastwestgateway`: port 15443 (tls, SNI auto-passthrough), hostPort on its node."""
    meta = {"name": GATEWAY_NAME, "namespace": NAMESPACE, "labels": dict(GATEWAY_LABELS)}
    selector = {"istio": "eastwestgateway"}
    template = {"metadata": {"labels": dict(GATEWAY_LABELS), "annotations": dict(NO_INJECTION)},
                "spec": {"containers": [gateway_container()]}}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": dict(meta),
         "spec": {"replicas": 1, "selector": {"matchLabels": selector}, "template": template}},
        {"apiVersion": "v1", "kind": "Service", "metadata": dict(meta),
         "spec": {"selector": selector, "ports": [{"name": "tls", "port": GATEWAY_PORT, "targetPort": GATEWAY_PORT}]}},
    ]


def remote_secret(peer: str, network: str, api: str) -> dict:
    """What `istioctl create-remote-secret` gives, locally: a ConfigMap naming a peer cluster and its watch address."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"istio-remote-secret-{peer}", "namespace": NAMESPACE,
                         "labels": {REMOTE_SECRET_LABEL: "true"}},
            "data": {"cluster": peer, "network": network, "api": api}}
