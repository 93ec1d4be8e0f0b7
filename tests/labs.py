"""Labs for integration test modules: started at a stage, taken down however the tests end."""

from __future__ import annotations

from contextlib import contextmanager

import meshlab


def started(name: str, stage) -> meshlab.Lab:
    """A lab up at `stage`; nothing of it is left when bringing it up fails."""
    lab = meshlab.Lab(name)
    try:
        lab.up(stage=stage, quiet=True)
    except BaseException:
        lab.down()
        raise
    return lab


@contextmanager
def running(name: str, stage):
    """A lab up at `stage` for the body of a with block (a module fixture's yield), then down."""
    lab = started(name, stage)
    try:
        yield lab
    finally:
        lab.down()
