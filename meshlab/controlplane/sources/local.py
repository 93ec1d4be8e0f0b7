"""A client of the local runtime's watch API: long-polls the supervisor, as istiod watches the API server."""

from __future__ import annotations

import threading
from typing import Callable

from ...backends.base import MeshlabError
from ...backends.local import rpc

ENV = "MESHLAB_API"
UNREACHABLE = (OSError, ConnectionError, ValueError, MeshlabError)


def api_address(value: str) -> str:
    """A socket address from MESHLAB_API: `@name` (or a leading NUL) is the abstract namespace, else a path."""
    if value.startswith("@"):
        return "\0" + value[1:]
    return value


class LocalWatch:
    """Long-polls `watch` on the supervisor and delivers every new state; reconnects with backoff."""

    def __init__(self, address: str, poll_timeout: float = 30.0, min_backoff: float = 0.1,
                 max_backoff: float = 5.0, log: Callable[[str], None] = print, call=None):
        self.address = address
        self.poll_timeout = poll_timeout
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.log = log
        self.call = call or rpc.request
        self.revision = 0

    def poll(self, since: int) -> dict:
        """One long poll: the full state once the revision passes since, or after poll_timeout."""
        payload = self.call(self.address, "watch", {"since": since, "timeout": self.poll_timeout},
                            self.poll_timeout + 10.0)
        if not isinstance(payload, dict) or "revision" not in payload:
            raise ValueError(f"watch answered something that is not a state: {str(payload)[:100]}")
        return payload

    def run(self, deliver: Callable[[dict], None], stop: threading.Event) -> None:
        """Deliver each state whose revision differs from the last one, until stop is set."""
        backoff, failing = self.min_backoff, ""
        delivered = False
        while not stop.is_set():
            try:
                payload = self.poll(self.revision if delivered else 0)
            except UNREACHABLE as exc:
                if not failing:
                    self.log(f"watch {self._name()} unreachable, retrying: {exc}")
                failing = str(exc) or type(exc).__name__
                stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            if failing:
                self.log(f"watch {self._name()} reachable again")
            backoff, failing = self.min_backoff, ""
            if not delivered or payload["revision"] != self.revision:
                self.revision, delivered = payload["revision"], True
                deliver(payload)

    def _name(self) -> str:
        """The address as people write it (abstract names with a leading @)."""
        return "@" + self.address[1:] if self.address.startswith("\0") else self.address
