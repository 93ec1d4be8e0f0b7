"""`meshlab reset`: a lab's progress and (with --notebook) its notebook back to the start."""

import shutil
from pathlib import Path

import pytest

from meshlab import cli
from meshlab.backends.base import MeshlabError
from meshlab.course import generate, progress, reset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def course(tmp_path, monkeypatch):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "labs").mkdir()
    shutil.copy(REPO / "solutions" / "01-edge-proxy-lab.ipynb", tmp_path / "solutions")
    generate.build(tmp_path)
    monkeypatch.setenv("MESHLAB_COURSE_DIR", str(tmp_path))
    monkeypatch.setenv("MESHLAB_DATA", str(tmp_path / "data"))
    return tmp_path


def test_an_edited_lab_notebook_is_regenerated_and_the_learners_copy_kept(course):
    lab = course / "labs" / "01-edge-proxy-lab.ipynb"
    original = lab.read_text()
    lab.write_text(original.replace("YOUR", "MY"))
    path, backup = reset.restore_notebook("01", course)
    assert path == lab and lab.read_text() == original
    assert backup.parent.name == ".backups" and "MY" in backup.read_text()
    assert generate.stale(course) == []  # the backup does not count as a lab


def test_an_untouched_lab_needs_no_backup(course):
    assert reset.restore_notebook("01-edge-proxy-lab", course)[1] is None


def test_unknown_or_ambiguous_ids_are_clear_errors(course):
    with pytest.raises(MeshlabError, match="is not a lab"):
        reset.restore_notebook("99", course)
    shutil.copy(course / "solutions" / "01-edge-proxy-lab.ipynb", course / "solutions" / "01-other-lab.ipynb")
    with pytest.raises(MeshlabError, match="several labs"):
        reset.restore_notebook("01", course)


def test_the_cli_clears_progress_and_the_notebook(course, capsys):
    progress.record("01-edge-proxy-lab", "no-retry", True)
    lab = course / "labs" / "01-edge-proxy-lab.ipynb"
    lab.write_text(lab.read_text().replace("YOUR", "MY"))
    assert cli.main(["reset", "01-edge-proxy-lab", "--notebook"]) == 0
    out = capsys.readouterr().out
    assert "1 exercise record(s) cleared" in out and "starting state" in out
    assert "01-edge-proxy-lab" not in progress.status() or not progress.status()["01-edge-proxy-lab"]
    assert "MY" not in lab.read_text()
