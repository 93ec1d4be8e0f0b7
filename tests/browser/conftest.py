"""Real JupyterLab in Debian's chromium, driven by Playwright: the fixtures.

`jupyter` starts JupyterLab headless on 127.0.0.1 (free port, a token, temp runtime/config/
settings/workspace folders) over a temp copy of the notebooks, and always stops it again.
`browser` is Debian's chromium (never a downloaded one) through Python Playwright; `page`
is a fresh browser context per test. Kernels get MESHLAB_HOME/MESHLAB_DATA under the test
session's root from tests/conftest.py, in a `browser/` sub-folder of their own, so
`wait_no_processes(jupyter.meshlab_root)` sees the kernels and the labs they start, but not
this pytest process, JupyterLab itself or the browser.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LESSON_00 = REPO / "lessons" / "00-welcome.ipynb"
OUTPUT = REPO / "test-output"
SCREENSHOTS = OUTPUT / "screenshots"
CURRENT = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in front
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# The fixture notebooks are driven by the browser test; nbval must not run them on their own.
collect_ignore_glob = ["*.ipynb"]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so `page` can tell that its test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _root_conftest(config):
    """tests/conftest.py as pytest loaded it (importing it again would make a second session root)."""
    want = (HERE.parent / "conftest.py").resolve()
    for plugin in config.pluginmanager.get_plugins():
        path = getattr(plugin, "__file__", None)
        if path and Path(path).resolve() == want:
            return plugin
    raise RuntimeError("tests/conftest.py is not loaded")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


class JupyterLab:
    """A running JupyterLab server and what the tests do with it through the browser."""

    CURRENT = CURRENT
    lesson_00 = f"lessons/{LESSON_00.name}"  # where the server has its copy

    def __init__(self, url: str, token: str, root_dir: Path, meshlab_root: Path, proc: subprocess.Popen, log: Path):
        self.url, self.token, self.root_dir, self.meshlab_root = url, token, root_dir, meshlab_root
        self.proc, self.log = proc, log
        self._workspaces = 0

    # ---- REST ------------------------------------------------------------------------------
    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 10.0):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=timeout) as response:
            text = response.read()
        return json.loads(text) if text else None

    def kernels(self) -> list[dict]:
        return self.api("GET", "/api/kernels")

    def shutdown_kernels(self) -> None:
        for kernel in self.kernels():
            try:
                self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=30)
            except (OSError, urllib.error.URLError):
                pass

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ---- the page ----------------------------------------------------------------------------
    def open(self, page, notebook: str) -> None:
        """Open a notebook (path relative to the server's root) in a workspace of its own; wait for its kernel."""
        self._workspaces += 1
        page.goto(f"{self.url}/lab/workspaces/test{self._workspaces}/tree/{notebook}?token={self.token}")
        page.locator(f"{CURRENT} .jp-Cell").first.wait_for(timeout=60_000)
        self.accept_kernel_dialog(page)
        self.wait_idle(page, timeout=60)

    def accept_kernel_dialog(self, page) -> None:
        """A notebook whose kernel name is unknown here asks which kernel to start: take the default."""
        dialog = page.locator(".jp-Dialog")
        try:
            dialog.wait_for(timeout=1500)
        except Exception:
            return
        page.locator(".jp-Dialog .jp-mod-accept").click()

    def menu(self, page, top: str, item: str, confirm: bool = False) -> None:
        """Click a main-menu item (Run > Run All Cells); confirm the dialog it opens, if asked."""
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(top)}$")).click()
        page.locator(".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel",
                     has_text=re.compile(f"^{re.escape(item)}$")).click()
        if confirm:
            page.locator(".jp-Dialog .jp-mod-accept").click()
            page.locator(".jp-Dialog").wait_for(state="detached")

    def kernel_status(self, page) -> str:
        """What the status bar says of the kernel: idle, busy, starting, ... ('' before a kernel is there).

        (The toolbar's execution indicator says "idle" before any kernel is connected: not usable.)"""
        item = page.locator("#jp-main-statusbar .jp-StatusBar-TextItem[title^='Change kernel']")
        texts = item.all_inner_texts()
        match = re.search(r"\|\s*(\w[\w ]*)$", texts[0].strip()) if texts else None
        return match.group(1).lower() if match and not texts[0].startswith("No Kernel") else ""

    def wait_idle(self, page, timeout: float = 90) -> None:
        """Until the kernel is idle and no cell is queued or running ([*])."""
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            busy = self.kernel_status(page) != "idle" or page.locator(
                f"{CURRENT} .jp-InputArea-prompt", has_text="[*]").count() > 0
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 0.5:
                return
            page.wait_for_timeout(100)
        raise AssertionError(f"kernel not idle after {timeout}s (status {self.kernel_status(page)!r})")

    def run_all(self, page, timeout: float = 120) -> None:
        """Run > Run All Cells, then wait until every code cell has run and the kernel is idle."""
        self.menu(page, "Run", "Run All Cells")
        self.wait_all_ran(page, timeout)

    def wait_all_ran(self, page, timeout: float = 120) -> None:
        """Until every code cell has an execution count and the kernel is idle; fail on a cell's error."""
        prompts = page.locator(f"{CURRENT} .jp-CodeCell .jp-InputArea-prompt")
        deadline = time.monotonic() + timeout
        while True:
            failed = self.cell_errors(page)
            if failed:
                raise AssertionError("a cell failed:\n" + "\n".join(failed)[:3000])
            texts = prompts.all_inner_texts()
            if texts and all(re.search(r"\[\d+\]", t) for t in texts):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"not every cell ran in {timeout}s: prompts {texts}, "
                                     f"kernel {self.kernel_status(page)!r}")
            page.wait_for_timeout(200)
        self.wait_idle(page, timeout)
        failed = self.cell_errors(page)
        assert not failed, "a cell failed:\n" + "\n".join(failed)[:3000]

    @staticmethod
    def cell_errors(page) -> list[str]:
        """Tracebacks shown in the notebook in front (errors render as stderr)."""
        errors = page.locator(f"{CURRENT} .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        return [t for t in errors.all_inner_texts() if "Traceback" in t or re.search(r"\w+(Error|Exception)\b", t)]

    @staticmethod
    def button(scope, label: str):
        """A widget button by its label (its icon's glyph is not part of the text)."""
        return scope.locator("button.jupyter-button", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))

    def widget(self, page, button: str):
        """The innermost widget box holding a button with that label (waits for it to render)."""
        target = self.button(page, button)
        try:
            target.first.wait_for(timeout=30_000)
        except Exception:
            raise AssertionError(
                f"no widget button {button!r} rendered in the browser; outputs show: "
                f"{page.locator('.jp-OutputArea-output').all_inner_texts()[:5]}") from None
        return page.locator(".widget-vbox", has=target).last

    def screenshot(self, page, name: str, element=None) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / name
        if element is not None:
            element.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        page.screenshot(path=str(path))
        return path


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if not path:
        pytest.skip("Debian's chromium is not installed (scripts/setup --dev installs it as root: "
                    "apt-get install -y chromium)")
    return path


@pytest.fixture(scope="session")
def root_conftest(request):
    return _root_conftest(request.config)


@pytest.fixture(scope="module")
def jupyter(chromium_path, tmp_path_factory, root_conftest):
    """JupyterLab on 127.0.0.1 over a temp copy of lesson 00 and the fixture notebooks; always stopped.

    A copy, so that JupyterLab's autosave never writes outputs into the course's own notebooks."""
    work = tmp_path_factory.mktemp("jupyterlab")
    root_dir = work / "notebooks"
    (root_dir / "browser").mkdir(parents=True)
    for notebook in HERE.glob("*.ipynb"):
        shutil.copy2(notebook, root_dir / "browser" / notebook.name)
    (root_dir / "lessons").mkdir()
    shutil.copy2(LESSON_00, root_dir / "lessons" / LESSON_00.name)
    meshlab_root = root_conftest._ROOT / "browser"
    jupyter_data = work / "data"
    # The kernel, and only the kernel, carries this lab's MESHLAB_HOME/MESHLAB_DATA.
    _write_json(jupyter_data / "kernels" / "python3" / "kernel.json", {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python",
        "env": {"MESHLAB_HOME": str(meshlab_root / "state"), "MESHLAB_DATA": str(meshlab_root / "data"),
                "MESHLAB_RENDERER": os.environ.get("MESHLAB_RENDERER", "pure"),
                "MESHLAB_LEARNER": "browser-test", "MESHLAB_COURSE_DIR": str(REPO)}})
    settings = work / "settings"
    _write_json(settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
                {"fetchNews": "false", "checkForUpdates": False})
    # every cell stays in the DOM (no virtual scrolling), so the test sees them all
    _write_json(settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings",
                {"windowingMode": "none"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHLAB_")}
    env.update(JUPYTER_RUNTIME_DIR=str(work / "runtime"), JUPYTER_CONFIG_DIR=str(work / "config"),
               JUPYTER_DATA_DIR=str(jupyter_data), JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"), IPYTHONDIR=str(work / "ipython"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               JUPYTER_PREFER_ENV_PATH="0")  # else the venv's own python3 kernelspec wins over the one above
    port, token = _free_port(), secrets.token_hex(16)
    OUTPUT.mkdir(exist_ok=True)
    log = OUTPUT / "browser-jupyterlab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={root_dir}", "--LabApp.news_url=None",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
             "--ServerApp.terminals_enabled=False"] + (["--allow-root"] if os.geteuid() == 0 else []),
            cwd=root_dir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = JupyterLab(f"http://127.0.0.1:{port}", token, root_dir, meshlab_root, proc, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                server.api("GET", "/api/status", timeout=2)
                break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not answer in 60 s:\n{server.log_tail()}") from None
                time.sleep(0.2)
        yield server
    finally:
        _stop(server)
        leftovers = _down_labs(meshlab_root, root_conftest)
    assert not leftovers, f"meshlab processes outlived JupyterLab (now killed): {leftovers}"


def _stop(server: JupyterLab) -> None:
    """Kernels first (so their labs go down), then the server; kill what does not listen."""
    if server.proc.poll() is None:
        try:
            server.shutdown_kernels()
            server.api("POST", "/api/shutdown", timeout=10)
        except (OSError, urllib.error.URLError):
            pass
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(timeout=5)


def _down_labs(meshlab_root: Path, root_conftest) -> list:
    """Take down any lab a kernel left behind (normally none); returns what was still running."""
    left = root_conftest.wait_no_processes(meshlab_root, timeout=10)
    if left:
        subprocess.run([sys.executable, "-c", "from meshlab.backends.local import down_all; down_all()"],
                       env={**os.environ, "MESHLAB_HOME": str(meshlab_root / "state")}, timeout=60, check=False)
        for pid, _ in root_conftest.meshlab_processes(meshlab_root):  # a kernel the server did not stop
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return left


@pytest.fixture(scope="module")
def browser(chromium_path):
    """Debian's chromium through Playwright (its own fresh, empty profile); always closed.

    Module-scoped, like `jupyter`: gone before other test modules check for leftover processes."""
    from playwright.sync_api import sync_playwright  # in the [dev] extras: missing is a failure, not a skip

    with sync_playwright() as playwright:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHLAB_")}
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS,
                                             env=env)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, jupyter, request):
    """A fresh browser context and page; a screenshot when the test failed; kernels shut down after."""
    failed_shot = SCREENSHOTS / f"FAILED-{request.node.name}.png"
    failed_shot.unlink(missing_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        yield page
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            try:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(failed_shot))
            except Exception:
                pass
        context.close()
        jupyter.shutdown_kernels()
