"""Widgets: the stage explorer with no cluster, and the live view driving a fake lab by button clicks."""

import html
import threading

import pytest

from meshlab.backends.base import ContainerInfo, NodeInfo, PodInfo, ProxyInfo
from meshlab.stages import info
from meshlab.widgets import LiveView, StageExplorer

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


# --- StageExplorer ---------------------------------------------------------------------------


def test_explorer_opens_on_stage_0_with_its_diagram():
    explorer = StageExplorer()
    assert explorer.stage == 0 and explorer.info.key == "app"
    assert "<svg" in explorer.svg and "<svg" in explorer.diagram.value
    assert info.get(0).seed_name in explorer.header.value
    assert explorer.prev_button.disabled and not explorer.next_button.disabled


def test_explorer_opens_on_a_chosen_stage():
    explorer = StageExplorer(stage=3)
    assert explorer.stage == 3
    assert "Proxy per Node" in explorer.header.value
    assert all(html.escape(t) in explorer.details.value for t in info.get(3).tradeoffs)
    assert StageExplorer(stage="multicluster").stage == 6


def test_buttons_step_through_every_stage_and_redraw():
    explorer = StageExplorer()
    seen = [explorer.svg]
    for expected in range(1, 7):
        explorer.next_button.click()
        assert explorer.stage == expected
        seen.append(explorer.svg)
    assert len(set(seen)) == 7
    assert explorer.next_button.disabled
    explorer.next_button.click()
    assert explorer.stage == 6
    explorer.prev_button.click()
    assert explorer.stage == 5 and "Sidecar代理/控制平面" in explorer.header.value


def test_slider_and_stage_attribute_move_together():
    explorer = StageExplorer()
    explorer.slider.value = 2
    assert explorer.stage == 2 and "router" in html.unescape(explorer.svg)
    explorer.stage = "sidecar"
    assert explorer.slider.value == 4
    explorer.go(99)
    assert explorer.stage == 6


def test_explorer_has_a_headless_fallback():
    bundle = StageExplorer(stage=2)._repr_mimebundle_()
    assert WIDGET_VIEW in bundle
    assert "<svg" in bundle["image/svg+xml"]
    assert bundle["text/plain"].startswith("Stage 2 · Router mesh (路由器网格)")
    assert "Trade-offs:" in bundle["text/plain"]


def test_explorer_uses_the_forced_renderer(monkeypatch):
    monkeypatch.setenv("MESHLAB_RENDERER", "pure")
    assert "graphviz-pure" in StageExplorer(stage=1).svg


# --- LiveView on a fake lab ------------------------------------------------------------------


class FakeLab:
    """A two-node stage-1 lab in memory; traffic follows what is killed or injected."""

    def __init__(self, gate=None, fail_on=None):
        self.gate, self.fail_on = gate, fail_on
        self.killed, self.injected, self.calls = set(), {}, []
        self.threads = set()

    def _note(self, what):
        self.calls.append(what)
        self.threads.add(threading.current_thread().name)
        if self.gate is not None and what[0] != "facts":
            assert self.gate.wait(10)
        if what[0] == self.fail_on:
            raise RuntimeError(f"{what[0]} broke")

    def _pod(self, name, app, version, node):
        up = name not in self.killed and node not in self.killed
        container = ContainerInfo("app", "python:3.12", "running" if up else "killed")
        return PodInfo(name, "default", node, "127.9.1.10", up, "Running" if up else "Failed",
                       {"app": app, "version": version}, [container])

    def pods(self):
        self._note(("facts",))
        return [self._pod("edge-1", "edge", "", "node-1"), self._pod("frontend-1", "frontend", "v1", "node-1"),
                self._pod("reviews-v1-1", "reviews", "v1", "node-2"), self._pod("ratings-1", "ratings", "v1", "node-2")]

    def nodes(self):
        return [NodeInfo(n, "127.9.1.1", n not in self.killed) for n in ("node-1", "node-2")]

    def proxies(self):
        state = "killed" if "edge-1" in self.killed else "running"
        return [ProxyInfo("edge-1", "edge", "edge-1", "node-1", state)]

    def traffic(self, n=100, progress=None):
        self._note(("traffic", n, progress))
        edge = {"kind": "proxy", "role": "edge", "name": "edge-1", "node": "node-1"}
        front = {"kind": "app", "service": "frontend", "version": "v1", "pod": "frontend-1", "node": "node-1"}
        reviews = {"kind": "app", "service": "reviews", "version": "v1", "pod": "reviews-v1-1", "node": "node-2"}
        bad = round(n * self.injected.get("reviews", 0.0))
        paths = [{"hops": [edge, front, reviews], "count": n - bad}]
        if bad:
            failing = [edge, front, reviews, {"kind": "error", "target": "reviews", "status": 500}]
            paths.append({"hops": failing, "count": bad})  # as the app reports its own injected fault
        return Result({"requests": n, "ok": n - bad, "failed": bad, "latency_ms": {"p50": 3.0, "p99": 9.0},
                       "paths": paths, "calls": {"frontend->reviews": {"total": n, "failed": bad}}})

    def kill(self, pod=None, node=None, proxy=None):
        self._note(("kill", pod, node, proxy))
        self.killed.add(pod or node or proxy)
        return [pod or node or proxy]

    def inject(self, service, errors=0.0):
        self._note(("inject", service, errors))
        self.injected[service] = errors
        return [service]

    def restore(self):
        self._note(("restore",))
        self.killed.clear()
        self.injected.clear()


class Result:
    def __init__(self, data):
        self.data = data

    def to_dict(self):
        return self.data


def _row(view, key):
    return dict(view.rows)[key]


def test_live_view_shows_the_lab_before_any_traffic():
    view = LiveView(FakeLab())
    assert "<svg" in view.svg and "frontend-1" in html.unescape(view.svg)
    assert _row(view, "Traffic") == "none sent yet"
    assert _row(view, "Pods up") == "3 of 3"
    assert ("pod frontend-1", ("pod", "frontend-1")) in view.kill_target.options
    assert list(view.inject_service.options) == ["frontend", "reviews", "ratings"]


def test_send_runs_in_a_worker_and_updates_diagram_and_table():
    lab = FakeLab()
    view = LiveView(lab, requests=40)
    before_svg, before_table = view.svg, view.table.value
    view.send_button.click()
    assert view.wait(10)
    assert ("traffic", 40, False) in lab.calls  # progress bars off: nothing prints from the worker
    assert any(name.startswith("meshlab-send") for name in lab.threads)
    assert view.svg != before_svg and "40 req" in html.unescape(view.svg)
    assert view.table.value != before_table
    assert _row(view, "Requests") == "40" and _row(view, "Succeeded") == "40 (100%)"
    assert view.call_table == [("frontend → reviews", "40", "0", "0%")]
    assert "Done: send 40 requests" in view.status.value


def test_kill_turns_the_part_red_and_is_listed_as_a_fault():
    lab = FakeLab()
    view = LiveView(lab)
    view.kill_target.value = ("pod", "reviews-v1-1")
    view.kill_button.click()
    assert view.wait(10)
    assert ("kill", "reviews-v1-1", None, None) in lab.calls
    assert "DOWN" in view.svg
    assert _row(view, "Pods up") == "2 of 3"
    assert _row(view, "Faults") == "killed pod reviews-v1-1"
    view.kill_target.value = ("node", "node-2")
    view.kill_button.click()
    assert view.wait(10)
    assert ("kill", None, "node-2", None) in lab.calls
    assert _row(view, "Nodes up") == "1 of 2"


def test_inject_then_send_shows_failed_calls_then_restore_clears():
    lab = FakeLab()
    view = LiveView(lab)
    view.inject_service.value = "reviews"
    view.error_rate.value = 0.25
    view.inject_button.click()
    assert view.wait(10)
    assert ("inject", "reviews", 0.25) in lab.calls
    assert _row(view, "Faults") == "reviews: 25% errors injected"
    view.send(100)
    assert view.wait(10)
    assert _row(view, "Failed") == "25"
    assert "100 req · 25% err" in html.unescape(view.svg)
    view.restore_button.click()
    assert view.wait(10)
    assert ("restore",) in lab.calls and _row(view, "Faults") == "none"
    assert "before the last change" in html.unescape(view.svg)


def test_buttons_are_disabled_while_busy_and_extra_clicks_are_ignored():
    gate = threading.Event()
    lab = FakeLab(gate=gate)
    view = LiveView(lab)
    view.send_button.click()
    assert view.busy
    assert all(b.disabled for b in view.buttons) and view.kill_target.disabled
    assert "send 100 requests" in view.status.value
    view.restore_button.click()  # ignored: one action at a time
    assert view.send() is False
    gate.set()
    assert view.wait(10)
    assert not any(b.disabled for b in view.buttons)
    assert [c[0] for c in lab.calls if c[0] != "facts"] == ["traffic"]


def test_a_failing_action_is_reported_in_the_widget_not_printed(capsys):
    lab = FakeLab(fail_on="traffic")
    view = LiveView(lab)
    view.send_button.click()
    assert view.wait(10)
    assert "send 100 requests failed: traffic broke" in view.status.value
    assert not any(b.disabled for b in view.buttons)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_kill_and_inject_need_a_choice():
    view = LiveView(FakeLab())
    assert view.kill(None, None) is False and "choose something" in view.status.value
    assert view.inject("", 0.5) is False and "choose a service" in view.status.value


def test_live_view_has_a_headless_fallback():
    view = LiveView(FakeLab())
    view.send(10)
    assert view.wait(10)
    bundle = view._repr_mimebundle_()
    assert WIDGET_VIEW in bundle and "<svg" in bundle["image/svg+xml"]
    assert "Requests: 10" in bundle["text/plain"]
    assert "frontend-1 -> reviews-v1-1  (10 req)" in bundle["text/plain"]


def test_a_lab_that_cannot_answer_still_gets_a_view():
    class Broken(FakeLab):
        def pods(self):
            raise ConnectionError("supervisor not running")

    view = LiveView(Broken())
    assert "could not read the lab: supervisor not running" in view.status.value


@pytest.mark.parametrize("signature, expected", [
    (lambda n=100, progress=None: None, {"progress": False}),
    (lambda n=100, **options: None, {"progress": False}),
    (lambda n=100: None, {}),
])
def test_progress_is_switched_off_only_where_accepted(signature, expected):
    from meshlab.widgets.live import quiet_kwargs

    assert quiet_kwargs(signature) == expected
