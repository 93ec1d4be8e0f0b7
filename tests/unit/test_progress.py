"""The progress store, CSV export, the course catalog and the progress board."""

import csv
import io
import json
import multiprocessing
import stat
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from meshlab.course import progress
from meshlab.course.board import ProgressBoard, board_rows, progress_text
from meshlab.course.catalog import course_root, discover


@pytest.fixture(autouse=True)
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MESHLAB_LEARNER", "alice")
    monkeypatch.delenv("MESHLAB_COURSE_DIR", raising=False)
    return tmp_path / "data"


def _write(path: Path, cells):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=cells), str(path))


@pytest.fixture
def course(tmp_path, monkeypatch):
    root = tmp_path / "course"
    _write(root / "lessons" / "01-edge-proxy.ipynb", [new_markdown_cell("# Edge proxy\nObjectives")])
    _write(root / "solutions" / "01-edge-proxy-lab.ipynb", [
        new_markdown_cell("# Lab 1: edge proxy"),
        new_markdown_cell("## Route /api to catalog"),
        new_code_cell("%%time\nx = 1"),
        new_code_cell("!echo hi\nfrom meshlab.checks.base import check\ncheck('ingress-rules', lab)"),
        new_markdown_cell("## Break it"),
        new_code_cell("CheckButton(\"kill-router\", lab)\ncheck('ingress-rules', lab)"),
        new_code_cell("btn = CheckButton(lambda: mine(answer))", metadata={"meshlab": {"exercise": "by-metadata"}}),
        new_code_cell("check('02-router-lab/shared')\nthis is not ( python"),
    ])
    monkeypatch.setenv("MESHLAB_COURSE_DIR", str(root))
    return root


def test_locations(monkeypatch, tmp_path):
    assert progress.progress_file() == tmp_path / "data" / "progress" / "meshlab.json"
    monkeypatch.delenv("MESHLAB_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert progress.data_dir() == tmp_path / "xdg" / "meshlab"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert progress.data_dir() == tmp_path / "home" / ".local" / "share" / "meshlab"
    monkeypatch.delenv("MESHLAB_LEARNER")
    assert progress.learner()


def test_record_is_private_atomic_and_sticky(data):
    first = progress.record("lab1", "ex1", False)
    assert first["attempts"] == 1 and not first["done"] and first["learner"] == "alice"
    progress.record("lab1", "ex1", True)
    last = progress.record("lab1", "ex1", False)
    assert last["attempts"] == 3 and last["done"]
    assert last["first_attempt"] <= last["last_attempt"] and last["last_attempt"].endswith("Z")
    path = progress.progress_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert json.loads(path.read_text())["learners"]["alice"]["lab1"]["ex1"]["attempts"] == 3


def test_status_and_reset(course):
    progress.record("01-edge-proxy-lab", "ingress-rules", True)
    progress.record("02-router-lab", "retries", False)
    assert set(progress.status()) == {"01-edge-proxy-lab", "02-router-lab"}
    assert progress.reset("02-router-lab") == 1
    assert progress.reset("02-router-lab") == 0
    assert "01-edge-proxy-lab" in progress.reset_lab("01")
    assert progress.status() == {}


def test_corrupt_file_is_set_aside(data):
    path = progress.progress_file()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a meshlab progress file"):
        progress.status()
    progress.record("lab1", "ex1", True)
    assert Path(f"{path}.corrupt").read_text() == "{not json"
    assert progress.status()["lab1"]["ex1"]["done"]


def _hammer(n):
    for _ in range(n):
        progress.record("lab1", "ex1", False)


def test_concurrent_kernels_lose_no_attempt():
    procs = [multiprocessing.get_context("fork").Process(target=_hammer, args=(15,)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    assert progress.status()["lab1"]["ex1"]["attempts"] == 60


def test_export_many_files_to_csv(tmp_path, monkeypatch, course):
    progress.record("01-edge-proxy-lab", "ingress-rules", True)
    monkeypatch.setenv("MESHLAB_DATA", str(tmp_path / "bob"))
    monkeypatch.setenv("MESHLAB_LEARNER", "bob")
    progress.record("01-edge-proxy-lab", "kill-router", False)
    progress.record("01-edge-proxy-lab", "kill-router", False)
    out = io.StringIO()
    count = progress.export_csv(out, files=[tmp_path / "data", progress.progress_file()])
    table = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(table[0]) == progress.CSV_FIELDS and count == len(table)
    assert {(r["learner"], r["exercise"], r["done"], r["attempts"]) for r in table} >= {
        ("alice", "ingress-rules", "true", "1"), ("bob", "kill-router", "false", "2"),
        ("bob", "ingress-rules", "false", "0")}
    target = tmp_path / "out.csv"
    progress.export_csv(str(target))
    assert target.read_text().splitlines()[0] == ",".join(progress.CSV_FIELDS)


def test_catalog_reads_exercises_and_titles(course):
    assert course_root() == course
    notebooks = {nb.id: nb for nb in discover()}
    assert notebooks["01-edge-proxy"].kind == "lesson" and notebooks["01-edge-proxy"].title == "Edge proxy"
    lab = notebooks["01-edge-proxy-lab"]
    assert lab.kind == "lab" and lab.title == "Lab 1: edge proxy"
    assert [(e.lab, e.id, e.title) for e in lab.exercises] == [
        ("01-edge-proxy-lab", "ingress-rules", "Route /api to catalog"),
        ("01-edge-proxy-lab", "kill-router", "Break it"),
        ("01-edge-proxy-lab", "by-metadata", "Break it"),
        ("02-router-lab", "shared", "Break it")]


def test_catalog_finds_the_repository_from_a_subfolder(tmp_path, course, monkeypatch):
    monkeypatch.delenv("MESHLAB_COURSE_DIR")
    monkeypatch.chdir(course / "solutions")
    assert course_root() == course


def test_board_text_and_widget(course):
    progress.record("01-edge-proxy-lab", "ingress-rules", True)
    progress.record("99-old-lab", "gone", False)
    text = progress_text()
    assert "1/5 exercises done" in text
    assert "[x] ingress-rules (1 attempt)  Route /api to catalog" in text
    assert "[ ] kill-router" in text and "99-old-lab" in text
    rows = board_rows()
    assert [r["id"] for r in rows] == ["01-edge-proxy", "01-edge-proxy-lab", "99-old-lab"]
    board = ProgressBoard()
    assert "ingress-rules" in board._table.value and "&#10004; done" in board._table.value
    assert repr(board) == text and board._repr_mimebundle_()["text/plain"] == text
    progress.record("01-edge-proxy-lab", "kill-router", True)
    board.refresh()
    assert board._table.value.count("&#10004; done") == 2


def test_board_survives_an_unreadable_progress_file(course):
    path = progress.progress_file()
    path.parent.mkdir(parents=True)
    path.write_text("[]")
    assert "progress unreadable" in progress_text()


def test_no_course_found(tmp_path, monkeypatch):
    monkeypatch.setattr("meshlab.course.catalog.course_root", lambda start=None: None)
    assert discover() == []
    assert "no lessons or labs found" in progress_text()
