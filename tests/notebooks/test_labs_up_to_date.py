"""labs/ must be exactly what the generator makes from solutions/ (run scripts/build-labs)."""

from pathlib import Path

import pytest

from meshlab.course.generate import stale

ROOT = Path(__file__).resolve().parents[2]


def test_labs_are_generated_from_solutions():
    if not list((ROOT / "solutions").glob("*.ipynb")):
        pytest.skip("solutions/ has no notebooks yet")
    assert stale(ROOT) == [], "labs/ is out of date: run scripts/build-labs"
