"""Stage 6 on kind through Lab.up(stage="multicluster"), without Docker: a fake Docker + kind that remembers which
clusters and containers exist, so the order of the commands, what down() removes and what a failure half-way leaves
can be read off it (docs/multicluster.md, "On kind")."""

from __future__ import annotations

import json
from subprocess import CompletedProcess

import pytest
from test_istio_backend import VERSION_ARGV
from test_kube_backend import FakeRunner, pod
from test_multikind import remote_secret

import meshlab
from meshlab import manifests, settle
from meshlab.backends import istio, kindlegacy, multikind
from meshlab.backends import istio_multicluster as im
from meshlab.backends.base import MeshlabError
from meshlab.backends.kind import KindBackend
from meshlab.kindfleet import KindFleet, is_kind_fleet
from meshlab.lab import make_backend

LAB = "t6"
C1, C2 = f"meshlab-{LAB}-cluster-1", f"meshlab-{LAB}-cluster-2"
LEGACY = f"meshlab-{LAB}-payments"
ADDRESS = {f"{C1}-control-plane": "172.18.0.3", f"{C2}-control-plane": "172.18.0.6", LEGACY: "172.18.0.9"}
FORMAT = multikind.address_format("kind")


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("KIND_EXPERIMENTAL_DOCKER_NETWORK", raising=False)
    monkeypatch.setattr(settle, "settle", lambda lab, timeout=15.0: True)  # no real edge to poll
    return tmp_path / "state"


class World(FakeRunner):
    """Docker and kind as far as stage 6 uses them: kind clusters (two nodes each), stopped node containers, and
    plain containers with labels. Other commands answer from FakeRunner's rules."""

    def __init__(self):
        super().__init__()
        self.clusters: list[str] = []
        self.stopped: set[str] = set()
        self.containers: dict[str, dict] = {}
        self.on(*VERSION_ARGV, stdout=json.dumps({"clientVersion": {"version": istio.VERSION}}))
        self.on("get", "deployment", "istiod", stderr='Error from server (NotFound): "istiod" not found', rc=1)

    def run(self, argv, input=None, timeout=120.0):
        answer = self.answer(list(argv))
        if answer is None:
            return super().run(argv, input, timeout)
        self.calls.append((list(argv), input))
        stdout, rc = answer if isinstance(answer, tuple) else (answer, 0)
        return CompletedProcess(argv, rc, stdout if rc == 0 else "", "" if rc == 0 else stdout)

    def answer(self, argv: list[str]):
        """The stateful reply to argv, or None to leave it to the rules."""
        match argv:
            case ["kind", "get", "clusters"]:
                return "".join(f"{c}\n" for c in self.clusters)
            case ["kind", "create", "cluster", "--name", name, *_]:
                self.clusters.append(name)
                return ""
            case ["kind", "delete", "cluster", "--name", name]:
                self.clusters = [c for c in self.clusters if c != name]  # kind deletes a missing cluster quietly
                self.stopped -= {f"{name}-control-plane", f"{name}-worker"}
                return ""
            case ["kind", "get", "nodes", "--name", name]:
                return f"{name}-control-plane\n{name}-worker\n" if name in self.clusters else ""
            case ["docker", "inspect", "--format", "{{.Id}}", node]:
                cluster = node.removesuffix("-control-plane")
                return (f"id-{cluster}\n", 0) if cluster in self.clusters else ("No such object", 1)
            case ["docker", "inspect", "--format", fmt, name] if fmt == FORMAT:
                return ADDRESS[name] + "\n"
            case ["docker", "ps", "-a", "--filter", label, "--filter", "status=exited", *_]:
                cluster = label.rsplit("=", 1)[1]
                return "".join(f"{n}\n" for n in sorted(self.stopped) if n.startswith(f"{cluster}-"))
            case ["docker", "stop", node]:
                self.stopped.add(node)
                return ""
            case ["docker", "start", node] if node not in self.containers:
                self.stopped.discard(node)
                return ""
            case ["docker", "ps", "-aq", "--filter", lab, "--filter", role]:
                wanted = {lab.removeprefix("label="), role.removeprefix("label=")}
                return "".join(f"{c['id']}\n" for c in self.containers.values()
                               if {f"{k}={v}" for k, v in c["labels"].items()} | set(c["labels"]) >= wanted)
            case ["docker", "create", "--name", name, *rest]:
                if name in self.containers:
                    return f'Conflict. The container name "/{name}" is already in use', 125
                labels = dict(rest[i + 1].split("=", 1) for i, a in enumerate(rest) if a == "--label")
                self.containers[name] = {"id": f"c-{name}", "labels": labels}
                return f"c-{name}\n"
            case ["docker", "rm", "-f", *ids]:
                self.containers = {n: c for n, c in self.containers.items() if c["id"] not in ids}
                return ""
            case ["istioctl", "create-remote-secret", "--context", _, "--name", name, "--server", server]:
                return remote_secret(name, server)
        return None

    def index(self, *tokens: str) -> int:
        """Position of the first command that has these tokens in order."""
        for i, (argv, _) in enumerate(self.calls):
            rest = iter(argv)
            if all(any(t == a for a in rest) for t in tokens):
                return i
        raise AssertionError(f"no command with {tokens}")

    def applied(self, context: str) -> list[list[dict]]:
        """The objects of each `kubectl apply -f -` sent to one cluster."""
        return [manifests.load(text) for argv, text in self.calls
                if argv[:3] == ["kubectl", "--context", context] and argv[-3:] == ["apply", "-f", "-"]]


def kind_lab(world: World) -> meshlab.Lab:
    return meshlab.Lab(LAB, backend="kind", runner=world, edge_port=30123, progress=lambda m: None)


def up(world: World) -> meshlab.Lab:
    return kind_lab(world).up(stage="multicluster", quiet=True)


def milestones(world: World) -> list[str]:
    """The commands that make stage 6, in the order they ran, named."""
    names = []
    for argv, text in world.calls:
        context = next((a for a in argv if a.startswith("kind-meshlab-")), "").removeprefix(f"kind-meshlab-{LAB}-")
        if argv[:3] == ["kind", "create", "cluster"]:
            names.append(f"kind create {argv[4]}")
        elif argv[:2] == ["docker", "create"]:
            names.append(f"docker create {argv[3]}")
        elif argv[:2] == ["istioctl", "install"]:
            names.append(f"istioctl install {context}" + (" gateway" if argv[-2:] == ["-f", "-"] else ""))
        elif argv[:2] == ["istioctl", "create-remote-secret"]:
            names.append(f"remote secret of {argv[argv.index('--name') + 1]}")
        elif argv[-3:] == ["apply", "-f", "-"] and context:
            kinds = {d["kind"] for d in manifests.load(text)}
            what = ("cacerts" if "Secret" in kinds and "Namespace" in kinds else "stage" if "ServiceEntry" in kinds
                    else "gateway" if kinds == {"Gateway"} else "remote secret" if text.startswith("#") else "")
            if what:
                names.append(f"apply {what} {context}")
    return names


# ---- up -------------------------------------------------------------------------------------------------


def test_stage_6_on_kind_comes_up_in_istios_order(state_home):
    world = World()
    lab = up(world)
    assert lab.clusters() == ["cluster-1", "cluster-2"] and isinstance(lab.backend, KindFleet)
    assert milestones(world) == [
        f"kind create {C1}", f"kind create {C2}", f"docker create {LEGACY}",
        "apply cacerts cluster-1", "istioctl install cluster-1", "istioctl install cluster-1 gateway",
        "apply gateway cluster-1",
        "apply cacerts cluster-2", "istioctl install cluster-2", "istioctl install cluster-2 gateway",
        "apply gateway cluster-2",
        "remote secret of cluster-2", "apply remote secret cluster-1",
        "remote secret of cluster-1", "apply remote secret cluster-2",
        "apply stage cluster-1", "apply stage cluster-2"]
    assert world.clusters == [C1, C2] and list(world.containers) == [LEGACY]
    assert lab.stage == 6 and lab.backend.recall()["stage"] == 6
    # each cluster a primary of its own network, with DNS capture for the ServiceEntry's host
    installs = [argv for argv, _ in world.calls if argv[:2] == ["istioctl", "install"] and argv[-2:] != ["-f", "-"]]
    for argv, (cluster, network) in zip(installs, (("cluster-1", "network-1"), ("cluster-2", "network-2"))):
        assert argv[-len(im.install_flags(cluster, network)):] == im.install_flags(cluster, network)
        assert "meshConfig.defaultConfig.proxyMetadata.ISTIO_META_DNS_CAPTURE=true" in argv
    servers = [argv[argv.index("--server") + 1] for argv, _ in world.calls if "create-remote-secret" in argv]
    assert servers == ["https://172.18.0.6:6443", "https://172.18.0.3:6443"]  # each peer at its kind-network address


def test_the_legacy_container_runs_on_kinds_network_and_the_service_entry_points_at_it(state_home, tmp_path):
    world = World().on("docker", "logs", LEGACY, stdout="payments v1 listening on 0.0.0.0:9080\n")
    lab = up(world)
    create = world.calls[world.index("docker", "create")][0]
    assert create[create.index("--network") + 1] == "kind" and "-p" not in create and "--publish" not in create
    assert world.containers[LEGACY]["labels"] == {"meshlab.io/lab": LAB, "meshlab.io/legacy": "payments"}
    assert create[-9:] == ["python:3.12-slim", "python", "/app.py", "--service", "payments", "--version", "v1",
                           "--port", "9080"]
    assert world.index("docker", "cp") < world.index("docker", "start", LEGACY) < world.index("docker", "exec", LEGACY)
    assert lab.backend.stage_options() == {"payments_address": "172.18.0.9"}
    for context in (f"kind-{C1}", f"kind-{C2}"):
        [entry] = [d for docs in world.applied(context) for d in docs if d["kind"] == "ServiceEntry"]
        assert entry["spec"]["endpoints"] == [{"address": "172.18.0.9"}]
    stage2 = [d for docs in world.applied(f"kind-{C2}") if any(d["kind"] == "ServiceEntry" for d in docs) for d in docs]
    assert {d["metadata"]["labels"]["app"] for d in stage2 if d["kind"] == "Deployment"} == {"reviews", "ratings"}
    # status and logs name both clusters and the container
    status = lab.backend.status()
    assert {n: (s["kind_cluster"], s["network"], s["region"]) for n, s in status["clusters"].items()} == {
        "cluster-1": (C1, "network-1", "region-1"), "cluster-2": (C2, "network-2", "region-2")}
    assert status["legacy"] == {"service": "payments", "ip": "172.18.0.9", "container": LEGACY}
    dest = lab.logs(tmp_path / "logs")
    assert (dest / "payments.log").read_text().startswith("payments v1 listening")
    assert ["kind", "export", "logs", str(dest / "cluster-2" / "kind"), "--name", C2] in world.argvs
    # found again from its records: `meshlab status|down --lab t6 --backend kind`
    assert is_kind_fleet(LAB) and not is_kind_fleet("other")
    again = make_backend("kind", LAB, runner=world, progress=lambda m: None)
    assert isinstance(again, KindFleet) and again.legacy_address() == "172.18.0.9"
    assert isinstance(make_backend("kind", "other", runner=world), KindBackend)


# ---- down and failures ----------------------------------------------------------------------------------


def test_down_deletes_both_clusters_and_the_container_and_forgets_the_lab(state_home):
    world = World()
    lab = up(world)
    world.calls.clear()
    lab.down()
    deleted = [argv[-1] for argv, _ in world.calls if argv[:3] == ["kind", "delete", "cluster"]]
    assert deleted == [C1, C2] and world.clusters == [] and world.containers == {}
    assert world.index("docker", "rm", "-f") < world.index("kind", "delete", "cluster")  # the container first
    assert not list((state_home / "kind").rglob("*.json")) and not multikind.ca_folder(LAB).exists()
    assert not is_kind_fleet(LAB)
    lab.down()  # idempotent


def test_down_goes_on_when_one_cluster_cannot_be_deleted(state_home):
    world = World()
    lab = up(world)
    world.on("kind", "delete", "cluster", "--name", C1, stderr="ERROR: failed to delete cluster", rc=1)
    original = world.answer
    world.answer = lambda argv: None if argv[:5] == ["kind", "delete", "cluster", "--name", C1] else original(argv)
    with pytest.raises(MeshlabError, match=f"kind delete cluster {C1}: ERROR: failed to delete cluster"):
        lab.backend.down()
    assert world.clusters == [C1] and world.containers == {}  # cluster-2 and the container went anyway


def test_a_failure_half_way_leaves_nothing(state_home):
    world = World()
    world.on("istioctl", "install", "--context", f"kind-{C2}", "--set", "profile=minimal",
             stderr="Error: failed to install manifests: context deadline exceeded", rc=1)
    with pytest.raises(MeshlabError, match="istioctl install: Error: failed to install manifests"):
        up(world)
    assert f"istioctl install cluster-2" in milestones(world) and "apply stage cluster-1" not in milestones(world)
    assert world.clusters == [] and world.containers == {}
    assert not list((state_home / "kind").rglob("*.json")) and not multikind.ca_folder(LAB).exists()


def test_a_second_cluster_that_cannot_be_created_takes_the_first_down(state_home):
    world = World()
    original = world.answer
    world.answer = lambda argv: ("ERROR: failed to create cluster: no space left", 1) \
        if argv[:5] == ["kind", "create", "cluster", "--name", C2] else original(argv)
    with pytest.raises(MeshlabError, match="kind create cluster .*cluster-2: ERROR: failed to create cluster"):
        up(world)
    assert world.clusters == [] and world.containers == {}
    assert not any(argv[:2] == ["docker", "create"] for argv in world.argvs)  # the legacy service never started


def test_a_legacy_service_that_never_answers_is_removed_with_one_line(state_home, monkeypatch):
    world = World().on("docker", "exec", LEGACY, "python", "-c", rc=1)
    world.on("docker", "logs", "--tail", "5", LEGACY, stderr="SyntaxError: invalid syntax\n")
    monkeypatch.setattr(kindlegacy, "START_TIMEOUT", 0.0)
    with pytest.raises(MeshlabError, match="payments .outside the clusters. did not answer.*SyntaxError"):
        kindlegacy.start(world, LAB, "payments", "kind", lambda m: None)
    assert world.containers == {}


def test_a_same_named_container_that_is_not_ours_is_left_alone(state_home):
    world = World()
    world.containers[LEGACY] = {"id": "someone", "labels": {}}
    with pytest.raises(MeshlabError, match="docker create meshlab-t6-payments: Conflict"):
        kindlegacy.start(world, LAB, "payments", "kind", lambda m: None)
    assert world.containers == {LEGACY: {"id": "someone", "labels": {}}}


def test_the_last_member_deleted_any_way_takes_the_container_and_record_along(state_home):
    world = World()
    up(world)
    for name in ("cluster-1", "cluster-2"):  # as `meshlab down --all` does: member by member
        KindBackend(LAB, runner=world, progress=lambda m: None, member=name).down()
        assert bool(world.containers) == (name == "cluster-1")
    assert not is_kind_fleet(LAB)


# ---- the other shapes -----------------------------------------------------------------------------------


def test_a_single_cluster_lab_becomes_a_fleet_and_back(state_home):
    world = World()
    lab = kind_lab(world).up(stage="edge", quiet=True)
    assert world.clusters == [f"meshlab-{LAB}"] and lab.clusters() == []
    lab.up(stage="multicluster", quiet=True)
    assert world.clusters == [C1, C2]  # the single cluster went first: two more would not fit beside it
    lab.up(stage="edge", quiet=True)
    assert world.clusters == [f"meshlab-{LAB}"] and world.containers == {} and not is_kind_fleet(LAB)
    lab.down()


def test_kube_refuses_stage_6_before_anything_runs():
    runner = FakeRunner()
    lab = meshlab.Lab("ann", backend="kube", runner=runner, context="class")
    with pytest.raises(MeshlabError) as caught:
        lab.up(stage="multicluster", quiet=True)
    assert "needs two clusters" in str(caught.value) and "\n" not in str(caught.value)
    assert "--backend kind" in caught.value.hint and runner.argvs == []


# ---- faults ---------------------------------------------------------------------------------------------


def test_killing_cluster_1_stops_its_worker_only_until_restore(state_home):
    world = World()
    lab = up(world)
    there = [pod(f"reviews-v1-{i}", node=f"{C1}-worker", labels={"app": "reviews"}) for i in range(2)]
    world.on("kubectl", "--context", f"kind-{C1}", "get", "pods", stdout=json.dumps({"items": there}))
    world.calls.clear()
    assert lab.kill(cluster="cluster-1") == ["reviews-v1-0", "reviews-v1-1"]
    stops = [argv for argv, _ in world.calls if argv[:2] == ["docker", "stop"]]
    assert stops == [["docker", "stop", f"{C1}-worker"]] and world.stopped == {f"{C1}-worker"}  # not the API server
    assert not [argv for argv, _ in world.calls if any(C2 in a for a in argv)]  # cluster-2 untouched
    assert ["kubectl", "--context", f"kind-{C1}", "cordon", f"{C1}-worker"] in world.argvs
    assert ["kubectl", "--context", f"kind-{C1}", "-n", "default", "delete", "pod", "reviews-v1-0", "reviews-v1-1",
            "--grace-period=0", "--force", "--wait=false", "--ignore-not-found"] in world.argvs
    lab.backend.restore()
    assert world.stopped == set() and ["docker", "start", f"{C1}-worker"] in world.argvs
    assert ["kubectl", "--context", f"kind-{C1}", "uncordon", f"{C1}-worker"] in world.argvs
    with pytest.raises(MeshlabError, match="no cluster 'cluster-3'"):
        lab.kill(cluster="cluster-3")


def test_faults_on_the_legacy_service_go_into_its_container(state_home):
    world = World()
    lab = up(world)
    world.calls.clear()
    assert lab.inject("payments", errors=0.5) == ["payments-legacy"]
    lab.backend.restore()
    calls = [(argv, text) for argv, text in world.calls if argv[:4] == ["docker", "exec", "-i", LEGACY]]
    assert [(argv[-1], text) for argv, text in calls] == [("POST", '{"error_rate": 0.5, "latency_ms": 0}'), ("DELETE", "")]
    assert calls[0][0][-2] == "http://127.0.0.1:9080/_meshlab/fault"
