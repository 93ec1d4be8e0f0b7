"""`meshlab reset LAB`: a lab back to its starting state: progress cleared, notebook regenerated."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ..backends.base import MeshlabError
from . import generate, progress
from .launch import course_dir


def lab_notebook(lab_id: str, root: Path) -> tuple[Path, Path]:
    """(solution, lab) notebook paths of a lab id or a unique prefix such as `01`."""
    solutions = sorted((root / "solutions").glob("*.ipynb"))
    matches = [p for p in solutions if p.stem == lab_id] or [p for p in solutions if p.stem.startswith(lab_id)]
    if len(matches) != 1:
        known = ", ".join(p.stem for p in solutions) or "none"
        what = "matches several labs" if matches else "is not a lab"
        raise MeshlabError(f"'{lab_id}' {what}", f"labs are: {known}")
    return matches[0], root / "labs" / matches[0].name


def restore_notebook(lab_id: str, root: Path | None = None) -> tuple[Path, Path | None]:
    """Rewrite the lab notebook from its solution; the learner's copy goes to labs/.backups/."""
    root = Path(root or course_dir())
    solution, lab = lab_notebook(lab_id, root)
    text = generate.render(solution)
    backup = None
    if lab.exists() and lab.read_text(encoding="utf-8") != text:
        backup = root / "labs" / ".backups" / f"{lab.stem}.{time.strftime('%Y%m%d-%H%M%S')}.ipynb"
        backup.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lab, backup)
    tmp = lab.with_name(f".{lab.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, lab)
    return lab, backup


def reset(lab_id: str, notebook: bool = False, root: Path | None = None) -> list[str]:
    """Clear the lab's progress, and with notebook=True its notebook too; lines saying what was done."""
    lines = [progress.reset_lab(lab_id)]
    if notebook:
        lab, backup = restore_notebook(lab_id, root)
        lines.append(f"{lab} is back to its starting state" + (f"; your copy is in {backup}" if backup else ""))
    return lines
