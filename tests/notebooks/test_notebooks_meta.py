"""The shape every course notebook must have (COURSE.md), checked on the files as committed.

- Every notebook is valid nbformat 4 and committed without outputs or execution counts.
- A lesson opens with a title and an "Objectives" heading followed by a list, and closes with a
  markdown cell holding a "Summary" heading and a link to its lab, `../labs/NN-*.ipynb` (a lesson
  with no lab, listed in LESSONS_WITHOUT_LAB, links to the next lesson instead).
- Every lab exercise (a `check("id", ...)` or `CheckButton("id", ...)` call in solutions/) has a
  registered check with at least two hints, every registered check of a lab is used by it, the
  solution holds solution markers and its generated lab offers a place to write each answer.
- A notebook that starts a lab tears it down in a later cell.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from meshlab.checks import base
from meshlab.course.catalog import read_notebook
from meshlab.course.generate import BEGIN_CODE, CODE_PLACEHOLDER, SOLUTION_TAG, YAML_PLACEHOLDER

ROOT = Path(__file__).resolve().parents[2]
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
LABS = sorted((ROOT / "labs").glob("*.ipynb"))
NOTEBOOKS = LESSONS + SOLUTIONS + LABS
LESSONS_WITHOUT_LAB = {"00-welcome", "07-compare"}  # welcome: no exercises; compare: its check is in the lesson

HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)
LINK = re.compile(r"\]\(([^)\s]+\.ipynb)\)")


def ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def markdown(path: Path) -> list[str]:
    return [source(c) for c in cells(path) if c["cell_type"] == "markdown"]


def number(path: Path) -> str:
    return path.stem.split("-", 1)[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_valid_and_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i + 1 for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts: clear them before committing"
    assert "widgets" not in nb.metadata, f"{path.name}: saved widget state in the metadata"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_a_notebook_that_starts_a_lab_tears_it_down(path):
    code = [source(c) for c in cells(path) if c["cell_type"] == "code"]
    starts = [i for i, text in enumerate(code) if re.search(r"\.up\(", text) and "Lab(" in "".join(code[:i + 1])]
    if starts:
        assert any(re.search(r"\blab\.down\(\)", text) for text in code[starts[0] + 1:]), \
            f"{path.name} starts a lab but never calls lab.down() after it"


@pytest.mark.parametrize("path", LESSONS, ids=ids(LESSONS))
def test_lesson_opens_with_title_and_objectives(path):
    first = cells(path)[0]
    assert first["cell_type"] == "markdown", f"{path.name}: the first cell must be markdown"
    text = source(first)
    assert text.lstrip().startswith("# "), f"{path.name}: the first cell must start with a '# ' title"
    after = re.split(r"^#{1,6}\s+Objectives\b.*$", text, maxsplit=1, flags=re.MULTILINE | re.IGNORECASE)
    assert len(after) == 2, f"{path.name}: the first cell needs an 'Objectives' heading"
    assert re.search(r"^\s*[-*] \S", after[1], re.MULTILINE), f"{path.name}: list the objectives under the heading"


@pytest.mark.parametrize("path", LESSONS, ids=ids(LESSONS))
def test_lesson_closes_with_summary_and_link_to_its_lab(path):
    last = cells(path)[-1]
    assert last["cell_type"] == "markdown", f"{path.name}: the last cell must be the markdown summary"
    text = source(last)
    assert any(title.lower().startswith("summary") for _, title in HEADING.findall(text)), \
        f"{path.name}: the last cell needs a 'Summary' heading"
    links = LINK.findall(text)
    for link in links:
        assert (path.parent / link).resolve().is_file(), f"{path.name}: the link {link} leads to no notebook"
    if path.stem in LESSONS_WITHOUT_LAB:
        assert any(not link.startswith("../") for link in links), f"{path.name}: link to the next lesson"
        return
    labs = [link for link in links if re.fullmatch(rf"\.\./labs/{number(path)}-[^/]+\.ipynb", link)]
    assert labs, f"{path.name}: the summary must link to its lab, ../labs/{number(path)}-....ipynb"


@pytest.mark.parametrize("path", SOLUTIONS, ids=ids(SOLUTIONS))
def test_every_lab_exercise_has_a_check(path):
    info = read_notebook(path, "lab")
    assert info.exercises, f"{path.name}: a lab needs at least one check('id', ...) exercise"
    for ex in info.exercises:
        assert ex.lab == path.stem, f"{path.name}: exercise {ex.id} belongs to lab {ex.lab}"
        registered = base.find(f"{ex.lab}/{ex.id}")  # LookupError: no check for it
        assert len(registered.hints) >= 2, f"{ex.lab}/{ex.id}: hints must get more specific (at least two)"
    used = {ex.id for ex in info.exercises}
    unused = sorted(e.id for e in base.REGISTRY.values() if e.lab == path.stem and e.id not in used)
    assert not unused, f"{path.name}: checks registered but never called in the notebook: {unused}"


@pytest.mark.parametrize("path", SOLUTIONS, ids=ids(SOLUTIONS))
def test_solution_has_markers_and_its_lab_a_place_to_answer(path):
    nb_cells = cells(path)
    marked = [c for c in nb_cells if SOLUTION_TAG in c.get("metadata", {}).get("tags", [])
              or any(BEGIN_CODE.match(line) for line in source(c).splitlines())]
    assert marked, f"{path.name}: no solution (### BEGIN SOLUTION markers or a cell tagged 'solution')"
    lab = ROOT / "labs" / path.name
    assert lab.is_file(), f"labs/{path.name} is missing: run scripts/build-labs"
    lab_code = "\n".join(source(c) for c in cells(lab) if c["cell_type"] == "code")
    places = lab_code.count(CODE_PLACEHOLDER) + lab_code.count(YAML_PLACEHOLDER)
    assert places, f"labs/{path.name}: no '{CODE_PLACEHOLDER}' / '{YAML_PLACEHOLDER}' place for an answer"
    assert [e.id for e in read_notebook(lab, "lab").exercises] == [e.id for e in read_notebook(path, "lab").exercises]


def test_every_lab_has_a_lesson():
    lessons = {number(p) for p in LESSONS}
    orphans = [p.name for p in SOLUTIONS if number(p) not in lessons]
    assert not orphans, f"labs with no lesson of the same number: {orphans}"
