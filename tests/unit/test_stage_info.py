"""The stages as data: lookup, the seed's names, trade-offs, and schematics that can be drawn."""

import pytest

from meshlab.stages import info

SEED_NAMES = {
    1: "Ingress或边缘代理",
    2: "路由器网格",
    3: "Proxy per Node",
    4: "Sidecar代理/Fabric模型",
    5: "Sidecar代理/控制平面",
    6: "多集群部署和扩展",
}


def test_seven_stages_in_order_with_their_keys():
    assert [s.number for s in info.STAGES] == list(range(7))
    assert info.keys() == ["app", "edge", "router", "per-node", "sidecar", "control-plane", "multicluster"]


@pytest.mark.parametrize("ref", [3, "3", " 3 ", "per-node", "PER-NODE"])
def test_get_by_number_numeric_string_or_key(ref):
    assert info.get(ref).number == 3


def test_get_passes_a_stage_through_and_rejects_unknowns():
    assert info.get(info.STAGES[5]) is info.STAGES[5]
    for bad in (7, -1, "mesh", ""):
        with pytest.raises(KeyError, match="stages are"):
            info.get(bad)


def test_seed_names_come_from_the_seed_chapter():
    for number, name in SEED_NAMES.items():
        assert info.get(number).seed_name == name
    assert info.get(0).seed_name  # the seed's "client libraries" architecture before a mesh


@pytest.mark.parametrize("stage", info.STAGES, ids=lambda s: s.key)
def test_every_stage_is_fully_described(stage):
    for text in (stage.title, stage.summary, stage.proxies_where, stage.managed_by, stage.blast_radius):
        assert text.strip()
    assert stage.k8s_objects
    assert len(stage.tradeoffs) >= 3
    assert stage.label.startswith(f"Stage {stage.number} · {stage.title}")


def test_trade_offs_cover_resources_blast_radius_and_config_burden():
    text = " ".join(" ".join(s.tradeoffs) + s.blast_radius for s in info.STAGES).lower()
    for theme in ("resources", "fail", "control", "config"):
        assert theme in text


def _roles(stage):
    return [p.role for p in info.get(stage).schematic.parts if p.role]


def test_schematics_put_proxies_where_the_stage_says():
    assert _roles(0) == []
    assert _roles(1) == ["edge"]
    assert "router" in _roles(2)
    nodes = {p.node for p in info.get(3).schematic.parts}
    assert _roles(3).count("node") == len(nodes)
    for stage in (4, 5, 6):
        apps = [p for p in info.get(stage).schematic.parts if not p.role and p.cluster]  # stage 6: not the legacy host
        assert apps and all(p.sidecar for p in apps)
    assert "control-plane" in _roles(5) and info.get(5).schematic.config
    assert not info.get(4).schematic.config
    six = info.get(6).schematic
    assert {p.cluster for p in six.parts} == {"cluster-1", "cluster-2", ""}  # "": payments, outside both
    assert _roles(6).count("gateway") == 2
    where = {p.service: set() for p in six.parts if p.service}
    for part in six.parts:
        if part.service:
            where[part.service].add(part.cluster)
    assert where["frontend"] == where["catalog"] == {"cluster-1"}
    assert where["reviews"] == where["ratings"] == {"cluster-1", "cluster-2"} and where["payments"] == {""}


@pytest.mark.parametrize("stage", info.STAGES, ids=lambda s: s.key)
def test_schematic_calls_name_known_parts(stage):
    names = {p.name for p in stage.schematic.parts} | {"client"}
    names |= {f"{p.cluster}/{p.name}" for p in stage.schematic.parts}  # stage 6: a name both clusters have
    names |= {f"{n}/sidecar" for p in stage.schematic.parts if p.sidecar for n in (p.name, f"{p.cluster}/{p.name}")}
    for call in stage.schematic.calls + stage.schematic.failover + stage.schematic.config:
        assert call[0] in names and call[1] in names, call
    assert stage.schematic.calls[0][0] == "client"
