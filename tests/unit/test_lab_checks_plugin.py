"""The rule the lab plugin enforces on untouched labs: check cells say NOT DONE YET, never PASS."""

from lab_checks_plugin import problem


def out(text):
    return [{"output_type": "execute_result", "data": {"text/plain": text}}]


def test_a_check_cell_that_is_not_done_is_fine():
    assert problem('check("x", lab)', out("NOT DONE YET  x\nExpected: ...")) is None


def test_a_check_that_passes_on_the_untouched_lab_is_a_defect():
    assert "PASSED" in problem('check("x", lab)', out("PASS  x\nExpected: ..."))


def test_a_check_cell_without_a_verdict_is_a_defect():
    assert "did not report" in problem("CheckButton('x')", out(""))


def test_cells_without_checks_are_not_judged():
    assert problem("lab = meshlab.Lab('x')", out("PASS")) is None
