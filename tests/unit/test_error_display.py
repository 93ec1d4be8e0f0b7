"""A MeshlabError in a notebook shows as its one line (with the hint), not as a traceback through meshlab."""

from __future__ import annotations

import pytest

from meshlab.backends.base import MeshlabError


def test_ipython_shows_the_one_line_only(capsys):
    shell_module = pytest.importorskip("IPython.core.interactiveshell")
    shell = shell_module.InteractiveShell.instance()
    try:
        shell.run_cell("from meshlab import manifests\nmanifests.load('a: [1\\n', '<cell>')")
    finally:
        shell_module.InteractiveShell.clear_instance()
    shown = capsys.readouterr()
    text = shown.out + shown.err
    assert "MeshlabError" in text and "<cell>:" in text and "invalid YAML" in text, text
    assert "Traceback" not in text and "manifests.py" not in text, text


def test_the_rendered_line_is_the_message_and_the_hint():
    lines = MeshlabError("x.yaml:3: bad", "fix it")._render_traceback_()
    assert len(lines) == 1 and lines[0].endswith("MeshlabError\x1b[0m: x.yaml:3: bad (hint: fix it)")
