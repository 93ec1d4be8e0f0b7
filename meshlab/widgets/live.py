"""LiveView: send traffic to a running lab, break it, restore it, and watch the diagram follow."""

from __future__ import annotations

import html
import inspect

import ipywidgets as widgets

from meshlab.diagrams import Diagram, from_facts, to_text
from meshlab.diagrams.observed import as_dict
from meshlab.widgets import summary
from meshlab.widgets.common import error_html, mimebundle, svg_html
from meshlab.widgets.worker import Worker


def kill_options(topo) -> list[tuple[str, tuple]]:
    """What can be killed: (label, (kind, name)) for every pod, node and proxy; in a lab of several clusters
    (label, (kind, name, cluster)) naming the cluster of each, and a whole-cluster choice per cluster."""
    targets = [("pod", p.name, p.cluster, "") for p in topo.pods]
    targets += [("pod", p.pod, p.cluster, "") for p in topo.proxies if p.role != "sidecar" and p.pod]
    targets += [("node", n.name, n.cluster, "") for n in topo.nodes]
    targets += [("proxy", p.name, p.cluster, f" ({p.role})") for p in topo.proxies]
    clusters = [c for c in topo.clusters() if c]
    if not clusters:
        return list(dict.fromkeys((f"{kind} {name}{role}", (kind, name)) for kind, name, _, role in targets))
    options = [(f"{kind} {name}{role}{located(c)}", (kind, name, c)) for kind, name, c, role in targets]
    options += [(f"whole cluster {c} (every node)", ("cluster", c, c)) for c in clusters]
    return list(dict.fromkeys(options))


def located(cluster: str) -> str:
    """' in cluster-2' for a label, or '' for what runs in no cluster (the legacy host)."""
    return f" in {cluster}" if cluster else ""


def quiet_kwargs(fn) -> dict:
    """progress=False when fn accepts it, so no progress bar prints from the worker thread."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return {}
    accepts = any(p.name == "progress" or p.kind is p.VAR_KEYWORD for p in params)
    return {"progress": False} if accepts else {}


class LiveView(widgets.VBox):
    """Drive a running lab (pods/nodes/proxies/traffic/kill/inject/restore) and watch it."""

    def __init__(self, lab, requests: int = 100, renderer: str | None = None, **kwargs):
        self.lab = lab
        self.renderer = renderer
        self.traffic: dict = {}
        self.faults: list[str] = []
        self.topology = None
        self.rows: list[tuple[str, str]] = []
        self.call_table: list[tuple[str, ...]] = []
        self._svg = ""
        self._stale = False
        self.requests = widgets.BoundedIntText(value=requests, min=1, max=100_000, description="Requests",
                                               layout=widgets.Layout(width="180px"))
        self.send_button = widgets.Button(description="Send requests", button_style="primary", icon="paper-plane")
        self.kill_target = widgets.Dropdown(description="Kill", layout=widgets.Layout(width="320px"))
        self.kill_button = widgets.Button(description="Kill", button_style="danger", icon="times")
        self.inject_service = widgets.Dropdown(description="Service", layout=widgets.Layout(width="220px"))
        self.error_rate = widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="Errors",
                                              readout_format=".0%", continuous_update=False)
        self.inject_button = widgets.Button(description="Inject errors", button_style="warning", icon="bolt")
        self.restore_button = widgets.Button(description="Restore", button_style="success", icon="undo")
        self.status = widgets.HTML()
        self.diagram = widgets.HTML()
        self.table = widgets.HTML()
        self._worker = Worker(self._set_busy, self._done)
        super().__init__([
            widgets.HBox([self.requests, self.send_button, self.restore_button]),
            widgets.HBox([self.kill_target, self.kill_button]),
            widgets.HBox([self.inject_service, self.error_rate, self.inject_button]),
            self.status, self.diagram, self.table], **kwargs)
        self.send_button.on_click(lambda _: self.send())
        self.kill_button.on_click(lambda _: self.kill(*(self.kill_target.value or (None, None))))
        self.inject_button.on_click(lambda _: self.inject(self.inject_service.value, self.error_rate.value))
        self.restore_button.on_click(lambda _: self.restore())
        try:
            self._refresh()
            self.status.value = "Ready: send some requests."
        except Exception as exc:  # a lab that cannot answer yet still gets a view
            self.status.value = error_html(f"could not read the lab: {exc}")

    # ---- actions (each runs in the worker thread) -------------------------------------------
    def send(self, n: int | None = None) -> bool:
        """Send n requests (default: the Requests box) and redraw with the paths they took."""
        count = int(n or self.requests.value)
        return self._worker.start(f"send {count} requests", lambda: self._send(count))

    def kill(self, kind: str | None, name: str | None, cluster: str | None = None) -> bool:
        """Kill a pod, node or proxy by name (in `cluster`, for a lab of several), or a whole cluster (kind
        "cluster"); it stays down until restore()."""
        if kind not in ("pod", "node", "proxy", "cluster") or not name:
            self.status.value = error_html("choose something to kill first")
            return False
        where = {"cluster": cluster} if cluster else {}
        target = {"cluster": name} if kind == "cluster" else {kind: name, **where}
        what = f"cluster {name}" if kind == "cluster" else f"{kind} {name}{located(cluster or '')}"
        return self._worker.start(f"kill {what}", lambda: self._fault(f"killed {what}", lambda: self.lab.kill(**target)))

    def inject(self, service: str | None, errors: float = 0.5) -> bool:
        """Make a share of a service's requests fail."""
        if not service:
            self.status.value = error_html("choose a service first")
            return False
        return self._worker.start(f"inject {errors:.0%} errors into {service}", lambda: self._fault(
            f"{service}: {errors:.0%} errors injected", lambda: self.lab.inject(service, errors=errors)))

    def restore(self) -> bool:
        """Undo every kill and injected fault."""
        return self._worker.start("restore", self._restore)

    def refresh(self) -> bool:
        """Re-read the lab's pods, nodes and proxies."""
        return self._worker.start("refresh", self._refresh)

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until the running action is done (for scripts and tests)."""
        return self._worker.wait(timeout)

    @property
    def busy(self) -> bool:
        """Whether an action is running."""
        return self._worker.busy

    @property
    def buttons(self) -> list[widgets.Button]:
        """Every button (disabled while busy)."""
        return [self.send_button, self.kill_button, self.inject_button, self.restore_button]

    @property
    def svg(self) -> str:
        """The SVG document of the current diagram."""
        return self._svg

    @property
    def text(self) -> str:
        """The view as plain text (the headless fallback)."""
        parts = [summary.table_text(self.rows, self.call_table)]
        if self.topology is not None:
            parts.append(to_text(self.topology))
        return "\n".join(parts)

    # ---- inside the worker ------------------------------------------------------------------
    def _send(self, n: int) -> None:
        result = self.lab.traffic(n=n, **quiet_kwargs(self.lab.traffic))
        self.traffic = as_dict(result)
        self._stale = False
        self._refresh()

    def _fault(self, note: str, action) -> None:
        action()
        self.faults.append(note)
        self._stale = bool(self.traffic)
        self._refresh()

    def _restore(self) -> None:
        self.lab.restore()
        self.faults.clear()
        self._stale = bool(self.traffic)
        self._refresh()

    def _refresh(self) -> None:
        """Re-read the lab and redraw the diagram and the table (only widget values change)."""
        topo = from_facts(self.lab.pods(), self.lab.nodes(), self.lab.proxies(), self.traffic or None,
                          title="Live lab" + (" (edges: the run before the last change)" if self._stale else ""))
        self.topology = topo
        self._update_choices(topo)
        self.rows = summary.traffic_rows(self.traffic) + summary.health_rows(topo) + \
            [("Faults", "; ".join(self.faults) or "none")]
        self.call_table = summary.call_rows(self.traffic)
        self.table.value = summary.table_html(self.rows, self.call_table)
        diagram = Diagram(topo, self.renderer)
        try:
            self._svg = diagram.svg
            self.diagram.value = svg_html(self._svg)
        except Exception as exc:
            self._svg = ""
            self.diagram.value = error_html(f"diagram not drawn: {exc}") + f"<pre>{html.escape(diagram.text)}</pre>"

    def _update_choices(self, topo) -> None:
        """Kill targets and services from the lab as it is now, keeping the current choices."""
        keep_kill, keep_service = self.kill_target.value, self.inject_service.value
        options = kill_options(topo)
        self.kill_target.options = options
        values = [v for _, v in options]
        if values:  # a choice is always made, so the buttons work at once
            self.kill_target.value = keep_kill if keep_kill in values else values[0]
        services = list(topo.services)
        self.inject_service.options = services
        if services:
            self.inject_service.value = keep_service if keep_service in services else services[0]

    def _set_busy(self, busy: bool, label: str = "") -> None:
        """Disable every control while an action runs."""
        for control in self.buttons + [self.kill_target, self.inject_service, self.requests, self.error_rate]:
            control.disabled = busy
        if busy:
            self.status.value = f"<i>{html.escape(label)}…</i>"

    def _done(self, label: str, error: Exception | None) -> None:
        """Say how the action ended."""
        self.status.value = error_html(f"{label} failed: {error}") if error else f"Done: {html.escape(label)}."

    def _repr_mimebundle_(self, **kwargs):
        return mimebundle(super()._repr_mimebundle_(**kwargs), self.text, self._svg)
