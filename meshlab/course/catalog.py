"""The course map: every lesson and lab, and the exercises of each, read from the notebooks.

Where: `lessons/*.ipynb` are lessons, `solutions/*.ipynb` are labs (or `labs/*.ipynb` when
there are no solutions). A notebook's id is its file name without `.ipynb`; its title is its
first markdown heading.

How an exercise is found (in notebook order, each id once):
1. a call in a code cell whose function is named `check` or `CheckButton` and whose first
   argument is a string literal: ``check("ingress-rules", lab)`` declares exercise
   `ingress-rules` of this notebook; ``check("01-edge-proxy-lab/ingress-rules")`` names the
   lab explicitly (a cell that is not valid Python is searched with a pattern instead);
2. for a check called any other way, the code cell's metadata
   ``{"meshlab": {"exercise": "ingress-rules"}}`` (a string or a list of strings).
An exercise's title is the nearest markdown heading above the cell that declares it.
"""

from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

CHECK_CALLS = {"check", "CheckButton"}
_CALL = re.compile(r"\b(?:%s)\(\s*['\"]([^'\"]+)['\"]" % "|".join(sorted(CHECK_CALLS)))
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


@dataclass
class ExerciseInfo:
    """One exercise as the notebooks declare it."""

    lab: str
    id: str
    title: str = ""


@dataclass
class NotebookInfo:
    """A lesson or a lab notebook and its exercises."""

    id: str
    kind: str  # "lesson" or "lab"
    title: str
    path: Path
    exercises: list[ExerciseInfo] = field(default_factory=list)


def course_root(start: Path | None = None) -> Path | None:
    """The course folder: `$MESHLAB_COURSE_DIR`, else the nearest folder up with the notebooks."""
    if os.environ.get("MESHLAB_COURSE_DIR"):
        return Path(os.environ["MESHLAB_COURSE_DIR"])
    candidates = [Path(start or Path.cwd()).resolve(), Path(__file__).resolve().parents[2]]
    for base in candidates:
        for folder in (base, *base.parents):
            if any((folder / sub).is_dir() for sub in ("solutions", "labs")) and (folder / "lessons").is_dir():
                return folder
    return None


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _python(code: str) -> str:
    """Cell code with IPython syntax (magics, shell escapes) turned into plain Python."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        return TransformerManager().transform_cell(code)
    except Exception:
        return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in code.splitlines())


def _called_ids(code: str) -> list[str]:
    try:
        tree = ast.parse(_python(code))
    except SyntaxError:  # a cell that does not parse: fall back to a pattern
        return [m.group(1) for m in _CALL.finditer(code)]
    calls = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)), key=lambda n: (n.lineno, n.col_offset))
    found = []
    for call in calls:
        name = getattr(call.func, "id", None) or getattr(call.func, "attr", None)
        if name in CHECK_CALLS and call.args and isinstance(call.args[0], ast.Constant) \
                and isinstance(call.args[0].value, str):
            found.append(call.args[0].value)
    return found


def _metadata_ids(cell: dict) -> list[str]:
    value = (cell.get("metadata", {}).get("meshlab") or {}).get("exercise")
    return [value] if isinstance(value, str) else [v for v in value or [] if isinstance(v, str)]


def read_notebook(path: Path, kind: str) -> NotebookInfo:
    """Title and exercises of one notebook file."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    info = NotebookInfo(Path(path).stem, kind, "", Path(path))
    heading, seen = "", set()
    for cell in nb.get("cells", []):
        text = _source(cell)
        if cell.get("cell_type") == "markdown":
            titles = _HEADING.findall(text)
            if titles:
                info.title = info.title or titles[0]
                heading = titles[-1]
            continue
        if cell.get("cell_type") != "code":
            continue
        for ref in _metadata_ids(cell) + _called_ids(text):
            lab, _, ex = ref.rpartition("/")
            key = (lab or info.id, ex)
            if ex and key not in seen:
                seen.add(key)
                info.exercises.append(ExerciseInfo(key[0], ex, heading))
    info.title = info.title or info.id
    return info


def discover(root: Path | None = None) -> list[NotebookInfo]:
    """Every lesson and lab of the course, lessons and labs each sorted by file name."""
    root = Path(root) if root else course_root()
    if root is None:
        return []
    labs = sorted((root / "solutions").glob("*.ipynb")) or sorted((root / "labs").glob("*.ipynb"))
    lessons = sorted((root / "lessons").glob("*.ipynb"))
    return sorted([read_notebook(p, "lesson") for p in lessons] + [read_notebook(p, "lab") for p in labs],
                  key=lambda nb: (nb.id, nb.kind))


def missing_checks(notebooks: list[NotebookInfo]) -> list[str]:
    """`lab/exercise` ids that notebooks declare but no `@exercise` check registers."""
    from ..checks.base import find

    missing = []
    for nb in notebooks:
        for ex in nb.exercises:
            try:
                find(f"{ex.lab}/{ex.id}")
            except LookupError:
                missing.append(f"{ex.lab}/{ex.id}")
    return missing
