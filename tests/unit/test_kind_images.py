"""Images on kind: pulled once on this machine, `kind load`ed into the nodes before apply, with the pull inside the
nodes as the fallback; and doctor's table of what a first run downloads (fake runner, no Docker)."""

from __future__ import annotations

import pytest
from istio_samples import deployment
from test_kube_backend import FakeRunner

from meshlab import doctor
from meshlab.backends import edge, istio, kind, kindimages
from meshlab.backends.base import MeshlabError
from meshlab.stages import envoyconf, shop

CLUSTER = "meshlab-t1"
WORKERS = [f"{CLUSTER}-worker", f"{CLUSTER}-worker2"]
ENVOY, PYTHON = envoyconf.ENVOY_IMAGE, shop.IMAGE
HAS = ["docker", "image", "inspect", "--format", "{{.Id}}"]
PLATFORM = ["docker", "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}"]


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def nodes_missing(runner: FakeRunner, missing: dict[str, str]) -> FakeRunner:
    """A cluster of a control plane and two workers, each missing the images given (node -> 'img1 img2')."""
    runner.on("kind", "get", "nodes", stdout="\n".join([f"{CLUSTER}-control-plane", *WORKERS]))
    for node, images in missing.items():
        runner.on("docker", "exec", node, "sh", "-c", stdout=images)
    return runner


def workload(*images: str) -> list[dict]:
    """A Deployment running these images: what apply() preloads (no Envoy config, so nothing else runs)."""
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    return [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shop"},
             "spec": {"selector": {"matchLabels": {"app": "shop"}},
                      "template": {"metadata": {"labels": {"app": "shop"}}, "spec": {"containers": containers}}}}]


def backend(runner, said=None) -> kind.KindBackend:
    return kind.KindBackend("t1", runner=runner, edge_port=30123, progress=said.append if said is not None else print)


def index(runner: FakeRunner, *tokens: str) -> int:
    """Position of the first call whose argv starts with tokens."""
    return next(i for i, argv in enumerate(runner.argvs) if argv[:len(tokens)] == list(tokens))


def test_apply_pulls_each_image_once_on_the_host_and_kind_loads_it_before_applying():
    runner = nodes_missing(FakeRunner(), {WORKERS[0]: f"{ENVOY}\n{PYTHON}\n", WORKERS[1]: f"{ENVOY}\n"})
    runner.on(*HAS, ENVOY, stderr=f"Error: No such image: {ENVOY}", rc=1)  # python is here already
    said = []
    backend(runner, said).apply(workload(ENVOY, PYTHON))
    assert [a for a in runner.argvs if a[:2] == ["docker", "pull"]] == [["docker", "pull", ENVOY]]  # once, not per node
    loads = [a for a in runner.argvs if a[:2] == ["kind", "load"]]
    assert loads == [["kind", "load", "docker-image", ENVOY, "--name", CLUSTER, "--nodes", ",".join(WORKERS)],
                     ["kind", "load", "docker-image", PYTHON, "--name", CLUSTER, "--nodes", WORKERS[0]]]
    apply = index(runner, "kubectl", "--context", f"kind-{CLUSTER}", "apply")
    assert index(runner, "docker", "pull") < index(runner, "kind", "load") < apply
    assert max(i for i, a in enumerate(runner.argvs) if a[:2] == ["kind", "load"]) < apply
    assert not [a for a in runner.argvs if "crictl" in a and "pull" in a]
    assert said[:2] == [f"[kind] pulling {ENVOY} on this machine (once, for every cluster)",
                        f"[kind] loading {ENVOY} into {', '.join(WORKERS)} (kind load docker-image)"]


def test_when_the_host_cannot_pull_each_node_pulls_the_image_itself():
    runner = nodes_missing(FakeRunner(), {WORKERS[0]: f"{ENVOY}\n", WORKERS[1]: f"{ENVOY}\n"})
    runner.on(*HAS, rc=1).on("docker", "pull", stderr="Error response from daemon: dial tcp: lookup registry-1.docker.io: "
                                                      "no such host", rc=1)
    runner.on("crictl", "pull")  # the nodes reach the registry (e.g. through a proxy only they know)
    said = []
    backend(runner, said).apply(workload(ENVOY, PYTHON))
    crictl = [a for a in runner.argvs if a[-3:-1] == ["crictl", "pull"]]
    assert crictl == [["docker", "exec", node, "crictl", "pull", ENVOY] for node in WORKERS]
    assert not [a for a in runner.argvs if a[:2] == ["kind", "load"]]
    assert index(runner, "docker", "exec", WORKERS[1], "crictl") < index(runner, "kubectl", "--context", f"kind-{CLUSTER}", "apply")
    assert any("could not pull" in m and "no such host" in m and "pulling it inside the nodes instead" in m for m in said)


def test_a_failed_kind_load_retries_with_a_one_platform_archive():
    runner = nodes_missing(FakeRunner(), {WORKERS[0]: f"{ENVOY}\n"})
    runner.on("kind", "load", "docker-image", rc=1,
              stderr="ERROR: failed to load image: ctr: content digest sha256:82014a: not found")  # kind#3795
    runner.on(*PLATFORM, ENVOY, stdout="linux/arm64\n")
    backend(runner, []).apply(workload(ENVOY, PYTHON))
    save = next(a for a in runner.argvs if a[:3] == ["docker", "image", "save"])
    archive = save[save.index("-o") + 1]
    assert save == ["docker", "image", "save", "--platform", "linux/arm64", "-o", archive, ENVOY]
    assert ["kind", "load", "image-archive", archive, "--name", CLUSTER, "--nodes", WORKERS[0]] in runner.argvs
    assert not [a for a in runner.argvs if "crictl" in a and "pull" in a]
    assert not kindimages.Path(archive).parent.exists()  # the temporary folder is gone


def test_when_loading_fails_both_ways_the_node_pulls_and_a_failed_pull_is_one_line():
    runner = nodes_missing(FakeRunner(), {WORKERS[0]: f"{ENVOY}\n"})
    runner.on("kind", "load", rc=1, stderr="ERROR: failed to load image")
    runner.on(*PLATFORM, ENVOY, stdout="linux/amd64\n")
    runner.on("docker", "image", "save", rc=1, stderr='unknown flag: --platform')  # Docker before 28
    runner.on("crictl", "pull", rc=1, stderr="toomanyrequests: You have reached your pull rate limit")
    said = []
    with pytest.raises(MeshlabError, match=f"could not pull {ENVOY} into {WORKERS[0]}: toomanyrequests"):
        backend(runner, said).apply(workload(ENVOY, PYTHON))
    assert any("could not load" in m and "unknown flag: --platform" in m for m in said)
    assert not [a for a in runner.argvs if a[-3:] == ["apply", "-f", "-"]]


def test_nodes_that_have_every_image_need_nothing():
    runner = nodes_missing(FakeRunner(), {})
    backend(runner, []).apply(workload(ENVOY, PYTHON))
    assert not [a for a in runner.argvs if a[:2] in (["docker", "pull"], ["kind", "load"]) or "crictl" in a]


def test_up_loads_the_edges_images_onto_the_edge_node_before_installing_the_edge():
    runner = FakeRunner().on("docker", "inspect", stdout="cp-1\n")
    runner.on("docker", "exec", f"{CLUSTER}-control-plane", "sh", "-c", stdout="\n".join(edge.IMAGES) + "\n")
    backend(runner, []).up(nodes=2)
    rollout = index(runner, "kubectl", "--context", f"kind-{CLUSTER}", "-n", "meshlab-system", "rollout")
    for image in edge.IMAGES:  # the controller's python and the edge's Envoy
        load = ["kind", "load", "docker-image", image, "--name", CLUSTER, "--nodes", f"{CLUSTER}-control-plane"]
        assert runner.argvs.index(load) < rollout


def test_install_mesh_loads_istios_images_into_the_workers():
    runner = nodes_missing(FakeRunner(), {w: " ".join(istio.images()) for w in WORKERS})
    runner.on("get", "deployment", "istiod", stdout=deployment("istiod", "istio-system", istio.images()[0]))
    backend(runner, []).install_mesh()
    assert [a[3] for a in runner.argvs if a[:2] == ["kind", "load"]] == istio.images()


# ---- doctor: what a first run downloads -------------------------------------------------------


def test_the_table_knows_every_image_the_course_runs_and_reads_references():
    rows = kindimages.needed()
    assert [r.image for r in rows] == [kindimages.NODE_IMAGE, PYTHON, ENVOY, *istio.images()]
    assert all(r.approx_mib for r in rows)  # every image the course runs has a documented size
    by_image = {r.image: kindimages.stage_range(r.stages) for r in rows}
    assert by_image[ENVOY] == by_image[PYTHON] == "0-6"  # the edge runs both in every stage
    assert by_image[istio.images()[1]] == "5-6"
    assert kindimages.repository(f"docker.io/istio/proxyv2:{istio.VERSION}") == "istio/proxyv2"
    assert kindimages.repository("docker.io/library/python:3.12-slim@sha256:abc") == "python"
    assert kindimages.repository("localhost:5000/envoyproxy/envoy") == "localhost:5000/envoyproxy/envoy"
    assert kindimages.approx_mib("registry.example/other:1") is None
    assert kindimages.stage_range([6, 0, 1, 2, 4]) == "0-2, 4, 6"


def test_doctor_lists_downloads_with_approximate_sizes_without_docker():
    runner = FakeRunner()
    lines = doctor.download_lines(runner, docker=False)
    assert runner.calls == []  # no engine: nothing asked
    assert "kind then loads it into every new cluster" in lines[0]
    row = next(line for line in lines if line.strip().startswith(ENVOY))
    assert row.split()[1:] == ["0-6", f"~{kindimages.APPROX_MIB['envoyproxy/envoy']}", "MiB"]  # the edge: every stage
    total = sum(kindimages.approx_mib(r.image) for r in kindimages.needed())
    early = sum(kindimages.approx_mib(r.image) for r in kindimages.needed() if min(r.stages) < 5)
    assert lines[-1].strip() == (f"still to download: about {total} MiB for the whole course, {early} MiB for stages 0-4 "
                                 "(~: approximate compressed sizes)")
    assert len(lines) == 2 + len(kindimages.needed()) + 1


def test_doctor_prefers_the_real_size_of_images_docker_has():
    runner = FakeRunner().on("docker", "image", "inspect", "--format", "{{.Size}}", rc=1, stderr="No such image")
    runner.on("docker", "image", "inspect", "--format", "{{.Size}}", PYTHON, stdout=str(131 * 2**20))
    runner.on("docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "kindest/node", stdout="kindest/node:v1.35.0\n")
    runner.on("docker", "image", "inspect", "--format", "{{.Size}}", "kindest/node:v1.35.0", stdout=str(1024 * 2**20))
    lines = doctor.download_lines(runner, docker=True)
    assert next(line for line in lines if PYTHON in line).endswith("here already (131 MiB on disk)")
    assert next(line for line in lines if "kindest/node" in line).endswith("here already (1024 MiB on disk)")
    left = sum(kindimages.approx_mib(r.image) for r in kindimages.needed() if r.image not in (PYTHON, "kindest/node"))
    assert f"about {left} MiB for the whole course" in lines[-1]
    everything = FakeRunner().on("docker", "image", "inspect", "--format", "{{.Size}}", stdout="1048576")
    everything.on("docker", "image", "ls", stdout="kindest/node:v1.35.0\n")
    assert doctor.download_lines(everything, docker=True)[-1].strip() == "still to download: nothing, Docker has every image"
