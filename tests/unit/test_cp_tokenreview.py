"""Proxies prove which pod they are: the token the runtime issued to the pod, presented on the ADS stream and
reviewed by the runtime (Kubernetes' TokenReview); the supervisor answers only its own user."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from meshlab.backends.local import envoy_patch, supervisor
from meshlab.backends.local.pods import Pod
from meshlab.backends.local.views import Views
from meshlab.controlplane import tokenreview

NODE = "sidecar~127.9.2.10~reviews-v1-abc.shop~shop.svc.cluster.local"
REVIEWS = {"namespace": "shop", "name": "reviews-v1-abc", "serviceAccount": "shop-reviews"}


@pytest.mark.parametrize("metadata, token", [
    ((("authorization", "Bearer abc"),), "abc"),
    ((("user-agent", "grpc"), ("Authorization", "Bearer x.y")), "x.y"),
    ((("authorization", "Basic abc"),), ""),
    ((), ""),
    (None, ""),
])
def test_bearer(metadata, token):
    assert tokenreview.bearer(metadata) == token


@pytest.mark.parametrize("review, why", [
    (REVIEWS, None),
    (None, "no valid pod token (authorization: Bearer)"),
    ({**REVIEWS, "name": "ratings-v1-xyz"}, "its token belongs to pod ratings-v1-xyz.shop, not reviews-v1-abc.shop"),
    ({**REVIEWS, "namespace": "default"}, "its token belongs to pod reviews-v1-abc.default, not reviews-v1-abc.shop"),
])
def test_refusal(review, why):
    assert tokenreview.refusal(review, NODE) == why


def test_a_node_id_that_names_no_pod_is_refused_whatever_the_token():
    assert tokenreview.refusal(REVIEWS, "made-up") is not None


def test_reviewer_asks_the_runtime_and_an_unreachable_runtime_reviews_nothing():
    calls = []

    def call(address, method, params, timeout):
        calls.append((address, method, params))
        return REVIEWS if params["token"] == "good" else None
    review = tokenreview.reviewer("@api", call=call)
    assert review("good") == REVIEWS and review("bad") is None
    assert calls[0] == ("@api", "tokenreview", {"token": "good"})

    def down(*args):
        raise ConnectionRefusedError("no supervisor")
    assert tokenreview.reviewer("@api", call=down)("good") is None


class Pods(Views):
    def __init__(self, pods):
        self.pods = {p.name: p for p in pods}


def make_pod(tmp_path: Path, name: str, account: str | None) -> Pod:
    spec = {"containers": [{"name": "app", "image": "python:3.12-slim"}]}
    if account:
        spec["serviceAccountName"] = account
    return Pod(name=name, namespace="shop", node="node-1", ip="127.9.1.10", host_ip="127.9.1.1", labels={},
               spec=spec, owner="Deployment/shop/x", template_hash="h", folder=tmp_path / name, dns=("127.9.0.2", 53))


def test_the_runtime_reviews_the_tokens_it_issued(tmp_path):
    a, b = make_pod(tmp_path, "reviews-v1-abc", "shop-reviews"), make_pod(tmp_path, "ratings-v1-xyz", None)
    assert a.token != b.token and len(a.token) >= 40
    runtime = Pods([a, b])
    assert runtime.review(a.token) == REVIEWS
    assert runtime.review(b.token) == {"namespace": "shop", "name": "ratings-v1-xyz", "serviceAccount": "default"}
    assert runtime.review("") is None and runtime.review(a.token[:-1]) is None


ADS_BOOTSTRAP = {"node": {"id": "n"}, "dynamic_resources": {"ads_config": {"api_type": "GRPC", "grpc_services": [
    {"envoy_grpc": {"cluster_name": "xds-grpc"}, "initial_metadata": [{"key": "authorization", "value": "old"},
                                                                      {"key": "x-extra", "value": "1"}]}]}}}


@pytest.mark.parametrize("config, metadata", [
    (ADS_BOOTSTRAP, [{"key": "x-extra", "value": "1"}, {"key": "authorization", "value": "Bearer T"}]),
    ({"node": {"id": "n"}, "dynamic_resources": {"ads_config": {"grpc_services": [
        {"envoy_grpc": {"cluster_name": "my-own-xds"}}]}}}, None),  # a learner's own ADS server gets no token
    ({"static_resources": {"listeners": []}}, None),
])
def test_with_token(config, metadata):
    out = envoy_patch.with_token(config, "T")
    if metadata is None:
        assert out == config
    else:
        assert out["dynamic_resources"]["ads_config"]["grpc_services"][0]["initial_metadata"] == metadata
        assert ADS_BOOTSTRAP["dynamic_resources"]["ads_config"]["grpc_services"][0]["initial_metadata"][0] == \
            {"key": "authorization", "value": "old"}  # the input is left as it was


class PeerOf:
    """A socket whose peer runs as `uid` (what SO_PEERCRED would report)."""

    def __init__(self, uid: int):
        self.uid = uid

    def getsockopt(self, level, option, size):
        assert (level, option) == (socket.SOL_SOCKET, socket.SO_PEERCRED)
        return struct.pack("3i", 1234, self.uid, self.uid)


def test_the_supervisor_answers_its_own_user_only(monkeypatch):
    left, right = socket.socketpair(socket.AF_UNIX)
    try:
        assert supervisor.same_user(left)  # the real kernel answer for a peer that is this process
    finally:
        left.close()
        right.close()
    monkeypatch.setattr(supervisor.os, "getuid", lambda: 1000)
    assert supervisor.same_user(PeerOf(1000)) and supervisor.same_user(PeerOf(0))
    assert not supervisor.same_user(PeerOf(1001)) and not supervisor.same_user(None)
