"""Stage 6 on kind: a KindBackend as one member of a lab's two clusters (docs/multicluster.md).

A member is `KindBackend(lab, member="cluster-1")`: its kind cluster is `meshlab-<lab>-cluster-1` (context
`kind-meshlab-<lab>-cluster-1`), its nodes carry topology.kubernetes.io/region and zone, and it is owned as any
meshlab cluster is (marker file + node label), the marker also naming the lab and the member, so that
`KindBackend(lab).down()` (what `meshlab down --backend kind` runs) removes a lab's member clusters too.
kind puts every cluster on one Docker network (`kind`, or $KIND_EXPERIMENTAL_DOCKER_NETWORK), which is what
lets the clusters reach each other's API servers and east-west gateways at their node addresses.

A fleet of members (meshlab/kindfleet.py) brings stage 6 up as Istio's multi-primary, multi-network guide does:
    for m in members: m.up(nodes)                       # kind create cluster, the edge
    start the legacy service outside both (kindlegacy.py)
    for m in members: m.install_mesh()                  # cacerts, istiod, east-west gateway, Gateway
    fleet.link_members()                                # each istiod reads every other API server
install_mesh() of a member does steps 1-5 of istio_multicluster's list; link() is step 6, and needs Istio
installed on the peer (create-remote-secret uses the peer's istio-reader-service-account). When a lab's last member
cluster is deleted, what the lab had besides its clusters goes too: the CA folder, the legacy container and the
fleet's record (forget_ca), so that any way of deleting the clusters (`meshlab down`, `meshlab down --all`) leaves
nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml

from . import istio, kindlegacy
from . import istio_multicluster as im
from .base import MeshlabError
from .kubectl import check
from .state import state_root

NETWORK_ENV = "KIND_EXPERIMENTAL_DOCKER_NETWORK"  # kind's own switch for the Docker network of its nodes
GATEWAY_ROLLOUT = 300.0


def docker_network() -> str:
    """The Docker network kind puts its nodes on (`kind` unless the user told kind otherwise)."""
    return os.environ.get(NETWORK_ENV) or "kind"


def address_format(network: str) -> str:
    """`docker inspect --format` that prints a container's address on one network ("" when not attached)."""
    return '{{with index .NetworkSettings.Networks "%s"}}{{.IPAddress}}{{end}}' % network


def ca_folder(lab: str) -> Path:
    """Where a lab's shared root CA and per-cluster intermediates live (0700)."""
    return state_root() / "kind" / f"meshlab-{lab}-ca"


def fleet_record(lab: str) -> Path:
    """The kind fleet's own record of a stage-6 lab (the legacy service's address, the lab's facts); kept out of
    kind/'s top level, where every `meshlab-*.json` is a cluster's marker."""
    return state_root() / "kind" / "fleets" / f"{lab}.json"


def member_markers(lab: str) -> list[dict]:
    """Member clusters of `lab` that meshlab recorded: their marker files, which name the lab and the member."""
    found = []
    for path in sorted((state_root() / "kind").glob(f"meshlab-{lab}-*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if data.get("lab") == lab and data.get("member") and path.stem == f"meshlab-{lab}-{data['member']}":
            found.append(data)
    return found


class KindMulticluster:
    """Mixed into KindBackend: what a member cluster of stage 6 does beyond a single-cluster lab."""

    member: str = ""
    network: str = ""
    region: str = ""

    def node_address(self) -> str:
        """The control-plane container's address on the kind docker network (API server and gateway address)."""
        network = docker_network()
        container = f"{self.cluster_name}-control-plane"
        address = self.run(["docker", "inspect", "--format", address_format(network), container],
                           f"docker inspect {container}").strip()
        if not address:
            raise MeshlabError(f"{container} has no address on the Docker network {network}",
                               "run `meshlab doctor`; `docker network inspect kind` lists the nodes on it")
        return address

    def install_multicluster_mesh(self) -> None:
        """Install Istio as a primary of network-N with the lab's CA, then its east-west gateway and the Gateway that
        exposes every *.local service through it (istio_multicluster's steps 1-5)."""
        self.preload(istio.images())
        files = im.cacerts(ca_folder(self.lab), self.member)
        self.say(f"{self.member}: plugging in the lab's CA (one root for every cluster, intermediate {self.member})")
        self.kubectl.apply([im.istio_namespace(self.network), im.cacerts_secret(files)], namespace=None)
        found = istio.install(self.runner, self.kubectl.context, self.say, extra=im.install_flags(self.member, self.network))
        address = self.node_address()
        self.say(f"{self.member}: installing the east-west gateway at {address}:{im.GATEWAY_PORT}")
        operator = yaml.safe_dump(im.eastwest_operator(self.member, self.network, address), sort_keys=False)
        check(self.runner.run(["istioctl", "install", "-y", "--context", self.kubectl.context, "-f", "-"],
                              input=operator, timeout=istio.INSTALL_TIMEOUT), "istioctl install (east-west gateway)",
              f"kubectl --context {self.kubectl.context} -n {istio.ROOT_NAMESPACE} describe pods -l app={im.GATEWAY}")
        self.rollout([("deployment", im.GATEWAY, istio.ROOT_NAMESPACE)], timeout=GATEWAY_ROLLOUT)
        self.kubectl.apply([im.expose_services()], namespace=None)
        self.remember_istio(found)
        self.state.update(network=self.network, region=self.region)

    def eastwest_address(self) -> str:
        """`address:15443` where the other cluster reaches this one's east-west gateway (read from its Service)."""
        service = self.kubectl.run("get", "service", im.GATEWAY, "-o", "json", namespace=istio.ROOT_NAMESPACE,
                                   what=f"kubectl get service {im.GATEWAY}", hint="install the mesh first")
        return im.gateway_address(json.loads(service))

    def link(self, peer) -> None:
        """Let this cluster's istiod read `peer`'s API server: `istioctl create-remote-secret` of the peer, with the
        peer's docker-network address as the server (see istio_multicluster.server_url), applied here."""
        server = im.server_url(peer.node_address())
        text = self.run(im.remote_secret_argv(peer.kubectl.context, peer.member, server),
                        f"istioctl create-remote-secret --name {peer.member}", timeout=120)
        im.check_remote_secret(text, peer.member, server)
        self.say(f"{self.member}: reading {peer.member}'s endpoints through its API server at {server}")
        self.kubectl.run("apply", "-f", "-", namespace=None, input=text, what=f"apply the remote secret of {peer.member}")

    def down_members(self) -> None:
        """(A lab's own backend) delete the lab's member clusters that meshlab made."""
        for known in member_markers(self.lab):
            type(self)(self.lab, runner=self.runner, progress=self.progress, member=known["member"],
                       network=known.get("network", ""), region=known.get("region", "")).down()
        if not member_markers(self.lab):
            shutil.rmtree(ca_folder(self.lab), ignore_errors=True)

    def forget_ca(self) -> None:
        """(A member, once deleted) remove its intermediate; once no member of the lab is left, the root too, the
        lab's legacy container and the fleet's record."""
        shutil.rmtree(ca_folder(self.lab) / self.member, ignore_errors=True)
        if not member_markers(self.lab):
            shutil.rmtree(ca_folder(self.lab), ignore_errors=True)
            kindlegacy.remove(self.runner, self.lab)
            fleet_record(self.lab).unlink(missing_ok=True)
