"""Ctrl-C at any moment: either the step finishes and the caller hears of the interrupt after it, or nothing runs."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


@contextmanager
def deferred():
    """Hold SIGINT while a step that must not be cut in half runs (start a process and record it; tear down);
    raise KeyboardInterrupt after it if one came. Outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt
