"""Edge labels (request counts on live diagrams, words on schematics) sit beside their own edge: nearer to it than
to any other edge, and no two labels on top of each other (Graphviz stacks a fan-out's labels in one column)."""

from __future__ import annotations

import math
import random
import re

import pytest

from meshlab import diagrams
from meshlab.diagrams import Diagram, labels, render

EDGE = re.compile(r'<g id="edge\d+" class="edge">.*?(?=<g id="(?:edge|node|clust)\d+" class=|</svg>)', re.S)
TEXT = re.compile(r'<text\b[^>]*\bx="(-?[\d.]+)"[^>]*\by="(-?[\d.]+)"[^>]*>(.*?)</text>', re.S)


def with_counts(stage) -> Diagram:
    """A stage's topology as a live view draws it after a traffic run: every call carries its count."""
    topo = diagrams.from_stage(stage)
    rng = random.Random(stage)
    for edge in topo.edges:
        if edge.kind == "call":
            edge.count, edge.p50_ms, edge.label = rng.randint(20, 200), rng.random() * 5, ""
    return Diagram(topo, "pure")


def label_sites(svg: str) -> list[tuple[tuple[float, float], list, tuple]]:
    """(label centre, its edge's sampled path, label box) of every labelled edge."""
    out = []
    for chunk in EDGE.findall(svg):
        texts = TEXT.findall(chunk)
        if not texts:
            continue
        x, y, text = float(texts[0][0]), float(texts[0][1]), texts[0][2]
        width = len(text) * 9 * labels.CHAR_WIDTH
        centre = (x, y - 9 * 0.35)
        path = labels._samples(re.search(r'<path\b[^>]*\bd="([^"]+)"', chunk).group(1))
        out.append((centre, path, (x - width / 2, centre[1] - 5.4, x + width / 2, centre[1] + 5.4)))
    return out


def misplaced(svg: str) -> list[str]:
    """Labels nearer another edge than their own, and pairs of labels that overlap."""
    sites = label_sites(svg)
    wrong = []
    for i, (centre, path, box) in enumerate(sites):
        mine = labels._distance(centre, path)
        if any(labels._distance(centre, other) < mine for j, (_, other, _) in enumerate(sites) if j != i):
            wrong.append(f"label at {centre} is nearer another edge than its own")
        wrong += [f"labels at {centre} and {other_centre} overlap" for other_centre, _, other_box in sites[i + 1:]
                  if labels._overlap(box, other_box)]
    return wrong


@pytest.fixture(scope="module", autouse=True)
def needs_a_renderer():
    if not render.pure_binary():
        pytest.skip("graphviz-pure is not installed")


def test_raw_graphviz_stacks_a_fan_outs_labels_in_one_column():
    """What the fix is for: without it, a node proxy's counts read as belonging to a neighbouring arrow."""
    raw = render.render_svg(with_counts("per-node").dot, "pure")
    assert misplaced(raw)


@pytest.mark.parametrize("stage", ["router", "per-node", "sidecar", "control-plane"])
def test_every_count_sits_beside_its_own_edge(stage):
    svg = with_counts(stage).svg
    assert label_sites(svg) and misplaced(svg) == []


def test_schematic_words_sit_beside_their_own_edge():
    svg = diagrams.stage_diagram("per-node", renderer="pure").svg
    assert [t for t in TEXT.findall(svg) if t[2] in ("in", "out")] and misplaced(svg) == []


def test_the_labels_of_graphviz_dot_output_move_too():
    """Graphviz dot wraps a label with a tooltip in its own anchor group; the label moves all the same."""
    svg = ('<svg><g id="graph0" class="graph"><g id="edge1" class="edge"><title>a&#45;&gt;b</title>\n'
           '<g id="a_edge1"><a xlink:title="5 req"><path fill="none" d="M0,-100C50,-100 100,-100 150,-100"/></a></g>\n'
           '<g id="a_edge1&#45;label"><a xlink:title="5 req"><text text-anchor="middle" x="75" y="-160" '
           'font-size="9.00">5 req</text></a></g>\n</g>\n</g></svg>')
    out = labels.along_edges(svg)
    x, y = (float(v) for v in re.search(r'x="([\d.-]+)" y="([\d.-]+)"', out).groups())
    assert math.isclose(x, 75, abs_tol=1) and -115 < y < -100  # just above the middle of its path
    assert out.replace(f'x="{x:.2f}" y="{y:.2f}"', 'x="75" y="-160"') == svg  # nothing else changed
