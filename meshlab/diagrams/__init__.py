"""Topology diagrams of each stage and of a running lab: model -> DOT -> SVG."""

from meshlab.diagrams.diagram import Diagram, lab_diagram, stage_diagram
from meshlab.diagrams.dot import to_dot
from meshlab.diagrams.facts import from_facts, from_lab
from meshlab.diagrams.model import CLIENT, Edge, Node, Pod, Proxy, Topology
from meshlab.diagrams.observed import add_traffic
from meshlab.diagrams.render import render_svg, renderer_command
from meshlab.diagrams.schematic import from_stage
from meshlab.diagrams.text import to_text

__all__ = [
    "CLIENT", "Diagram", "Edge", "Node", "Pod", "Proxy", "Topology", "add_traffic", "from_facts",
    "from_lab", "from_stage", "lab_diagram", "render_svg", "renderer_command", "stage_diagram",
    "to_dot", "to_text",
]
