"""StageExplorer: step through stages 0..6, each drawn from its schematic; no cluster needed."""

from __future__ import annotations

import html

import ipywidgets as widgets

from meshlab.backends.base import MeshlabError
from meshlab.diagrams import stage_diagram
from meshlab.stages import info
from meshlab.widgets.common import error_html, mimebundle, svg_html


def details_html(stage: info.StageInfo) -> str:
    """Summary, where the proxies sit, what manages them, blast radius and trade-offs."""
    esc = html.escape
    facts = [("Proxies", stage.proxies_where), ("Managed by", stage.managed_by),
             ("Kubernetes objects", ", ".join(stage.k8s_objects)), ("Blast radius of one failure", stage.blast_radius)]
    rows = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{esc(k)}</th>"
                   f"<td style='text-align:left'>{esc(v)}</td></tr>" for k, v in facts)
    trade = "".join(f"<li>{esc(t)}</li>" for t in stage.tradeoffs)
    return f"<p>{esc(stage.summary)}</p><table>{rows}</table><p><b>Trade-offs</b></p><ul>{trade}</ul>"


def details_text(stage: info.StageInfo) -> str:
    """The same as plain text."""
    lines = [stage.label, stage.summary, f"Proxies: {stage.proxies_where}", f"Managed by: {stage.managed_by}",
             f"Kubernetes objects: {', '.join(stage.k8s_objects)}", f"Blast radius: {stage.blast_radius}",
             "Trade-offs:"] + [f"  - {t}" for t in stage.tradeoffs]
    return "\n".join(lines)


class StageExplorer(widgets.VBox):
    """Step through the stages: diagram, seed name, summary and trade-offs of each."""

    def __init__(self, stage: int | str = 0, renderer: str | None = None, **kwargs):
        self.renderer = renderer
        self._svg = ""
        self.prev_button = widgets.Button(description="◀ Previous", tooltip="previous stage",
                                          layout=widgets.Layout(width="auto"))
        self.next_button = widgets.Button(description="Next ▶", tooltip="next stage",
                                          layout=widgets.Layout(width="auto"))
        self.slider = widgets.IntSlider(value=info.get(stage).number, min=0, max=len(info.STAGES) - 1,
                                        description="Stage", continuous_update=False)
        self.header = widgets.HTML()
        self.diagram = widgets.HTML()
        self.details = widgets.HTML()
        super().__init__([widgets.HBox([self.prev_button, self.slider, self.next_button]),
                          self.header, self.diagram, self.details], **kwargs)
        self.prev_button.on_click(lambda _: self.go(self.stage - 1))
        self.next_button.on_click(lambda _: self.go(self.stage + 1))
        self.slider.observe(lambda change: self._show(change["new"]), names="value")
        self._show(self.slider.value)

    @property
    def stage(self) -> int:
        """The number of the stage shown."""
        return self.slider.value

    @stage.setter
    def stage(self, value: int | str) -> None:
        self.go(value)

    @property
    def info(self) -> info.StageInfo:
        """The StageInfo shown."""
        return info.get(self.stage)

    @property
    def svg(self) -> str:
        """The SVG document of the diagram shown ('' if it could not be drawn)."""
        return self._svg

    @property
    def text(self) -> str:
        """The stage shown, as plain text (the headless fallback)."""
        return details_text(self.info)

    def go(self, stage: int | str) -> None:
        """Show a stage by number or key; numbers beyond the ends stay at the ends."""
        if isinstance(stage, int):
            stage = min(max(stage, 0), len(info.STAGES) - 1)
        self.slider.value = info.get(stage).number

    def _show(self, number: int) -> None:
        """Draw one stage into the header, diagram and details."""
        stage = info.get(number)
        self.prev_button.disabled = number == 0
        self.next_button.disabled = number == len(info.STAGES) - 1
        self.header.value = (f"<h3 style='margin:0.3em 0'>Stage {stage.number} · {html.escape(stage.title)} "
                             f"<small>({html.escape(stage.seed_name)})</small></h3>")
        try:
            self._svg = stage_diagram(number, self.renderer).svg
            self.diagram.value = svg_html(self._svg)
        except MeshlabError as exc:
            self._svg = ""
            self.diagram.value = error_html(f"diagram not drawn: {exc}")
        self.details.value = details_html(stage)

    def _repr_mimebundle_(self, **kwargs):
        return mimebundle(super()._repr_mimebundle_(**kwargs), self.text, self._svg)
