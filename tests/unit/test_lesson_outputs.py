"""No lesson cell shows a stray True/False: a cell that ends in a bare call to a helper that returns a bool (the
settle and mesh waits say whether the wait succeeded) prints it under the cell, which says nothing to a learner."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import nbformat
import pytest

from meshlab import mesh, settle

ROOT = Path(__file__).resolve().parents[2]
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))
BOOL_HELPERS = {name for module in (settle, mesh) for name, fn in inspect.getmembers(module, inspect.isfunction)
                if inspect.signature(fn).return_annotation in (bool, "bool")}


def called(node: ast.AST) -> str:
    """The name of the function a call calls ('' for anything else)."""
    if isinstance(node, ast.Call):
        func = node.func
        return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return ""


def stray_bools(notebook: Path) -> list[str]:
    """Cells whose last statement is a bare call to a helper that returns a bool."""
    out = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        try:
            body = ast.parse(cell.source).body
        except SyntaxError:
            continue  # cell magics: not Python
        if body and isinstance(body[-1], ast.Expr) and called(body[-1].value) in BOOL_HELPERS:
            out.append(f"{cell.get('id')}: {ast.unparse(body[-1])}")
    return out


@pytest.mark.parametrize("notebook", LESSONS, ids=lambda p: p.stem)
def test_no_cell_ends_in_a_bare_wait(notebook):
    assert stray_bools(notebook) == []


def test_lesson_04_says_whether_the_sidecar_reloaded(tmp_path):
    lesson = next(p for p in LESSONS if p.name.startswith("04-"))
    cell = next(c for c in nbformat.read(lesson, as_version=4).cells if c.get("id") == "sidecar-30")
    last = ast.parse(cell.source).body[-1]
    assert called(last.value) == "print"  # what the wait found, in words
    old = nbformat.read(lesson, as_version=4)  # the cell as it was when the stray True showed
    for c in old.cells:
        if c.get("id") == "sidecar-30":
            c.source = ('lab.apply(yaml.safe_dump(named("ConfigMap", "sidecar-frontend-v1"), sort_keys=False))\n'
                        "settle.wait_config(lab, pod=\"frontend\", lacks='\"weight\": 0')")
    nbformat.write(old, tmp_path / "old.ipynb")
    assert stray_bools(tmp_path / "old.ipynb") == ["sidecar-30: settle.wait_config(lab, pod='frontend', lacks='\"weight\": 0')"]
