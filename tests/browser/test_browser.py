"""A real-browser test: JupyterLab in Debian's chromium, the widgets clicked as a learner would.

Lesson 00's StageExplorer steps to the next stage and its diagram changes; a Check button
shows its result and records progress that survives a kernel restart; a LiveView on a running
local lab sends traffic, kills a node and draws it red; shutting the kernel down leaves no
meshlab process behind. Screenshots go to test-output/screenshots/.
"""

from __future__ import annotations

import json
import re
import time

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

RED = "#cc0000"  # meshlab.diagrams.style.DOWN


def diagram_svg(box) -> str:
    """The outer HTML of the first SVG inside a widget box."""
    svg = box.locator("svg").first
    svg.wait_for()
    return svg.evaluate("e => e.outerHTML")


def test_stage_explorer_steps_to_the_next_stage(jupyter, page):
    jupyter.open(page, jupyter.lesson_00)
    jupyter.run_all(page)
    explorer = jupyter.widget(page, "Next ▶")
    before = diagram_svg(explorer)
    shown = re.match(r"Stage (\d)", explorer.locator("h3").first.inner_text())
    assert shown, "the StageExplorer shows no 'Stage N' heading"
    jupyter.screenshot(page, "00-stage-explorer.png", explorer)
    jupyter.button(explorer, "Next ▶").click()
    following = rf"^Stage {int(shown.group(1)) + 1}\b"
    explorer.locator("h3", has_text=re.compile(following)).wait_for()  # the widget re-renders its HTML
    page.wait_for_function("([box, old]) => { const s = box.querySelector('svg'); return s && s.outerHTML !== old; }",
                           arg=[explorer.element_handle(), before])
    after = diagram_svg(explorer)
    assert after != before
    jupyter.screenshot(page, "00-stage-explorer-next.png", explorer)

    # the lesson's Check button: no answer given yet, so its result says NOT DONE YET, with a hint
    box = jupyter.widget(page, "Check")
    jupyter.button(box, "Check").click()
    result = box.locator(".widget-html-content", has_text="NOT DONE YET")
    result.wait_for(timeout=60_000)
    assert "read-a-trace" in result.inner_text() and "Hint 1/3" in result.inner_text()
    jupyter.screenshot(page, "00-check-not-done.png", box)


def progress_printed(page) -> dict:
    """The JSON the fixture's status cell printed after `PROGRESS`."""
    text = page.locator(".jp-OutputArea-output", has_text="PROGRESS").first.inner_text()
    return json.loads(text.split("PROGRESS", 1)[1])


def test_check_button_result_and_progress_survive_a_kernel_restart(jupyter, page):
    jupyter.open(page, "browser/check_progress.ipynb")
    jupyter.run_all(page)
    assert progress_printed(page) == {}, "the fixture's exercise was recorded before anyone pressed Check"
    box = jupyter.widget(page, "Check")
    jupyter.button(box, "Check").click()
    result = box.locator(".widget-html-content", has_text="PASS")
    result.wait_for(timeout=30_000)
    assert "press-check" in result.inner_text()
    jupyter.screenshot(page, "check-button-pass.png", box)

    jupyter.menu(page, "Kernel", "Restart Kernel and Run All Cells…", confirm=True)
    # the restarted kernel re-runs the status cell: its output changes from {} to the record
    page.locator(".jp-OutputArea-output", has_text=re.compile(r"PROGRESS .*press-check")).wait_for(timeout=60_000)
    jupyter.wait_all_ran(page)
    record = progress_printed(page).get("press-check", {})
    assert record.get("done") is True and record.get("attempts") == 1, record
    board = page.locator(".widget-html-content", has_text="Progress of browser-test")
    board.filter(has_text="press-check").wait_for()
    assert re.search(r"press-check\s*✔ done", board.inner_text()), board.inner_text()
    jupyter.screenshot(page, "progress-after-restart.png", board)


def test_live_view_kill_a_node_then_shut_the_kernel_down(jupyter, page, root_conftest):
    jupyter.open(page, "browser/live_view.ipynb")
    jupyter.run_all(page)
    view = jupyter.widget(page, "Send requests")

    jupyter.button(view, "Send requests").click()
    view.locator(".widget-html-content", has_text="Done: send 50 requests.").wait_for(timeout=60_000)
    healthy = diagram_svg(view)
    assert RED not in healthy, "the healthy lab is drawn with red parts"

    kill_list = view.locator(".widget-dropdown", has_text="Kill").locator("select")
    kill_list.select_option(label="node node-1")
    jupyter.button(view, "Kill").click()
    view.locator(".widget-html-content", has_text="Done: kill node node-1.").wait_for(timeout=60_000)
    jupyter.button(view, "Send requests").click()
    view.locator(".widget-html-content", has_text="Done: send 50 requests.").wait_for(timeout=60_000)
    killed = diagram_svg(view)
    assert RED in killed and "node-1 DOWN" in killed, "the killed node is not drawn red / DOWN"
    assert "killed node node-1" in view.inner_text()
    jupyter.screenshot(page, "liveview-node-killed.png", view)

    assert root_conftest.meshlab_processes(jupyter.meshlab_root), "the lab's processes are not visible to the test"
    jupyter.menu(page, "Kernel", "Shut Down Kernel")
    deadline = time.monotonic() + 30
    while jupyter.kernels() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert jupyter.kernels() == [], "Kernel > Shut Down Kernel left the kernel running"
    left = root_conftest.wait_no_processes(jupyter.meshlab_root, timeout=20)
    assert not left, f"meshlab processes outlived the kernel: {left}"
