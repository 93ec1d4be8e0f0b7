"""Encoding a resource for ADS never changes it: one resource is shared by many sidecars' snapshots and their
streams encode it at the same time (protobuf's ParseDict deletes and restores each Any's @type as it reads)."""

from __future__ import annotations

import copy
import threading

from meshlab.controlplane import ads
from meshlab.controlplane.translate.common import PREVIOUS_HOSTS, ROUTE_CONFIGURATION

ROUTES = {"name": "9080", "virtual_hosts": [{"name": "reviews", "domains": ["*"], "routes": [
    {"match": {"prefix": "/"}, "route": {"cluster": "outbound|9080||reviews", "retry_policy": {
        "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                                  "typed_config": {"@type": PREVIOUS_HOSTS}}]}}}]}]}


def test_the_parser_never_gets_the_shared_resource_itself(monkeypatch):
    handed = []
    parse = ads.json_format.ParseDict
    monkeypatch.setattr(ads.json_format, "ParseDict", lambda value, message: handed.append(value) or parse(value, message))
    resource = copy.deepcopy(ROUTES)
    ads.to_any(ROUTE_CONFIGURATION, resource)
    assert handed and handed[0] is not resource and handed[0] == ROUTES  # a private copy: the parser may change it


def test_streams_encoding_one_shared_resource_at_once_all_get_the_typed_config():
    shared, packed, errors = copy.deepcopy(ROUTES), [], []

    def encode():
        try:
            for _ in range(200):
                packed.append(ads.to_any(ROUTE_CONFIGURATION, shared))
        except Exception as exc:  # what a racing parse raised
            errors.append(exc)
    threads = [threading.Thread(target=encode) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len({p.SerializeToString() for p in packed}) == 1
    assert PREVIOUS_HOSTS.rsplit("/", 1)[-1].encode() in packed[0].value
