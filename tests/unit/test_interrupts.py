"""A step run under interrupts.deferred() is never cut in half by Ctrl-C; the interrupt arrives after it."""

import os
import signal

import pytest

from meshlab import interrupts


def test_an_interrupt_during_the_step_is_raised_after_it():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the whole step")
    assert done == ["the whole step"]


def test_no_interrupt_no_exception_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    with interrupts.deferred():
        pass
    assert signal.getsignal(signal.SIGINT) is before
