"""Run one action at a time off the kernel's thread; report only through a callback, never print."""

from __future__ import annotations

import threading
from typing import Callable


class Worker:
    """One background action at a time; reports through on_busy(busy, label) and on_done(label, error)."""

    def __init__(self, on_busy: Callable[[bool, str], None], on_done: Callable[[str, Exception | None], None]):
        self._on_busy = on_busy
        self._on_done = on_done
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        """Whether an action is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, label: str, action: Callable[[], None]) -> bool:
        """Start action in a thread; False (and nothing done) if one is already running."""
        with self._lock:
            if self.busy:
                return False
            self._on_busy(True, label)
            self._thread = threading.Thread(target=self._run, args=(label, action), daemon=True,
                                            name=f"meshlab-{label.split()[0]}")
            self._thread.start()
            return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current action is done; True if nothing is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.busy

    def _run(self, label: str, action: Callable[[], None]) -> None:
        error = None
        try:
            action()
        except Exception as exc:  # reported in the widget, never printed into some other cell
            error = exc
        for report in (lambda: self._on_done(label, error), lambda: self._on_busy(False, label)):
            try:
                report()
            except Exception:  # the widget itself failed: printing would land in a random cell
                pass
