"""Edge labels set on their own edges: Graphviz (dot and graphviz-pure alike) puts the labels of edges that span
the same ranks in one column, so a node proxy's fan-out gets a stack of counts that reads as belonging to any of
its arrows. Each label is moved beside the middle of its own path, slid along it where it would cover another."""

from __future__ import annotations

import math
import re

_ELEMENT = re.compile(r'(?=<g id="(?:edge|node|clust|graph)\d+" class=")')
_EDGE_START = re.compile(r'<g id="edge\d+" class="edge">')
_PATH = re.compile(r'<path\b[^>]*\bd="([^"]+)"')
_TEXT = re.compile(r'(<text\b[^>]*?\bx=")(-?[\d.]+)("[^>]*?\by=")(-?[\d.]+)("[^>]*>)(.*?)</text>', re.S)
_SIZE = re.compile(r'font-size="([\d.]+)"')
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")
SPOTS = (0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8, 0.12, 0.88)  # where along its path a label may sit, best first
SIDES = ("normal", "opposite", "up", "down", "right", "left")  # and on which side of it
CHAR_WIDTH = 0.55  # of the font size: a Helvetica average, enough to tell boxes apart
GAP = 2.0  # between the line and the label, in SVG units (points)


def along_edges(svg: str) -> str:
    """The SVG with every edge label beside its own edge's path: nearer to it than to any other edge, clear of
    the other labels, paths and nodes where there is room."""
    chunks = _ELEMENT.split(svg)
    edges = {i: _samples(m.group(1)) for i, c in enumerate(chunks)
             if _EDGE_START.match(c) and (m := _PATH.search(c))}
    nodes = [_bounds(c) for c in chunks if c.startswith('<g id="node')]
    nodes += [_text_box(c) for c in chunks if c.startswith('<g id="clust')]  # a box's title is in the way too
    placed: list[tuple[float, float, float, float]] = []
    bounds = {i: _box_of(samples) for i, samples in edges.items()}
    for i, samples in edges.items():
        others = [(bounds[j], other) for j, other in edges.items() if j != i]
        chunks[i] = _place(chunks[i], samples, others, [b for b in nodes if b], placed)
    return "".join(chunks)


def _place(chunk: str, samples, others, nodes, placed: list) -> str:
    """One edge's SVG with its label's text moved to the best spot beside its path (added to `placed`)."""
    texts = list(_TEXT.finditer(chunk))
    if not texts or len(samples) < 2:
        return chunk
    size = float((_SIZE.search(texts[0].group(0)) or [0, 9])[1])
    xs, ys = [float(t.group(2)) for t in texts], [float(t.group(4)) for t in texts]
    width = max(len(_plain(t.group(6))) for t in texts) * size * CHAR_WIDTH
    height = size * 1.2 * len(texts)
    old_x, old_y = sum(xs) / len(xs), (min(ys) + max(ys)) / 2 - size * 0.35  # the block's centre (baselines sit low)
    best, worst = None, math.inf
    for spot in SPOTS:
        for side in SIDES:
            box = _box_at(samples, spot, width, height, side)
            score = _conflicts(box, samples, others, nodes, placed)
            if score < worst:
                best, worst = box, score
            if score < 1:  # clear of everything: the first such spot, nearest the middle, wins
                break
        if worst < 1:
            break
    placed.append(best)
    dx, dy = (best[0] + best[2]) / 2 - old_x, (best[1] + best[3]) / 2 - old_y
    out, last = [], 0
    for t in texts:
        out += [chunk[last:t.start()], t.group(1), f"{float(t.group(2)) + dx:.2f}", t.group(3),
                f"{float(t.group(4)) + dy:.2f}", t.group(5), t.group(6), "</text>"]
        last = t.end()
    return "".join(out) + chunk[last:]


def _conflicts(box, own, others, nodes, placed) -> float:
    """How badly a label box sits: nearer another edge than its own (worst), on another label, on a node,
    crossed by another path; then how far from its own edge. `others`: (bounds, samples) of the other edges."""
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    mine = _distance(centre, own)
    score = 100 * any(_gap(centre, bounds) <= mine and _distance(centre, other) <= mine for bounds, other in others)
    score += 10 * sum(_overlap(box, other) for other in placed)
    score += 5 * sum(_overlap(box, node) for node in nodes)
    score += 20 * _crossed(box, own) + sum(_crossed(box, other) for bounds, other in others if _overlap(box, bounds))
    return score + mine / 1000


def _crossed(box, samples) -> bool:
    """True when the sampled path passes through the box (Liang-Barsky clipping of each segment near it)."""
    for (x0, y0), (x1, y1) in zip(samples, samples[1:]):
        if max(x0, x1) < box[0] or min(x0, x1) > box[2] or max(y0, y1) < box[1] or min(y0, y1) > box[3]:
            continue
        low, high, dx, dy = 0.0, 1.0, x1 - x0, y1 - y0
        for p, q in ((-dx, x0 - box[0]), (dx, box[2] - x0), (-dy, y0 - box[1]), (dy, box[3] - y0)):
            if p == 0:
                if q < 0:
                    break
                continue
            if p < 0:
                low = max(low, q / p)
            else:
                high = min(high, q / p)
        else:
            if low <= high:
                return True
    return False


def _gap(point, bounds) -> float:
    """From a point to a box (0 inside it): no point of what the box holds is nearer."""
    dx = max(bounds[0] - point[0], 0.0, point[0] - bounds[2])
    dy = max(bounds[1] - point[1], 0.0, point[1] - bounds[3])
    return math.hypot(dx, dy)


def _distance(point, samples) -> float:
    """From a point to a sampled path (the nearest of its segments)."""
    px, py = point
    best = math.inf
    for (x0, y0), (x1, y1) in zip(samples, samples[1:]):
        dx, dy = x1 - x0, y1 - y0
        t = ((px - x0) * dx + (py - y0) * dy) / ((dx * dx + dy * dy) or 1.0)
        t = 0.0 if t < 0 else 1.0 if t > 1 else t
        ex, ey = x0 + t * dx - px, y0 + t * dy - py
        best = min(best, ex * ex + ey * ey)
    return math.sqrt(best)


def _box_of(points) -> tuple[float, float, float, float]:
    """The bounding box of points."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    return min(xs), min(ys), max(xs), max(ys)


def _bounds(chunk: str):
    """The bounding box of a node's shapes (polygon points or path), or None."""
    numbers = [float(n) for shape in re.findall(r'\s(?:points|d)="([^"]+)"', chunk) for n in _NUMBER.findall(shape)]
    if len(numbers) < 4:
        return None
    xs, ys = numbers[0::2], numbers[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def _text_box(chunk: str):
    """The box of a cluster's title (its first text), or None."""
    text = _TEXT.search(chunk)
    if text is None:
        return None
    size = float((_SIZE.search(text.group(0)) or [0, 11])[1])
    x, y, width = float(text.group(2)), float(text.group(4)), len(_plain(text.group(6))) * size * CHAR_WIDTH
    anchor = re.search(r'text-anchor="(\w+)"', text.group(0))
    left = {"start": x, "end": x - width}.get(anchor.group(1) if anchor else "middle", x - width / 2)
    return left, y - size, left + width, y + size * 0.3


def _plain(text: str) -> str:
    """Label text without entities, for its width."""
    return re.sub(r"&[#\w]+;", "x", text)


def _samples(d: str, steps: int = 8) -> list[tuple[float, float]]:
    """Points along a Graphviz edge path: `M x,y C` then cubic Bezier segments of three points each."""
    numbers = [float(n) for n in _NUMBER.findall(d)]
    points = list(zip(numbers[0::2], numbers[1::2]))
    out = points[:1]
    for k in range(1, len(points) - 2, 3):
        p0, p1, p2, p3 = points[k - 1], points[k], points[k + 1], points[k + 2]
        for s in range(1, steps + 1):
            t = s / steps
            a, b, c, e = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3
            out.append((a * p0[0] + b * p1[0] + c * p2[0] + e * p3[0], a * p0[1] + b * p1[1] + c * p2[1] + e * p3[1]))
    return out


def _box_at(samples, spot: float, width: float, height: float, side: str = "normal") -> tuple[float, float, float, float]:
    """The label's box just clear of the path at `spot` of its length: on the side of its normal that points up
    (right of a steep path), the opposite one, or straight above, below, right or left of that point."""
    lengths = [0.0]
    for a, b in zip(samples, samples[1:]):
        lengths.append(lengths[-1] + math.dist(a, b))
    goal = lengths[-1] * spot
    i = next((j for j in range(1, len(lengths)) if lengths[j] >= goal), len(lengths) - 1)
    (x0, y0), (x1, y1) = samples[i - 1], samples[i]
    span = lengths[i] - lengths[i - 1] or 1.0
    f = (goal - lengths[i - 1]) / span
    x, y = x0 + (x1 - x0) * f, y0 + (y1 - y0) * f
    tx, ty = (x1 - x0) / span, (y1 - y0) / span
    nx, ny = -ty, tx  # a normal of the path
    if abs(ty) > 0.8:  # steep: beside it, to the right
        nx, ny = abs(nx) or 1.0, 0.0
    elif ny > 0:  # SVG y grows downwards: above means negative y
        nx, ny = -nx, -ny
    nx, ny = {"normal": (nx, ny), "opposite": (-nx, -ny), "up": (0.0, -1.0), "down": (0.0, 1.0),
              "right": (1.0, 0.0), "left": (-1.0, 0.0)}[side]
    reach = abs(nx) * width / 2 + abs(ny) * height / 2 + GAP  # from the line to the box's centre
    cx, cy = x + nx * reach, y + ny * reach
    return cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2


def _overlap(a, b) -> bool:
    """True when two boxes (x0, y0, x1, y1) overlap."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
