"""Stage 6 on kind, the pure part: Istio multi-primary on different networks (docs/multicluster.md).

Everything here follows Istio's "Install Multi-Primary on different networks" and "Plug in CA Certificates"
guides, with meshlab's names: clusters `cluster-N` on networks `network-N` in regions `region-N`, one mesh
`meshlab`. Nothing here runs a command; multikind.py does, in this order per cluster:

1. cacerts(): one root CA for the lab, an intermediate per cluster (meshlab's own CertificateAuthority, so the
   local runtime and kind make the same shape), written as Istio's four files (0600) and loaded as the Secret
   `cacerts` in istio-system *before* istiod starts (istiod only reads it at start-up).
2. istio_namespace(): istio-system labelled topology.istio.io/network=network-N (the cluster's default network).
3. `istioctl install` with the stage-5 flags plus install_flags(): meshID, clusterName, network, and DNS capture
   (meshConfig.defaultConfig.proxyMetadata.ISTIO_META_DNS_CAPTURE): the legacy host `payments.legacy.example` exists
   only as a ServiceEntry, which kube-dns does not know, so the frontend's own lookup would fail before its sidecar
   saw the call. With DNS capture the sidecar's agent answers for ServiceEntry hosts, with the address istiod
   allocates to a ServiceEntry that has none (PILOT_ENABLE_IP_AUTOALLOCATE, on by default since Istio 1.25), and the
   sidecar routes that address to the entry's endpoint. Locally, the lab's DNS answers for it instead.
4. eastwest_operator(): the gateway IstioOperator, written after the shape that Istio's
   samples/multicluster/gen-eastwest-gateway.sh prints (profile empty, one ingress gateway labelled
   istio=eastwestgateway and topology.istio.io/network, env ISTIO_META_ROUTER_MODE=sni-dnat and
   ISTIO_META_REQUESTED_NETWORK_VIEW, ports 15021/15443/15012/15017), installed into mesh-system as the contract says.
5. expose_services(): Istio's samples/multicluster/expose-services.yaml Gateway (AUTO_PASSTHROUGH on 15443, *.local).
6. remote secrets, both ways (remote_secret_argv() + check_remote_secret()).

How the other cluster reaches the gateway (the choice): the gateway Service is a NodePort with
`externalIPs: [<this cluster's control-plane node address on the kind docker network>]`. Both clusters' node
containers sit on one Docker bridge (`kind`), so every node, and every pod through its node's masquerade,
reaches every other cluster's node addresses; kube-proxy on the node that owns the address sends
<address>:15443 to the gateway pod. Why not plain NodePort: istiod learns a NodePort gateway's address only
from nodes' ExternalIP addresses (traffic.istio.io/nodeSelector), and kind nodes have only an InternalIP;
externalIPs, by contrast, are read by istiod as the Service's external address for the network gateway (port
15443). Why not cloud-provider-kind or MetalLB: the first is one more long-running host process with the Docker
socket (it would outlive a crashed kernel), the second one more controller with images and an address pool
carved out of the docker network; node addresses need neither. `meshlab doctor` checks what this needs
(the docker network, inotify limits for two clusters, Docker's memory).
"""

from __future__ import annotations

import base64
import fcntl
import os
import re
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from ..controlplane.ca import CertificateAuthority
from .base import MeshlabError
from .istio import ISTIO_NAMESPACE, MANAGED, ROOT_NAMESPACE

MESH_ID = "meshlab"
NETWORK_LABEL = "topology.istio.io/network"
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
GATEWAY = "istio-eastwestgateway"
GATEWAY_PORT = 15443
API_PORT = 6443  # kube-apiserver's port inside the control-plane container (kind maps it to 127.0.0.1:<random>)
CACERTS = ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")  # Istio's names, in its guide's order
MEMBER = re.compile(r"^cluster-(\d+)$")


def topology(member: str) -> tuple[str, str]:
    """(network, region) of a member cluster called `cluster-N`: (`network-N`, `region-N`)."""
    found = MEMBER.match(member)
    if not found:
        raise MeshlabError(f"cannot tell the network and region of cluster {member!r}",
                           "name clusters cluster-1, cluster-2, ... or pass network= and region=")
    return f"network-{found[1]}", f"region-{found[1]}"


def zones(region: str, count: int) -> list[str]:
    """`count` zones of a region: region-1 -> zone-1a, zone-1b, ..."""
    base = region.replace("region", "zone", 1) if region.startswith("region") else f"{region}-zone"
    return [f"{base}{chr(ord('a') + i % 26)}" for i in range(count)]


def node_labels(region: str, zone: str) -> dict:
    """The well-known topology labels Istio reads a pod's locality from (the kubelet may set both on itself)."""
    return {REGION_LABEL: region, ZONE_LABEL: zone}


def install_flags(cluster: str, network: str) -> list[str]:
    """The multi-cluster values of Istio's guide, plus DNS capture for ServiceEntry hosts (see the module docstring),
    as `istioctl install --set` flags."""
    return ["--set", f"values.global.meshID={MESH_ID}", "--set", f"values.global.multiCluster.clusterName={cluster}",
            "--set", f"values.global.network={network}",
            "--set", "meshConfig.defaultConfig.proxyMetadata.ISTIO_META_DNS_CAPTURE=true"]


def istio_namespace(network: str) -> dict:
    """istio-system with the cluster's default network label (created before istioctl so cacerts can go in)."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ISTIO_NAMESPACE, "labels": {**MANAGED, NETWORK_LABEL: network}}}


def eastwest_operator(cluster: str, network: str, address: str) -> dict:
    """The east-west gateway's IstioOperator (gen-eastwest-gateway.sh's shape), reachable at address:15443."""
    ports = [{"name": "status-port", "port": 15021, "targetPort": 15021},
             {"name": "mtls", "port": GATEWAY_PORT, "targetPort": GATEWAY_PORT},  # the script's current names
             {"name": "tcp-istiod", "port": 15012, "targetPort": 15012},
             {"name": "tcp-webhook", "port": 15017, "targetPort": 15017}]
    gateway = {"name": GATEWAY, "namespace": ROOT_NAMESPACE, "enabled": True,
               "label": {"istio": "eastwestgateway", "app": GATEWAY, NETWORK_LABEL: network,
                         "meshlab.io/proxy-role": "gateway"},
               "k8s": {"env": [{"name": "ISTIO_META_ROUTER_MODE", "value": "sni-dnat"},
                               {"name": "ISTIO_META_REQUESTED_NETWORK_VIEW", "value": network}],
                       "service": {"type": "NodePort", "externalIPs": [address], "ports": ports}}}
    return {"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator", "metadata": {"name": "eastwest"},
            "spec": {"profile": "empty", "components": {"ingressGateways": [gateway]},
                     "values": {"global": {"meshID": MESH_ID, "network": network,
                                           "multiCluster": {"clusterName": cluster}}}}}


def expose_services() -> dict:
    """Istio's cross-network Gateway: SNI auto-passthrough on 15443 for every *.local service."""
    server = {"port": {"number": GATEWAY_PORT, "name": "tls", "protocol": "TLS"},
              "tls": {"mode": "AUTO_PASSTHROUGH"}, "hosts": ["*.local"]}
    return {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": "cross-network-gateway", "namespace": ROOT_NAMESPACE, "labels": dict(MANAGED)},
            "spec": {"selector": {"istio": "eastwestgateway"}, "servers": [server]}}


# ---- the shared root and an intermediate per cluster ------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    """Write a file created 0600 from the start (it may hold a private key)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def cacerts(ca_root: Path, cluster: str) -> dict[str, Path]:
    """Istio's plug-in CA files for one cluster under ca_root/<cluster>/: its intermediate (cert + key), the lab's
    root (made once, under ca_root/root, by whichever cluster comes first: a file lock keeps two from racing), and
    the chain intermediate + root. Every file is 0600."""
    ca_root = Path(ca_root)
    ca_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(ca_root / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ca = CertificateAuthority(ca_root / cluster, cluster=cluster, root_folder=ca_root / "root")
    key = ca.intermediate.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
    contents = {"ca-cert.pem": ca.intermediate.cert_pem.encode(), "ca-key.pem": key,
                "root-cert.pem": ca.root.cert_pem.encode(),
                "cert-chain.pem": (ca.intermediate.cert_pem + ca.root.cert_pem).encode()}
    files = {}
    for name in CACERTS:
        files[name] = ca_root / cluster / name
        _write_private(files[name], contents[name])
    return files


def cacerts_secret(files: dict[str, Path]) -> dict:
    """The Secret `cacerts` in istio-system, as `kubectl create secret generic cacerts --from-file=...` makes it."""
    data = {name: base64.b64encode(Path(files[name]).read_bytes()).decode() for name in CACERTS}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data,
            "metadata": {"name": "cacerts", "namespace": ISTIO_NAMESPACE, "labels": dict(MANAGED)}}


# ---- remote secrets and the gateway's address --------------------------------------------------------


def server_url(address: str) -> str:
    """The API server as the *other* cluster's istiod must dial it: the control-plane container's address on the
    kind docker network. kind's own kubeconfig says https://127.0.0.1:<port>, which inside a pod of another
    cluster is that pod itself; kubeadm puts the node's address in the API server's certificate, so TLS verifies."""
    return f"https://{address}:{API_PORT}"


def remote_secret_argv(context: str, name: str, server: str) -> list[str]:
    """`istioctl create-remote-secret` for the cluster of `context`, named `name`, reached at `server`."""
    return ["istioctl", "create-remote-secret", "--context", context, "--name", name, "--server", server]


def check_remote_secret(text: str, name: str, server: str) -> None:
    """Refuse istioctl's output unless it is the remote Secret for `name` whose kubeconfig dials `server`."""
    import yaml

    docs = [d for d in yaml.safe_load_all(text or "") if isinstance(d, dict)]
    secret = next((d for d in docs if d.get("kind") == "Secret"
                   and ((d.get("metadata") or {}).get("labels") or {}).get("istio/multiCluster") == "true"), None)
    kubeconfig = yaml.safe_load(((secret or {}).get("stringData") or {}).get(name) or "{}") or {}
    servers = [(c.get("cluster") or {}).get("server") for c in kubeconfig.get("clusters") or []]
    if servers != [server]:
        raise MeshlabError(f"istioctl create-remote-secret for {name} did not give a kubeconfig for {server} "
                           f"(found {servers or 'no remote secret'})", "run `istioctl create-remote-secret` by hand to see why")


def gateway_address(service: dict) -> str:
    """`address:15443` of an east-west gateway Service (its first external IP)."""
    addresses = (service.get("spec") or {}).get("externalIPs") or []
    ports = [p["port"] for p in (service.get("spec") or {}).get("ports") or [] if p.get("port") == GATEWAY_PORT]
    if not addresses or not ports:
        raise MeshlabError(f"the {GATEWAY} Service has no external address on port {GATEWAY_PORT}",
                           "install the mesh first: lab.up(stage='multicluster')")
    return f"{addresses[0]}:{ports[0]}"
