"""The local watch source against a tiny supervisor speaking rpc.py's JSON-lines protocol."""

from __future__ import annotations

import threading
import time

from cpfakes import FakeSupervisor, abstract_name
from meshlab.controlplane import sources


def name() -> str:
    return abstract_name("watch")


def collect(watch: sources.LocalWatch):
    """Run the watch in a thread; returns (delivered payloads, stop event, thread)."""
    delivered: list[dict] = []
    stop = threading.Event()
    thread = threading.Thread(target=watch.run, args=(delivered.append, stop), daemon=True)
    thread.start()
    return delivered, stop, thread


def wait_until(predicate, timeout=5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.01)
    return predicate()


def test_address_from_the_environment():
    assert sources.api_address("@meshlab-abc") == "\0meshlab-abc"
    assert sources.api_address("/run/meshlab.sock") == "/run/meshlab.sock"
    watch = sources.from_environment({"MESHLAB_API": "@meshlab-abc"})
    assert watch.address == "\0meshlab-abc"


def test_list_then_long_poll_delivers_each_new_revision_once():
    address = name()
    supervisor = FakeSupervisor(sources.api_address(address))
    watch = sources.LocalWatch(sources.api_address(address), poll_timeout=1.0, log=lambda line: None)
    delivered, stop, thread = collect(watch)
    try:
        assert wait_until(lambda: len(delivered) == 1)
        assert supervisor.requests[0]["params"] == {"since": 0, "timeout": 1.0}
        assert wait_until(lambda: len(supervisor.requests) >= 3, timeout=10)  # polls time out with the same revision
        assert len(delivered) == 1  # ...and nothing new is delivered
        started = time.monotonic()
        supervisor.set_state()
        assert wait_until(lambda: len(delivered) == 2)
        assert time.monotonic() - started < 0.9  # the waiting long poll answered, not the next one after its timeout
        assert [p["revision"] for p in delivered] == [1, 2]
        assert wait_until(lambda: supervisor.requests[-1]["params"]["since"] == 2)
    finally:
        stop.set()
        thread.join(2)
        supervisor.close()
    assert not thread.is_alive()


def test_reconnects_with_backoff_when_the_supervisor_comes_later():
    address = name()
    lines: list[str] = []
    watch = sources.LocalWatch(sources.api_address(address), poll_timeout=0.2, min_backoff=0.05,
                               max_backoff=0.2, log=lines.append)
    delivered, stop, thread = collect(watch)
    supervisor = None
    try:
        time.sleep(0.6)
        assert delivered == [] and len(lines) == 1 and "unreachable" in lines[0]
        supervisor = FakeSupervisor(sources.api_address(address))
        assert wait_until(lambda: len(delivered) == 1, timeout=3)
        assert "reachable again" in lines[-1]
    finally:
        stop.set()
        thread.join(2)
        if supervisor:
            supervisor.close()
    assert not thread.is_alive()
