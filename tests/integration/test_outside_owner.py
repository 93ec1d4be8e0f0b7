"""The process outside the clusters (stage 6's legacy service) lives as long as its owner process, not as long as the
thread that started it, and dies when the owner dies (even by SIGKILL)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from meshlab.backends.local import outside, paths, procs

pytestmark = pytest.mark.integration


@pytest.fixture
def address(tmp_path):
    """A loopback address of a free block (outside.start claims it, as a fleet's legacy host does)."""
    with paths.registry_lock():
        octet = paths.allocate_octet("owner-test")
    assert not outside.answers(f"127.{octet}.0.1")
    return f"127.{octet}.0.1"


def test_the_process_claims_its_address_block_machine_wide(tmp_path, address):
    proc, started = outside.start(tmp_path, "payments", address, owned=True)
    try:
        assert not paths.block_free(int(address.split(".")[1]))  # another lab, of any state root, keeps off it
    finally:
        procs.kill_group(proc.pid, started)
        proc.wait(timeout=5)
    assert gone(address) and paths.block_free(int(address.split(".")[1]))


def gone(ip: str, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while outside.answers(ip):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_started_from_a_thread_that_ends_it_keeps_serving_until_killed(tmp_path, address):
    started = {}
    worker = threading.Thread(target=lambda: started.update(
        zip(("proc", "started"), outside.start(tmp_path, "payments", address, owned=True))))
    worker.start()
    worker.join()
    time.sleep(0.5)  # PR_SET_PDEATHSIG of the ended thread would have fired by now
    assert outside.answers(address)
    procs.kill_group(started["proc"].pid, started["started"])
    started["proc"].wait(timeout=5)
    assert gone(address)


def test_it_dies_with_its_owner(tmp_path, address):
    script = textwrap.dedent(f"""
        import pathlib, sys, time
        from meshlab.backends.local import outside
        outside.start(pathlib.Path({str(tmp_path)!r}), "payments", {address!r}, owned=True)
        print("up", flush=True)
        time.sleep(60)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "up"
        assert outside.answers(address)
        os.kill(owner.pid, 9)
        owner.wait(timeout=5)
        assert gone(address)
    finally:
        owner.kill()
        owner.wait(timeout=5)
