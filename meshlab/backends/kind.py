"""The kind backend: one kind cluster per lab (`meshlab-<lab>`), meshlab's Envoy edge, kubectl for the rest.

Ownership: kind has no cluster labels, so meshlab records what it made twice: every node carries the
Kubernetes label meshlab.io/owned=true (kind's `labels` node field, which kind turns into the kubelet's
--node-labels for every kubeadm API version), and a marker file `<state>/kind/meshlab-<lab>.json`
holds the control-plane container's id. A cluster is meshlab's when that recorded id matches, or, with no id
recorded (not yet, or no marker at all: a crashed run, a test session's own MESHLAB_HOME, a wiped state folder),
when its nodes carry the label. up() creates such an unrecorded cluster again; down() and `meshlab down --all`
(kindclean.py) delete it. A cluster without the label, or whose recorded id differs, is never touched. up() also
writes its state folder into the cluster (ConfigMap kube-system/meshlab-owner), so that `down --all` run with
another MESHLAB_HOME (a test session's) leaves alone a cluster that a living meshlab still records.

Shape: one control-plane node (the API server and the edge; kind taints it, so it runs no app pods) plus
nodes-1 workers. `Lab.up` asks for `stages.nodes_for(stage, "kind")`: one worker, three in stage 3 (a node
proxy each). up() reuses a cluster meshlab made when it has at least that many nodes (spare workers do no
harm): a lab that goes from stage 3 back to a smaller stage keeps its four nodes, with no new cluster. A smaller
one is deleted and created again in the new shape, since Lab.up deploys the whole stage anyway (objects applied
by hand are lost, and the progress message says so). A cluster belongs to one lab name, and each lesson has its
own lab that it takes down at its end, so lessons do not share clusters: what they share is this machine's
Docker, which keeps the node image and every stage image after the first download (see Images).

Images: apply() first brings the images of the objects' pods onto every node that runs pods, and up() the edge's
(python and Envoy) onto the edge node, with progress, so the first download of python and Envoy (minutes on a slow
link) does not count against a rollout timeout (Lab.up waits 90 s). Each image is pulled once by this machine's Docker and
`kind load`ed into the nodes that lack it (kindimages.py), so a new cluster needs no download at all; when
the host cannot pull or load it, each node pulls it itself (`crictl pull`), as the progress message says.

Ports: the control-plane node's containerPort 80 is published on 127.0.0.1:<free port> (extraPortMappings,
listenAddress 127.0.0.1); the edge Envoy (backends/edge.py) binds hostPort 80 on that node, so the entrypoint is
http://127.0.0.1:<port>. Before the lab has an Ingress of class `edge` (stage 0) the entrypoint is the frontend
Service through a `kubectl port-forward` that the backend starts, records in the marker file and stops in down().

Faults on kind:
- kill(pod=...) force-deletes the pod; its ReplicaSet replaces it at once (see ClusterBackend.kill_pod).
- kill(node=...) cordons the node, `docker stop`s its container, then force-deletes the lab's pods that ran
  there, so that calls to them fail at once as locally: a stopped node's pods otherwise stay in their Services'
  Endpoints until the node controller marks it NotReady (40-50 s), and calls to them time out meanwhile. The
  cordon keeps the Deployments' replacements off the dead node: they start on the other workers at once (after a
  real node failure Kubernetes evicts the pods only when their default 300 s toleration of an unreachable node
  runs out); a DaemonSet's replacement is bound to the node but cannot start there until restore().
  restore() `docker start`s it, uncordons it and waits for Ready. The control-plane node is refused (it runs
  the API server and the edge).
- kill(proxy=...) freezes the proxy until restore(): from inside the node container, SIGSTOP to the proxy
  container's main process (pid from `crictl inspect`), and iptables rules at the top of the node's
  FORWARD chain that reset TCP connections to the proxy's container ports on its pod IP. SIGSTOP alone
  keeps the sockets accepting connections that nobody answers: callers would hang for their own timeout,
  longer than a proxy's route timeout (3 s), and the failure would be charged to the caller's proxy, or
  (hostPort of stage 3) never end; the rule makes the proxy refuse at once, as a dead Envoy does locally.
  The kubelet's readiness probe then fails too, so Services and headless DNS drop the pod. restore()
  sends SIGCONT and deletes the rules (a liveness probe would restart the proxy sooner; meshlab sets none).
  An Istio sidecar (istio-proxy: pilot-agent with Envoy as its child) is frozen as a process tree, and its
  rules cover every port of the pod, since the sidecar intercepts them all.
- kill(pod="istiod") or kill(pod="control-plane") scales the control plane's Deployment to zero until
  restore() (as the local backend holds a killed pod down): sidecars keep serving their last config.
- inject(...) POSTs to the app's /_meshlab/fault through `kubectl exec` of python in the app container.

Stage 5: install_mesh() installs the pinned Istio with istioctl (backends/istio.py), after pulling its images
into the nodes; the code is in KindFaults (kindfaults.py) and MeshOperations (clustermesh.py). Stage 6: KindBackend(lab,
member="cluster-1") is cluster meshlab-<lab>-cluster-1 of a lab's two, Istio multi-primary (multikind.py); the two
are composed into one lab by meshlab/kindfleet.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from . import edge, istio, kindclean, kindimages
from . import istio_multicluster as im
from .base import Availability, MeshlabError, NodeInfo
from .cluster import KUBECTL_HINTS, OWNED_LABEL, ClusterBackend, free_port, os_hint
from .kindfaults import KindFaults
from .multikind import KindMulticluster
from .state import check_name, state_root
from .kubectl import Kubectl, Runner, check, pod_images

EDGE_NAMESPACE = "meshlab-system"
NODE_CONTAINER_PORT = 80
CREATE_TIMEOUT = 900.0  # the first run pulls the kindest/node image
PULL_TIMEOUT = 900.0  # one image into one node, on a slow link
# In a node container: print each image (argument) that containerd does not have yet.
MISSING_IMAGES = 'for i in "$@"; do crictl inspecti -q "$i" >/dev/null 2>&1 || echo "$i"; done'
HINTS = {
    "docker": {"Linux": "install Docker Engine: https://docs.docker.com/engine/install/ "
                        "(then `sudo usermod -aG docker $USER` and log in again)",
               "Darwin": "install Docker Desktop: https://docs.docker.com/desktop/setup/install/mac-install/",
               "Windows": "install Docker Desktop (WSL 2 backend): https://docs.docker.com/desktop/setup/install/windows-install/"},
    "engine": {"Linux": "start the Docker engine: `sudo systemctl start docker`; if `docker info` says permission "
                        "denied, `sudo usermod -aG docker $USER` and log in again",
               "Darwin": "start Docker Desktop and wait until it says the engine is running",
               "Windows": "start Docker Desktop and wait until it says the engine is running"},
    "kind": {"Linux": "install kind: `go install sigs.k8s.io/kind@latest`, or a release binary: "
                      "https://kind.sigs.k8s.io/docs/user/quick-start/#installing-from-release-binaries",
             "Darwin": "install kind: `brew install kind`",
             "Windows": "install kind: `winget install Kubernetes.kind` (or `choco install kind`)"},
    "kubectl": KUBECTL_HINTS,
}


def cluster_config(name: str, nodes: int, host_port: int, region: str = "") -> dict:
    """kind's Cluster config: 1 control-plane (the edge node, port-mapped) + nodes-1 workers, all labelled as meshlab's,
    and with a region, topology.kubernetes.io/region and zone (workers over zones a, b, ...; a kubelet may set both)."""
    places = im.zones(region, max(1, nodes - 1)) if region else []
    topology = [im.node_labels(region, places[max(0, i - 1) % len(places)]) if region else {} for i in range(nodes)]
    control_plane = {"role": "control-plane", "labels": {OWNED_LABEL: "true", edge.EDGE_NODE_LABEL: "true", **topology[0]},
                     "extraPortMappings": [{"containerPort": NODE_CONTAINER_PORT, "hostPort": host_port,
                                            "listenAddress": "127.0.0.1", "protocol": "TCP"}]}
    workers = [{"role": "worker", "labels": {OWNED_LABEL: "true", **topology[i]}} for i in range(1, nodes)]
    return {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "name": name, "nodes": [control_plane, *workers]}


class KindBackend(KindMulticluster, KindFaults, ClusterBackend):
    """A lab as its own kind cluster on this machine's Docker."""

    name = "kind"
    pin_namespace = False
    all_namespaces = True

    def __init__(self, lab: str = "default", runner: Runner | None = None, edge_port: int | None = None, progress=None,
                 member: str = "", network: str = "", region: str = "", detached: bool = False):
        self.lab = check_name(lab)
        self.member = check_name(member, "cluster name") if member else ""
        self.cluster_name = f"meshlab-{lab}-{member}" if member else f"meshlab-{lab}"
        kubectl = Kubectl(f"kind-{self.cluster_name}", "default", runner)
        super().__init__(kubectl, "default", EDGE_NAMESPACE, state_root() / "kind" / f"{self.cluster_name}.json", progress,
                         detached)  # detached: a CLI lab, whose port-forwards outlive the command (cluster.py)
        self.cluster = self.member or self.cluster_name
        self.network, self.region = (network, region) if (network and region) or not member else im.topology(member)
        self.edge_port = edge_port

    @classmethod
    def availability(cls, runner: Runner | None = None, which=shutil.which) -> Availability:
        """docker, kind and kubectl on PATH, and a Docker engine that answers `docker info`."""
        runner, found = runner or Runner(), Availability("kind", ok=False)
        for tool in ("docker", "kind", "kubectl"):
            if which(tool):
                found.present.append(tool)
            else:
                found.missing.append(tool)
                found.hints.append(os_hint(HINTS[tool]))
        if "docker" in found.present:
            if runner.run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30).returncode == 0:
                found.present.append("docker engine")
            else:
                found.missing.append("docker engine (not running or not reachable)")
                found.hints.append(os_hint(HINTS["engine"]))
        found.ok = not found.missing
        return found

    # ---- the cluster -----------------------------------------------------------------------------
    def run(self, argv: list[str], what: str, timeout: float = 120.0, input: str | None = None) -> str:
        return check(self.runner.run(argv, input=input, timeout=timeout), what)

    def kind_clusters(self) -> list[str]:
        """Every kind cluster on this machine (`kind get clusters`), meshlab's or not."""
        return self.run(["kind", "get", "clusters"], "kind get clusters").split()

    def owned(self) -> bool:
        """Whether the cluster called meshlab-<lab> is one meshlab created: the control-plane id its marker file
        records, or with none recorded (or no marker), meshlab's node label (see the module docstring)."""
        recorded = self.state.read().get("control_plane_id")
        if recorded:
            return self.control_plane_id() == recorded
        result = self.kubectl.call("get", "nodes", "-l", f"{OWNED_LABEL}=true", "-o", "name", namespace=None, timeout=30)
        return result.returncode == 0 and bool(result.stdout.strip())

    def control_plane_id(self) -> str:
        result = self.runner.run(["docker", "inspect", "--format", "{{.Id}}", f"{self.cluster_name}-control-plane"])
        return result.stdout.strip() if result.returncode == 0 else ""

    def up(self, nodes: int = 3, clusters: int = 1) -> None:
        """Create meshlab-<lab> (1 control-plane + nodes-1 workers) and its edge; delete it again if this fails."""
        if clusters != 1:
            raise MeshlabError("the kind backend runs one cluster per lab for now", "use clusters=1")
        if nodes < 1:
            raise MeshlabError(f"nodes={nodes}: a cluster needs at least one node", "use nodes=3 (1 control-plane + 2 workers)")
        if self.cluster_name in self.kind_clusters() and self._reuse(nodes):
            return
        port = self.edge_port or free_port()
        self.state.write({"cluster": self.cluster_name, "context": self.kubectl.context, "edge_port": port, "nodes": nodes,
                          **({"lab": self.lab, "member": self.member, "network": self.network, "region": self.region}
                             if self.member else {})})
        workers = f" + {nodes - 1} worker(s)" if nodes > 1 else ""
        self.say(f"creating kind cluster {self.cluster_name} (1 control-plane{workers}); "
                 "the first run downloads the node image")
        config = yaml.safe_dump(cluster_config(self.cluster_name, nodes, port, self.region), sort_keys=False)
        ours = True
        try:
            result = self.runner.run(["kind", "create", "cluster", "--name", self.cluster_name, "--config", "-"],
                                     input=config, timeout=CREATE_TIMEOUT)
            ours = "already exist" not in (result.stderr or "")  # a same-named cluster appeared meanwhile: not ours
            check(result, f"kind create cluster {self.cluster_name}")
            self.state.update(control_plane_id=self.control_plane_id())
            self.kubectl.apply([kindclean.owner_record(self.cluster_name)], namespace=None)  # for `down --all` elsewhere
            self.kubectl.run("wait", "--for=condition=Ready", "node", "--all", "--timeout=180s", namespace=None,
                             timeout=210, what="nodes did not become Ready")
            self.preload(list(edge.IMAGES), [f"{self.cluster_name}-control-plane"])  # the edge runs there
            self.install_edge(host_port=NODE_CONTAINER_PORT, with_namespace=True)
        except BaseException:  # including Ctrl-C mid-create: kind leaves the node containers behind
            if ours:
                self._teardown(strict=False)
            else:
                self.state.remove()
            raise

    def _reuse(self, nodes: int) -> bool:
        """Keep a cluster meshlab made earlier with at least `nodes` nodes (True); delete a smaller one so that
        up() creates it again (False); refuse anyone else's. One with meshlab's node label but no marker here (a crashed
        run's, or another MESHLAB_HOME's) is deleted too: nothing records its edge port or what runs on it."""
        state = self.state.read()
        if not self.owned() or (state and state.get("member", "") != self.member):
            raise MeshlabError(f"a kind cluster named {self.cluster_name} exists that meshlab did not create for this lab",
                               f"use another lab name, or delete it yourself: kind delete cluster --name {self.cluster_name}")
        if not state:
            self.say(f"kind cluster {self.cluster_name} carries meshlab's node label but meshlab has no record of it "
                     "(left by a crashed run?): creating it again")
            self._teardown()
            return False
        have = self.state.read().get("nodes", 1)
        if have < nodes:
            self.say(f"kind cluster {self.cluster_name} has {have} node(s), this stage needs {nodes}: "
                     "creating it again (objects applied by hand are lost)")
            self.stop_forwards()
            self._teardown()
            return False
        self.say(f"reusing kind cluster {self.cluster_name}")
        self.install_edge(host_port=NODE_CONTAINER_PORT, with_namespace=True)
        return True

    def _teardown(self, strict: bool = True) -> None:
        """`kind delete cluster` and forget the marker; strict=False (cleanup after a failure) only reports errors."""
        self.say(f"deleting kind cluster {self.cluster_name}")
        result = self.runner.run(["kind", "delete", "cluster", "--name", self.cluster_name], timeout=300)
        if result.returncode != 0 and not strict:
            self.say(f"could not delete it; run `kind delete cluster --name {self.cluster_name}` yourself")
            return
        check(result, f"kind delete cluster {self.cluster_name}")
        self.state.remove()

    def down(self) -> None:
        """Delete the lab's cluster (and, for the lab's own backend, its member clusters) if meshlab created it;
        idempotent; any other cluster is left alone."""
        if not self.member:
            self.down_members()
        self.stop_forwards()
        if self.cluster_name not in self.kind_clusters():
            self.state.remove()
        elif not self.owned():
            self.say(f"not deleting kind cluster {self.cluster_name}: meshlab did not create it")
            return
        else:
            self._teardown()
        if self.member:
            self.forget_ca()

    # ---- objects and images ----------------------------------------------------------------------
    def prepare(self, docs: list[dict]) -> None:
        """Once the docs passed the checks, bring their pods' images onto the nodes (preload(); see the module
        docstring), so a bad config is refused before any download."""
        self.preload(pod_images(docs))

    def pod_nodes(self) -> list[str]:
        """Node containers that run app pods: the workers, or the only node of a one-node cluster."""
        names = self.run(["kind", "get", "nodes", "--name", self.cluster_name], "kind get nodes").split()
        return [n for n in names if not n.endswith("-control-plane")] or names

    def preload(self, images: list[str], nodes: list[str] | None = None) -> None:
        """Bring each image onto the nodes (default: those that run pods) that lack it: pulled once by this machine's
        Docker and `kind load`ed (kindimages.py), else `crictl pull`ed inside each node."""
        if not images:
            return
        missing: dict[str, list[str]] = {}
        for node in nodes or self.pod_nodes():
            listed = self.runner.run(["docker", "exec", node, "sh", "-c", MISSING_IMAGES, "sh", *images], timeout=60)
            for image in listed.stdout.split() if listed.returncode == 0 else []:  # a stopped node: not now
                missing.setdefault(image, []).append(node)
        for image, lacking in missing.items():
            if kindimages.load(self.runner, self.cluster_name, image, lacking, self.say):
                continue
            for node in lacking:
                self.say(f"pulling {image} into {node} (crictl pull inside the node)")
                result = self.runner.run(["docker", "exec", node, "crictl", "pull", image], timeout=PULL_TIMEOUT)
                check(result, f"could not pull {image} into {node}",
                      "check this machine's network (Docker Hub limits anonymous pulls per address), then try again")

    def edge_url(self) -> str:
        """The edge port published on 127.0.0.1 when the cluster was created."""
        port = self.state.read().get("edge_port")
        if not port:
            raise MeshlabError(f"no record of {self.cluster_name}'s edge port", "run lab.up() first")
        return f"http://127.0.0.1:{port}"

    # ---- views and faults ------------------------------------------------------------------------
    def nodes(self) -> list[NodeInfo]:
        """Kubernetes' view, except that a stopped node container is not ready even before Kubernetes notices."""
        stopped = set(self.stopped_nodes())
        found = super().nodes()
        for node in found:
            node.ready = node.ready and node.name not in stopped
        return found

    def restore(self) -> None:
        """Undo kill() (nodes, proxies, control plane; see KindFaults), then clear injected faults."""
        self.restore_faults()
        super().restore()

    # ---- stage 5: Istio --------------------------------------------------------------------------
    def install_mesh(self) -> None:
        """Install the pinned Istio (istiod, root namespace mesh-system, the trace filter) and pull the sidecar image
        into the nodes first. Injection is asked for per pod by stage 5's manifests (label_injection for a namespace).
        A stage-6 member installs Istio multi-primary with its east-west gateway instead (multikind.py)."""
        if self.member:
            return self.install_multicluster_mesh()
        self.preload(istio.images())
        self.remember_istio(istio.install(self.runner, self.kubectl.context, self.say))

    def label_injection(self, namespace: str = "default") -> None:
        """`kubectl label namespace NS istio-injection=enabled --overwrite`: every new pod there gets a sidecar."""
        istio.label_injection(self.kubectl, namespace)

    def capabilities(self) -> set[str]:
        """kind owns its cluster: it can stop nodes and hold proxies and the control plane down until restore()."""
        return super().capabilities() | {"kill-node", "hold-proxy", "kill-control-plane", "multi-node"}

    def logs(self, dest: Path) -> Path:
        """`kind export logs` (nodes, kubelet, containerd) into dest/kind, then every container's log."""
        dest = Path(dest)
        self.run(["kind", "export", "logs", str(dest / "kind"), "--name", self.cluster_name], "kind export logs", timeout=300)
        return super().logs(dest)
