"""Stage 5 on a real kind cluster with real Istio: injected sidecars carry all traffic and stamp their hops, a
VirtualService shifts it, STRICT mTLS refuses a plaintext client, and istiod can go down without breaking traffic.

Opt-in: `.venv/bin/python -m pytest -m kind tests/kind/test_kind_stage5.py` (needs Docker running, kind, kubectl
and istioctl of the pinned Istio version; the first run pulls the node, Istio, python and Envoy images).
"""

from __future__ import annotations

import os
import time

import pytest

import meshlab
from meshlab import settle
from meshlab.stages import controlplane
from meshlab.backends import istio
from meshlab.backends.kind import KindBackend
from meshlab.backends.kubectl import Runner
from traces import east_west

pytestmark = [pytest.mark.kind, pytest.mark.timeout(3600)]
N = 200
SHIFT = controlplane.subsets_yaml() + "---\n" + controlplane.split_yaml({"v3": 100})
STRICT = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews-strict}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: STRICT}
"""
# A client outside the mesh (no sidecar, no certificate): prints the HTTP status, or the error it got.
PLAINTEXT_CLIENT = ("import urllib.request as u\ntry:\n print('status', u.urlopen('http://reviews:9080/', timeout=10).status)\n"
                    "except Exception as exc:\n print('error', type(exc).__name__, exc)")


@pytest.fixture(scope="module")
def lab():
    found = KindBackend.availability()
    if not found.ok:
        pytest.skip(f"kind backend not available here: missing {', '.join(found.missing)}")
    version = istio.client_version(Runner())
    if not istio.version_ok(version):
        why = f"stage 5 on kind needs istioctl {istio.VERSION} (found: {version or 'none'}); {istio.download_hint()}"
        (pytest.fail if os.environ.get("MESHLAB_REQUIRE_KIND") == "1" else pytest.skip)(why)
    lab = meshlab.Lab("kind-stage5", backend="kind")
    try:
        lab.up(stage=5, wait=900, quiet=True)
        assert settle.wait_serving(lab.url, timeout=180), "the edge never served stage 5"
        yield lab
    finally:
        lab.down()


def until(check, wait: float = 60.0, every: float = 2.0):
    """check() until it returns something true, or its last answer after `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(every)


def plaintext_call(lab) -> str:
    """What a pod outside the mesh gets from http://reviews:9080/ (a throwaway pod, injection opted out)."""
    result = lab.backend.kubectl.call(
        "run", f"plaintext-{time.monotonic_ns() % 100000}", "--rm", "-i", "--restart=Never", "--quiet",
        "--image=python:3.12-slim", "--labels=sidecar.istio.io/inject=false", "--", "python", "-c", PLAINTEXT_CLIENT,
        namespace="default", timeout=240)
    return result.stdout.strip() or result.stderr.strip()


def test_istio_runs_and_every_shop_pod_has_an_istio_sidecar(lab):
    assert [p for p in lab.pods() if p.labels.get("app") == "istiod" and p.ready], "istiod is not running"
    apps = [p for p in lab.pods() if p.labels.get("version")]
    sidecars = {p.pod for p in lab.proxies() if p.role == "sidecar" and p.name.endswith("/istio-proxy")}
    assert apps and {p.name for p in apps} == sidecars
    status = lab.proxy_status()
    assert len(status) == len(apps) and all(row.state == "SYNCED" for row in status), repr(status)


def test_200_requests_succeed_and_every_call_passes_both_sidecars(lab):
    result = lab.traffic(n=N)
    assert result.ok == N, str(result)
    calls = east_west(result)
    assert {(a["service"], b["service"]) for a, _, b in calls} == {
        ("frontend", "catalog"), ("frontend", "reviews"), ("reviews", "ratings")}
    for caller, hops, callee in calls:
        assert [(h["role"], h["name"], h.get("dir")) for h in hops] == [
            ("sidecar", caller["pod"], "out"), ("sidecar", callee["pod"], "in")], (caller, callee)
        assert hops[0]["node"] == caller["node"] and hops[1]["node"] == callee["node"]
        assert hops[1]["peer"] == f"spiffe://cluster.local/ns/default/sa/shop-{caller['service']}"  # auto mTLS


def test_a_virtualservice_shifts_reviews_to_v3(lab):
    lab.apply(SHIFT, "shift")
    try:
        def all_v3():
            versions = {b["version"] for _, _, b in east_west(lab.traffic(n=50)) if b["service"] == "reviews"}
            return versions == {"v3"}
        assert until(all_v3), "reviews traffic did not move to v3 within 60s"
    finally:
        lab.delete(SHIFT)


def test_strict_mtls_refuses_a_plaintext_client(lab):
    assert plaintext_call(lab).startswith("status 200")  # PERMISSIVE (the default) accepts it
    lab.apply(STRICT, "strict")
    try:
        assert until(lambda: plaintext_call(lab).startswith("error"), wait=90), "STRICT did not refuse plaintext"
        assert lab.call("frontend", "http://reviews:9080/").ok  # a meshed caller still gets through, with mTLS
        assert lab.traffic(n=50).ok == 50
    finally:
        lab.delete(STRICT)


def test_traffic_keeps_flowing_while_istiod_is_down(lab):
    assert lab.kill(pod="istiod")
    try:
        assert until(lambda: not [p for p in lab.pods() if p.labels.get("app") == "istiod"], wait=90)
        assert lab.traffic(n=50).ok == 50  # sidecars keep their last config
    finally:
        lab.restore()
    assert [p for p in lab.pods() if p.labels.get("app") == "istiod" and p.ready]


def test_restart_gives_new_pods_that_join_the_mesh(lab):
    new = lab.restart("deployment/ratings-v1", timeout=180)
    assert new and all(n.startswith("ratings-v1-") for n in new)
    sidecars = {p.pod for p in lab.proxies() if p.role == "sidecar"}
    assert set(new) <= sidecars


def test_down_deletes_the_stages_cluster(lab):
    lab.down()
    assert "meshlab-kind-stage5" not in lab.backend.kind_clusters()
    lab.down()  # idempotent
