"""Make `labs/*.ipynb` from `solutions/*.ipynb`, the single source (byte-stable output).

Rules, per cell of a solution notebook:
- a cell tagged `solution` is dropped;
- code cells: the lines from `### BEGIN SOLUTION` to `### END SOLUTION` (markers included,
  each alone on its line) become one placeholder line at the BEGIN marker's indentation:
  * inside a string literal (YAML held in a triple-quoted Python string):
    `# YOUR YAML HERE` — a YAML comment, so the string is an empty YAML document and the cell
    still runs (loading it yields no objects);
  * anywhere else: `# YOUR CODE HERE`; when a comment alone would leave the cell invalid
    Python (a block whose whole body was the solution), `pass  # YOUR CODE HERE`.
  Authors: give every name later cells use a harmless value *before* the BEGIN marker
  (``answer = None``), so a learner's untouched lab runs top to bottom and its checks say
  NOT DONE YET instead of raising NameError;
- markdown cells: everything from `<!-- BEGIN SOLUTION -->` to `<!-- END SOLUTION -->` is
  removed; a cell left empty is dropped;
- outputs and execution counts are cleared, volatile metadata (timings, widget state) dropped.
Output is JSON the way Jupyter writes it (sorted keys, indent 1), so a rebuild is byte-stable.

CLI: ``python -m meshlab.course.generate [--check] [--root DIR]`` (``scripts/build-labs``).
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import re
import sys
import tokenize
from pathlib import Path

BEGIN_CODE = re.compile(r"^\s*#+\s*BEGIN SOLUTION\s*$")
END_CODE = re.compile(r"^\s*#+\s*END SOLUTION\s*$")
MARKDOWN_BLOCK = re.compile(r"<!--\s*BEGIN SOLUTION\s*-->.*?<!--\s*END SOLUTION\s*-->[ \t]*\n?", re.DOTALL)
CODE_PLACEHOLDER, YAML_PLACEHOLDER = "# YOUR CODE HERE", "# YOUR YAML HERE"
SOLUTION_TAG = "solution"
VOLATILE_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled")
VOLATILE_NB_METADATA = ("widgets",)


class GenerateError(ValueError):
    """A solution notebook the generator cannot turn into a lab (unbalanced markers)."""


def _string_lines(code: str) -> set[int]:
    """1-based line numbers that lie inside a multi-line string literal (after its first line)."""
    inside: set[int] = set()
    try:
        start = None
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            kind = tokenize.tok_name[tok.type]
            if kind == "FSTRING_START":
                start = tok.start[0]
            elif kind in ("STRING", "FSTRING_END"):
                first = tok.start[0] if kind == "STRING" else start
                inside.update(range(first + 1, tok.end[0] + 1))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return _string_lines_by_quotes(code)
    return inside


def _string_lines_by_quotes(code: str) -> set[int]:
    """Fallback for code the tokenizer rejects: track triple-quote parity line by line."""
    inside, quote = set(), None
    for number, line in enumerate(code.splitlines(), 1):
        if quote:
            inside.add(number)
        for match in re.finditer(r'"""|\'\'\'', line):
            if quote is None:
                quote = match.group()
            elif match.group() == quote:
                quote = None
    return inside


def _compiles(code: str) -> bool:
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        code = TransformerManager().transform_cell(code)
    except ImportError:
        pass
    try:
        compile(code, "<cell>", "exec")
        return True
    except (SyntaxError, ValueError):
        return False


def strip_code(code: str, where: str = "<cell>") -> str:
    """A code cell's source with each solution block replaced by its placeholder."""
    if not any(BEGIN_CODE.match(line) or END_CODE.match(line) for line in code.splitlines()):
        return code
    stripped = _replace_blocks(code, where, use_pass=False)
    if _compiles(code) and not _compiles(stripped):
        stripped = _replace_blocks(code, where, use_pass=True)
    return stripped


def _replace_blocks(code: str, where: str, use_pass: bool) -> str:
    in_string = _string_lines(code)
    out, begin = [], None
    for number, line in enumerate(code.splitlines(keepends=True), 1):
        if BEGIN_CODE.match(line):
            if begin is not None:
                raise GenerateError(f"{where}: line {number}: BEGIN SOLUTION inside another solution block")
            begin = number
            indent = line[:len(line) - len(line.lstrip())]
            if number in in_string:
                out.append(f"{indent}{YAML_PLACEHOLDER}\n")
            else:
                out.append(f"{indent}{'pass  ' if use_pass else ''}{CODE_PLACEHOLDER}\n")
        elif END_CODE.match(line):
            if begin is None:
                raise GenerateError(f"{where}: line {number}: END SOLUTION without BEGIN SOLUTION")
            begin = None
        elif begin is None:
            out.append(line)
    if begin is not None:
        raise GenerateError(f"{where}: line {begin}: BEGIN SOLUTION without END SOLUTION")
    text = "".join(out)
    return text if code.endswith("\n") else text.rstrip("\n")


def strip_markdown(text: str, where: str = "<cell>") -> str:
    """A markdown cell's source without its solution blocks."""
    begins, ends = len(re.findall(r"<!--\s*BEGIN SOLUTION\s*-->", text)), len(re.findall(r"<!--\s*END SOLUTION\s*-->", text))
    if begins != ends:
        raise GenerateError(f"{where}: {begins} BEGIN SOLUTION and {ends} END SOLUTION markers")
    return MARKDOWN_BLOCK.sub("", text)


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def make_lab(solution: dict, name: str = "solution") -> dict:
    """The lab notebook (a plain dict) made from a solution notebook (a plain dict)."""
    lab = copy.deepcopy(solution)
    cells = []
    for index, cell in enumerate(lab.get("cells", [])):
        where = f"{name} cell {index + 1}"
        meta = cell.setdefault("metadata", {})
        if SOLUTION_TAG in meta.get("tags", []):
            continue
        for key in VOLATILE_CELL_METADATA:
            meta.pop(key, None)
        source = _source(cell)
        if cell.get("cell_type") == "code":
            source = strip_code(source, where)
            cell["outputs"], cell["execution_count"] = [], None
        elif cell.get("cell_type") == "markdown":
            source = strip_markdown(source, where)
            if not source.strip():
                continue
        cell["source"] = source.splitlines(keepends=True)
        cells.append(cell)
    lab["cells"] = cells
    meta = lab.setdefault("metadata", {})
    for key in VOLATILE_NB_METADATA:
        meta.pop(key, None)
    meta["meshlab"] = {"generated_from": f"solutions/{name}.ipynb", "edit": "edit the solution, then run scripts/build-labs"}
    return lab


def render(solution_path: Path) -> str:
    """The exact text of the lab file for one solution notebook."""
    solution_path = Path(solution_path)
    try:
        solution = json.loads(solution_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise GenerateError(f"{solution_path}: not a notebook: {exc}") from None
    lab = make_lab(solution, solution_path.stem)
    _validate(lab, solution_path)
    return json.dumps(lab, indent=1, sort_keys=True, ensure_ascii=False, separators=(",", ": ")) + "\n"


def _validate(lab: dict, where: Path) -> None:
    import nbformat

    try:
        nbformat.validate(nbformat.from_dict(copy.deepcopy(lab)))
    except nbformat.ValidationError as exc:
        raise GenerateError(f"{where}: the lab made from it is not a valid notebook: {str(exc).splitlines()[0]}") from None


def plan(root: Path) -> dict[Path, str | None]:
    """Every lab file and its wanted text (None: a lab with no solution, to delete)."""
    root = Path(root)
    wanted: dict[Path, str | None] = {root / "labs" / p.name: render(p) for p in sorted((root / "solutions").glob("*.ipynb"))}
    for existing in sorted((root / "labs").glob("*.ipynb")):
        wanted.setdefault(existing, None)
    return wanted


def _current(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def stale(root: Path) -> list[str]:
    """Lab files (relative to root) that differ from what the generator makes."""
    return [str(path.relative_to(root)) for path, text in plan(root).items() if _current(path) != text]


def build(root: Path) -> list[str]:
    """Regenerate every lab; returns the files written or deleted (relative to root)."""
    changed = []
    for path, text in plan(root).items():
        if _current(path) == text:
            continue
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        changed.append(str(path.relative_to(root)))
    return changed


def main(argv: list[str] | None = None) -> int:
    """`build-labs [--check] [--root DIR]`: regenerate labs/, or list stale labs and exit 1."""
    parser = argparse.ArgumentParser(prog="build-labs", description="Generate labs/ from solutions/.")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 listing stale labs")
    parser.add_argument("--root", type=Path, default=None, help="the course folder (default: found from here)")
    args = parser.parse_args(argv)
    from .catalog import course_root

    root = (args.root or course_root() or Path.cwd()).resolve()
    try:
        if args.check:
            old = stale(root)
            for name in old:
                print(f"stale: {name}")
            if old:
                print("run scripts/build-labs to regenerate them", file=sys.stderr)
            return 1 if old else 0
        for name in build(root):
            print(f"{'deleted' if not (root / name).exists() else 'wrote'} {name}")
    except GenerateError as exc:
        print(f"build-labs: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
