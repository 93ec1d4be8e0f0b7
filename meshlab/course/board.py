"""The progress board: every lesson and lab exercise with done / not done, as text or a widget."""

from __future__ import annotations

import html
from pathlib import Path

import ipywidgets as widgets

from . import progress
from .catalog import NotebookInfo, discover


def board_rows(notebooks: list[NotebookInfo] | None = None, records: dict | None = None) -> list[dict]:
    """One row per notebook, each with its exercises' done flag and attempts; unknown labs last."""
    notebooks = discover() if notebooks is None else notebooks
    records = progress.status() if records is None else records
    out, listed = [], set()
    for nb in notebooks:
        exercises = []
        for ex in nb.exercises:
            rec = records.get(ex.lab, {}).get(ex.id, {})
            listed.add((ex.lab, ex.id))
            exercises.append({"id": ex.id, "title": ex.title, "done": bool(rec.get("done")),
                              "attempts": int(rec.get("attempts", 0))})
        out.append({"id": nb.id, "kind": nb.kind, "title": nb.title, "exercises": exercises})
    for lab in sorted(records):
        extra = [{"id": ex, "title": "", "done": bool(rec.get("done")), "attempts": int(rec.get("attempts", 0))}
                 for ex, rec in sorted(records[lab].items()) if (lab, ex) not in listed]
        if extra:
            out.append({"id": lab, "kind": "lab", "title": "(not in this course's notebooks)", "exercises": extra})
    return out


def _totals(rows: list[dict]) -> tuple[int, int]:
    exercises = [ex for row in rows for ex in row["exercises"]]
    return sum(ex["done"] for ex in exercises), len(exercises)


def _safe_rows(root: Path | None) -> tuple[list[dict], str]:
    try:
        records, problem = progress.status(), ""
    except (OSError, ValueError) as exc:
        records, problem = {}, f"(progress unreadable: {exc})"
    return board_rows(discover(root), records), problem


def progress_text(root: Path | None = None) -> str:
    """CLI: the board as plain text."""
    rows, problem = _safe_rows(root)
    done, total = _totals(rows)
    lines = [f"meshlab progress for {progress.learner()}: {done}/{total} exercises done"]
    if problem:
        lines.append(problem)
    if not rows:
        lines.append("(no lessons or labs found: run from the course folder or set MESHLAB_COURSE_DIR)")
    for row in rows:
        count = f"{sum(e['done'] for e in row['exercises'])}/{len(row['exercises'])}" if row["exercises"] else ""
        lines.append(f"{row['id']:<28} {row['kind']:<6} {count:>5}  {row['title']}".rstrip())
        for ex in row["exercises"]:
            tries = f" ({ex['attempts']} attempt{'s' if ex['attempts'] != 1 else ''})" if ex["attempts"] else ""
            title = f"  {ex['title']}" if ex["title"] else ""
            lines.append(f"    [{'x' if ex['done'] else ' '}] {ex['id']}{tries}{title}")
    return "\n".join(lines)


def progress_html(rows: list[dict]) -> str:
    """The board as an HTML table."""
    done, total = _totals(rows)
    body = []
    for row in rows:
        body.append(f"<tr><td colspan=3 style='padding-top:8px'><b>{html.escape(row['title'])}</b> "
                    f"<code>{html.escape(row['id'])}</code> <i>{row['kind']}</i></td></tr>")
        for ex in row["exercises"]:
            mark = "<span style='color:#1b7f3b'>&#10004; done</span>" if ex["done"] else "<span style='color:#888'>not done</span>"
            body.append(f"<tr><td style='padding-left:16px'><code>{html.escape(ex['id'])}</code></td>"
                        f"<td>{html.escape(ex['title'])}</td><td>{mark}</td></tr>")
    return (f"<div><b>Progress of {html.escape(progress.learner())}: {done}/{total} exercises done</b>"
            f"<table>{''.join(body)}</table></div>")


class ProgressBoard(widgets.VBox):
    """A widget listing every lesson and exercise with done / not done, and a Refresh button."""

    def __init__(self, root: Path | None = None, **kwargs):
        self._root = root
        self._table = widgets.HTML()
        refresh = widgets.Button(description="Refresh", icon="refresh")
        refresh.on_click(lambda _button: self.refresh())
        super().__init__(children=[self._table, refresh], **kwargs)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the notebooks and the progress file."""
        rows, problem = _safe_rows(self._root)
        self._table.value = progress_html(rows) + (f"<p>{html.escape(problem)}</p>" if problem else "")

    def __str__(self) -> str:
        return progress_text(self._root)

    def __repr__(self) -> str:
        return progress_text(self._root)

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs)
        data["text/plain"] = progress_text(self._root)
        return data
