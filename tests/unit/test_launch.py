"""`meshlab lab` starts JupyterLab on the course, bound to loopback only."""

from meshlab.course import launch


def test_jupyterlab_binds_loopback_and_opens_lesson_00(monkeypatch):
    seen = {}
    monkeypatch.setattr(launch.subprocess, "call", lambda argv: seen.setdefault("argv", argv) and 0)
    monkeypatch.setattr(launch.os, "geteuid", lambda: 0)
    assert launch.open_lab(port=8123, no_browser=True) == 0
    argv = seen["argv"]
    assert "--ServerApp.ip=127.0.0.1" in argv and "--ServerApp.port=8123" in argv and "--no-browser" in argv
    assert "--allow-root" in argv and any("lessons/00-welcome.ipynb" in a for a in argv)
    assert any(a.startswith("--notebook-dir=") and (launch.course_dir() / "lessons").is_dir() for a in argv if "notebook-dir" in a)


def test_no_allow_root_for_a_normal_user(monkeypatch):
    seen = {}
    monkeypatch.setattr(launch.subprocess, "call", lambda argv: seen.setdefault("argv", argv) and 0)
    monkeypatch.setattr(launch.os, "geteuid", lambda: 1000)
    launch.open_lab(no_browser=False)
    assert "--allow-root" not in seen["argv"] and "--no-browser" not in seen["argv"]
