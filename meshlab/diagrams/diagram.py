"""A renderable diagram: SVG in notebooks (and nbval, static HTML), plain text anywhere else."""

from __future__ import annotations

from meshlab.backends.base import MeshlabError
from meshlab.diagrams.dot import to_dot
from meshlab.diagrams.facts import from_lab
from meshlab.diagrams.labels import along_edges
from meshlab.diagrams.model import Topology
from meshlab.diagrams.render import render_svg
from meshlab.diagrams.schematic import from_stage
from meshlab.diagrams.text import to_text


class Diagram:
    """A topology drawn with Graphviz; displays itself in Jupyter as SVG with a text fallback."""

    def __init__(self, topology: Topology, renderer: str | None = None):
        self.topology = topology
        self.renderer = renderer
        self._svg: str | None = None

    @property
    def dot(self) -> str:
        """The DOT source."""
        return to_dot(self.topology)

    @property
    def svg(self) -> str:
        """The SVG document (rendered once), each edge's label beside its own edge."""
        if self._svg is None:
            self._svg = along_edges(render_svg(self.dot, self.renderer))
        return self._svg

    @property
    def text(self) -> str:
        """The plain-text form."""
        return to_text(self.topology)

    def save(self, path) -> str:
        """Write the SVG to path; return the path."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.svg)
        return str(path)

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {"text/plain": self.text}
        try:
            bundle["image/svg+xml"] = self.svg
        except MeshlabError as exc:
            bundle["text/plain"] += f"\n(diagram not drawn: {exc})"
        return bundle

    def __repr__(self) -> str:
        return f"<Diagram {self.topology.title!r}>"


def stage_diagram(stage, renderer: str | None = None) -> Diagram:
    """The schematic diagram of a stage (number or key); needs no cluster."""
    return Diagram(from_stage(stage), renderer)


def lab_diagram(lab, traffic=None, renderer: str | None = None) -> Diagram:
    """A running lab as it is now, with the edges of a traffic run."""
    return Diagram(from_lab(lab, traffic), renderer)
