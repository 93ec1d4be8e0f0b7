"""Table tests of the locality translators (Istio's loadbalancer package semantics)."""

from __future__ import annotations

import pytest

from meshlab.controlplane.model import Locality
from meshlab.controlplane.translate import locality

ME = Locality("region-1", "zone-1a", "")


@pytest.mark.parametrize("endpoint,expected", [
    (Locality("region-1", "zone-1a"), 0), (Locality("region-1", "zone-1a", "rack-2"), 1),
    (Locality("region-1", "zone-1b"), 2), (Locality("region-2", "zone-1a"), 3), (Locality(), 3),
])
def test_lb_priority(endpoint, expected):
    assert locality.lb_priority(ME, endpoint) == expected


@pytest.mark.parametrize("rule,expected", [
    ("region-1", True), ("region-1/zone-1a", True), ("region-1/zone-1a/*", True), ("region-1/*", True), ("*", True),
    ("region-1/zone-1b", False), ("region-2/*", False), ("region-1/zone-1a/rack-1", False),
])
def test_locality_match(rule, expected):
    assert locality.locality_match(ME, rule) is expected


R1A, R1B, R2, R3 = Locality("region-1", "zone-1a"), Locality("region-1", "zone-1b"), Locality("region-2"), Locality("region-3")


@pytest.mark.parametrize("localities,failover,expected", [
    ([R1A, R1B, R2, R3], None, [0, 1, 2, 2]),
    ([R1B, R2, R3], None, [0, 1, 1]),  # renumbered without gaps
    ([R1A, R2, R3], [{"from": "region-1", "to": "region-3"}], [0, 2, 1]),  # other regions than `to` drop below
    ([R1A, R2, R3], [{"from": "region-9", "to": "region-3"}], [0, 1, 1]),  # a failover for another region: ignored
    ([R2, R3], [{"from": "region-1", "to": "region-2"}], [0, 1]),
])
def test_failover_priorities(localities, failover, expected):
    assert locality.failover_priorities(ME, localities, failover) == expected


def group(region, zone, weights):
    return {"locality": {"region": region, "zone": zone},
            "lb_endpoints": [{"endpoint": {}, "load_balancing_weight": w} for w in weights]}


def test_distribute_weights_follow_istio():
    groups = [group("region-1", "zone-1a", [1]), group("region-1", "zone-1b", [1, 1]), group("region-2", "zone-2a", [3]),
              group("region-3", "", [1])]
    out = locality.distribute_weights(ME, groups, [{"from": "region-9/*", "to": {"region-9/*": 100}},
                                                   {"from": "region-1/zone-1a/*", "to": {"region-1/*": 40, "region-2/*": 60}}])
    assert [g.get("load_balancing_weight") for g in out] == [14, 27, 60, None]
    assert out[3]["lb_endpoints"] == [] and groups[3]["lb_endpoints"]  # unnamed localities emptied; input untouched
    assert locality.distribute_weights(ME, groups, [{"from": "region-2", "to": {"region-2": 100}}]) is None


@pytest.mark.parametrize("policy,expected", [
    ({}, False), ({"outlierDetection": {"consecutive5xxErrors": 1}}, True),
    ({"outlierDetection": {"consecutive5xxErrors": 1}, "loadBalancer": {"localityLbSetting": {"enabled": False}}}, False),
    ({"loadBalancer": {"localityLbSetting": {"enabled": True}}}, False),  # no ejection: Envoy never fails over
])
def test_locality_lb_in_effect(policy, expected):
    assert locality.locality_lb_in_effect(policy) is expected
    assert bool(locality.locality_lb_config(policy)) is expected


def test_apply_locality_lb_is_a_no_op_when_off_and_sets_priorities_when_on():
    groups = [group("region-1", "zone-1a", [1]), group("region-2", "zone-2a", [2])]
    assert locality.apply_locality_lb(ME, groups, {}) is groups
    out = locality.apply_locality_lb(ME, groups, {"outlierDetection": {"consecutive5xxErrors": 1}})
    assert [g.get("priority", 0) for g in out] == [0, 1]
