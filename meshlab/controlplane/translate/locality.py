"""DestinationRule localityLbSetting -> EDS priorities and locality weights, as Istio's loadbalancer package."""

from __future__ import annotations

import math

from ..model import Locality

MESH_DEFAULT_ENABLED = True  # Istio's meshConfig.localityLbSetting.enabled defaults to true
FAILOVER_MISS = 4  # Istio's priority for other regions than a matching failover's `to`


def from_envoy(locality) -> Locality:
    """An Envoy core.Locality dict back to a Locality."""
    locality = locality or {}
    return Locality(locality.get("region") or "", locality.get("zone") or "", locality.get("sub_zone") or "")


def lb_priority(proxy: Locality, endpoint: Locality) -> int:
    """Istio's LbPriority: 0 same region/zone/subzone, 1 same region/zone, 2 same region, 3 elsewhere."""
    if proxy.region != endpoint.region:
        return 3
    if proxy.zone != endpoint.zone:
        return 2
    return 0 if proxy.subzone == endpoint.subzone else 1


def locality_match(locality: Locality, rule: str) -> bool:
    """Whether `region/zone/subzone` (`*` wildcards, missing parts match all) covers a locality (Istio's LocalityMatch)."""
    parts = (rule.split("/") + ["", "", ""])[:3]
    region, zone, subzone = parts
    return (region == "*" or region == locality.region) and zone in ("*", "", locality.zone) \
        and subzone in ("*", "", locality.subzone)


def locality_lb_in_effect(policy) -> bool:
    """Locality LB applies when the trafficPolicy has outlierDetection and localityLbSetting is not disabled."""
    setting = ((policy or {}).get("loadBalancer") or {}).get("localityLbSetting") or {}
    enabled = setting.get("enabled", MESH_DEFAULT_ENABLED)
    return bool((policy or {}).get("outlierDetection")) and enabled is not False


def compact(priorities: list[int]) -> list[int]:
    """Priorities renumbered 0..N without gaps, order kept (Envoy needs contiguous priorities)."""
    rank = {p: i for i, p in enumerate(sorted(set(priorities)))}
    return [rank[p] for p in priorities]


def failover_priorities(proxy: Locality, localities: list[Locality], failover) -> list[int]:
    """Istio's applyLocalityFailover: a priority per locality group, `failover[{from, to}]` by region."""
    out = []
    for endpoint in localities:
        priority = lb_priority(proxy, endpoint)
        if priority == 3:
            rule = next((f for f in failover or () if f.get("from") == proxy.region), None)
            if rule is not None and endpoint.region != rule.get("to"):
                priority = FAILOVER_MISS
        out.append(priority)
    return compact(out)


def group_weight(group: dict) -> int:
    """A locality group's weight: its own, else the sum of its endpoints' weights."""
    if group.get("load_balancing_weight"):
        return int(group["load_balancing_weight"])
    return sum(int(e.get("load_balancing_weight") or 1) for e in group.get("lb_endpoints") or ())


def distribute_weights(proxy: Locality, groups: list[dict], distribute) -> list[dict] | None:
    """Istio's applyLocalityWeights: the first `distribute` whose `from` covers the proxy; None when none does."""
    rule = next((d for d in distribute or () if locality_match(proxy, d.get("from") or "")), None)
    if rule is None:
        return None
    out = [dict(g) for g in groups]
    unmatched = set(range(len(out)))
    for target, share in (rule.get("to") or {}).items():
        chosen = [i for i in sorted(unmatched) if locality_match(from_envoy(out[i].get("locality")), target)]
        unmatched -= set(chosen)
        total = sum(group_weight(out[i]) for i in chosen)
        for i in chosen:
            weight = group_weight(out[i]) * int(share) / total if total else 0
            if weight > 0:
                out[i]["load_balancing_weight"] = math.ceil(weight)
    for i in unmatched:
        out[i]["lb_endpoints"] = []
    return out


def apply_locality_lb(proxy: Locality, groups: list[dict], policy) -> list[dict]:
    """EDS locality groups shaped by the trafficPolicy: distribute, else failover priorities; unchanged when off."""
    if not locality_lb_in_effect(policy):
        return groups
    setting = (policy.get("loadBalancer") or {}).get("localityLbSetting") or {}
    if setting.get("distribute"):
        return distribute_weights(proxy, groups, setting["distribute"]) or groups
    priorities = failover_priorities(proxy, [from_envoy(g.get("locality")) for g in groups], setting.get("failover"))
    out = []
    for group, priority in zip(groups, priorities):
        out.append({**group, "priority": priority} if priority else dict(group))
    return out


def locality_lb_config(policy) -> dict:
    """The cluster fields locality LB needs: locality_weighted_lb_config when it is in effect (as Istio)."""
    if not locality_lb_in_effect(policy):
        return {}
    return {"common_lb_config": {"locality_weighted_lb_config": {}}}
