"""The labs-from-solutions generator, on small notebooks made in temporary folders."""

import json
import subprocess
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from meshlab.course.generate import (GenerateError, build, main, make_lab, render, stale, strip_code,
                                     strip_markdown)

REPO = Path(__file__).resolve().parents[2]

YAML_CELL = '''ingress_yaml = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
spec:
  rules:
    ### BEGIN SOLUTION
    - host: shop.local
      http: {}
    ### END SOLUTION
"""
### BEGIN SOLUTION
extra = 1
### END SOLUTION
'''

WHOLE_BODY = '''def pick(path):
    ### BEGIN SOLUTION
    return "catalog" if path.startswith("/api") else "frontend"
    ### END SOLUTION

answer = None
### BEGIN SOLUTION
answer = pick("/api")
### END SOLUTION
'''


def _solution():
    code = new_code_cell(YAML_CELL, execution_count=3, outputs=[new_output("stream", text="hi\n")],
                         metadata={"execution": {"iopub.status.idle": "2026-01-01"}})
    return new_notebook(cells=[
        new_markdown_cell("# Lab\nDo this.\n<!-- BEGIN SOLUTION -->\nThe answer is 42.\n<!-- END SOLUTION -->\nThen check."),
        new_markdown_cell("<!-- BEGIN SOLUTION -->\nonly a solution\n<!-- END SOLUTION -->\n"),
        code,
        new_code_cell(WHOLE_BODY),
        new_code_cell("print('secret')", metadata={"tags": ["solution"]}),
        new_code_cell("!echo hi\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION\ncheck('x', x if 'x' in dir() else None)"),
    ], metadata={"widgets": {"state": {}}, "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def _course(tmp_path):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "labs").mkdir()
    nbformat.write(_solution(), str(tmp_path / "solutions" / "01-lab.ipynb"))
    return tmp_path


def test_yaml_in_a_string_becomes_an_empty_yaml_comment():
    lab = strip_code(YAML_CELL)
    assert "    # YOUR YAML HERE\n" in lab and "shop.local" not in lab and "SOLUTION" not in lab
    assert "\n# YOUR CODE HERE\n" in lab
    scope = {}
    exec(lab, scope)
    assert yaml.safe_load(scope["ingress_yaml"])["spec"]["rules"] is None


def test_a_whole_body_becomes_pass_and_the_cell_runs():
    lab = strip_code(WHOLE_BODY)
    assert "    pass  # YOUR CODE HERE\n" in lab
    scope = {}
    exec(lab, scope)
    assert scope["answer"] is None and scope["pick"]("/api") is None


def test_cells_without_markers_are_untouched():
    assert strip_code("x = 1") == "x = 1"
    assert strip_code("x = 1\n### BEGIN SOLUTION\nx = 2\n### END SOLUTION") == "x = 1\n# YOUR CODE HERE"


@pytest.mark.parametrize("code, message", [
    ("### BEGIN SOLUTION\nx = 1\n", "without END"),
    ("x = 1\n### END SOLUTION\n", "without BEGIN"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside another"),
])
def test_unbalanced_code_markers(code, message):
    with pytest.raises(GenerateError, match=message):
        strip_code(code, "lab cell 3")


def test_markdown_blocks_are_removed():
    assert strip_markdown("a\n<!-- BEGIN SOLUTION -->\nb\n<!-- END SOLUTION -->\nc") == "a\nc"
    with pytest.raises(GenerateError):
        strip_markdown("<!-- BEGIN SOLUTION -->\nb")


def test_make_lab_strips_solutions_outputs_and_volatile_metadata():
    lab = make_lab(json.loads(nbformat.writes(_solution())), "01-lab")
    sources = ["".join(c["source"]) for c in lab["cells"]]
    assert len(lab["cells"]) == 4  # the markdown-only-solution cell and the tagged cell are gone
    assert sources[0] == "# Lab\nDo this.\nThen check."
    assert not any("secret" in s or "SOLUTION" in s or "42" in s for s in sources)
    assert all(c.get("outputs") == [] and c.get("execution_count") is None for c in lab["cells"] if c["cell_type"] == "code")
    assert "execution" not in lab["cells"][1]["metadata"] and "widgets" not in lab["metadata"]
    assert lab["metadata"]["meshlab"]["generated_from"] == "solutions/01-lab.ipynb"
    assert sources[3].startswith("!echo hi\n# YOUR CODE HERE\n")


def test_output_is_byte_stable_and_as_jupyter_writes_it(tmp_path):
    root = _course(tmp_path)
    text = render(root / "solutions" / "01-lab.ipynb")
    assert text == render(root / "solutions" / "01-lab.ipynb")
    assert nbformat.writes(nbformat.reads(text, as_version=4)) + "\n" == text
    solution_ids = [c["id"] for c in json.loads((root / "solutions" / "01-lab.ipynb").read_text())["cells"]]
    assert all(c["id"] in solution_ids for c in json.loads(text)["cells"])


def test_build_check_and_orphans(tmp_path, capsys):
    root = _course(tmp_path)
    (root / "labs" / "99-orphan.ipynb").write_text("{}")
    assert stale(root) == ["labs/01-lab.ipynb", "labs/99-orphan.ipynb"]
    assert main(["--root", str(root), "--check"]) == 1
    assert "stale: labs/01-lab.ipynb" in capsys.readouterr().out
    assert build(root) == ["labs/01-lab.ipynb", "labs/99-orphan.ipynb"]
    assert not (root / "labs" / "99-orphan.ipynb").exists()
    assert stale(root) == [] and build(root) == []
    assert main(["--root", str(root), "--check"]) == 0
    (root / "labs" / "01-lab.ipynb").write_text("edited by hand")
    assert main(["--root", str(root), "--check"]) == 1


def test_bad_solution_is_reported(tmp_path, capsys):
    root = _course(tmp_path)
    nbformat.write(new_notebook(cells=[new_code_cell("### BEGIN SOLUTION\nx = 1")]), str(root / "solutions" / "02-bad.ipynb"))
    assert main(["--root", str(root)]) == 2
    assert "02-bad cell 1: line 1: BEGIN SOLUTION without END SOLUTION" in capsys.readouterr().err


def test_script_runs_the_generator(tmp_path):
    root = _course(tmp_path)
    script = REPO / "scripts" / "build-labs"
    check = subprocess.run([str(script), "--root", str(root), "--check"], capture_output=True, text=True)
    assert check.returncode == 1 and "stale: labs/01-lab.ipynb" in check.stdout
    assert subprocess.run([str(script), "--root", str(root)], capture_output=True).returncode == 0
    assert subprocess.run([str(script), "--root", str(root), "--check"], capture_output=True).returncode == 0
