"""Nothing leaks: every way a lab can end (down, with, kill -9, Ctrl-C mid-up, CLI down, a crashed
supervisor) leaves no process and no folder; two labs run side by side without colliding."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import meshlab
from meshlab.backends.local import paths
from waiting import wait_for
from conftest import meshlab_processes, wait_no_processes

pytestmark = pytest.mark.integration
MESHLAB = [sys.executable, "-m", "meshlab.cli"]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(MESHLAB + list(args), capture_output=True, text=True, timeout=timeout)


def child(code: str) -> subprocess.Popen:
    """A Python process (standing in for a notebook kernel) that runs code and reports on stdout."""
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lab_processes(lab: str) -> list:
    folder = str(paths.lab_dir(lab))
    return [p for p in meshlab_processes() if folder in p[1] or f"--lab {lab}" in p[1]]


def assert_gone(lab: str, within: float = 5.0) -> None:
    left = wait_no_processes(timeout=within)
    assert not left, f"processes left behind: {left}"
    assert not paths.lab_dir(lab).exists(), f"lab folder {paths.lab_dir(lab)} left behind"


def hold_block() -> tuple[int, socket.socket]:
    """Stand in for a lab of another state root (another user, another test run): hold a block's DNS address."""
    with paths.registry_lock():
        octet = paths.allocate_octet("someone-else")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((f"127.{octet}.0.2", 5353))
    return octet, sock


def test_down_leaves_nothing(no_leaks):
    held, sock = hold_block()
    lab = meshlab.Lab("life-down")
    try:
        lab.up(stage=0, quiet=True)
    finally:
        sock.close()
    assert paths.read_state("life-down")["octet"] != held  # a block in use elsewhere is skipped
    assert lab.traffic(n=20).ok == 20
    assert lab_processes("life-down")
    folder = paths.lab_dir("life-down")
    assert folder.stat().st_mode & 0o077 == 0 and (folder / "state.json").stat().st_mode & 0o777 == 0o600
    octet = paths.read_state("life-down")["octet"]
    assert not paths.block_free(octet)  # the lab's DNS server holds its block
    lab.down()
    assert_gone("life-down")
    assert paths.block_free(octet)  # no listener left behind
    lab.down()  # idempotent


def test_with_block_leaves_nothing(no_leaks):
    with meshlab.Lab("life-with") as lab:
        lab.up(stage=0, quiet=True)
        assert lab.traffic(n=20).ok == 20
    assert_gone("life-with")


def test_kill_9_of_the_owner_takes_the_lab_down(no_leaks):
    proc = child("import meshlab, time\n"
                 "lab = meshlab.Lab('life-k9'); lab.up(stage=0, quiet=True)\n"
                 "print('UP', flush=True); time.sleep(600)\n")
    try:
        assert proc.stdout.readline().strip() == "UP", proc.stderr.read() if proc.poll() is not None else ""
        assert len(lab_processes("life-k9")) >= 8  # supervisor + 7 app pods
        started = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        assert_gone("life-k9", within=5)
        print(f"lab gone {time.monotonic() - started:.2f}s after kill -9 of its owner")
    finally:
        proc.kill()
        proc.wait()


def test_ctrl_c_in_the_middle_of_up_takes_the_lab_down(no_leaks):
    proc = child("import meshlab\n"
                 "try:\n"
                 "    meshlab.Lab('life-int').up(stage=1, quiet=True)\n"
                 "    print('UP', flush=True)\n"
                 "except KeyboardInterrupt:\n"
                 "    print('INTERRUPTED', flush=True)\n")
    try:
        # wait until pods are starting (an app process exists), then press Ctrl-C
        wait_for("pods to start", lambda: any("app.py" in cmd for _, cmd in lab_processes("life-int")), 30)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert out.strip() == "INTERRUPTED", (out, err)
        assert_gone("life-int", within=5)
    finally:
        proc.kill()
        proc.wait()


def test_cli_lab_outlives_the_cli_and_a_crashed_supervisor_is_cleaned_by_down(no_leaks):
    """`meshlab up` detaches; after a SIGKILL of its supervisor every pod dies and `meshlab down` cleans up.
    (A healthy CLI lab's `meshlab down` is covered in test_cli.py.)"""
    try:
        up = cli("up", "--lab", "life-cli", "--stage", "0")
        assert up.returncode == 0, up.stderr
        assert "meshlab down --lab life-cli" in up.stdout
        # the CLI process has exited; the lab runs on (a detached supervisor with no owner)
        assert len(lab_processes("life-cli")) >= 8
        assert meshlab.Lab("life-cli", owned=False).traffic(n=20).ok == 20
        state = json.loads((paths.lab_dir("life-cli") / "state.json").read_text())
        from meshlab.backends.local import kubeproxy

        extra = 1 if kubeproxy.mode() == "envoy" else 0  # the kube-proxy Envoy is one more supervised process
        assert state["owner"] is None and len(state["processes"]) == 7 + extra
        os.kill(state["supervisor"][0], signal.SIGKILL)
        left = wait_no_processes(timeout=5)  # PR_SET_PDEATHSIG: every pod process dies with it
        assert not left, f"pod processes outlived their supervisor: {left}"
        assert paths.lab_dir("life-cli").exists()  # nobody cleaned up yet ...
        status = cli("status", "--lab", "life-cli")
        assert status.returncode == 2 and "not running" in status.stderr
        down = cli("down", "--lab", "life-cli")  # ... until meshlab down, from the state file
        assert down.returncode == 0, down.stderr
        assert_gone("life-cli")
        again = cli("down", "--lab", "life-cli")  # idempotent
        assert again.returncode == 0 and "is down" in again.stdout, again.stderr
    except BaseException:
        cli("down", "--lab", "life-cli")
        raise


def test_two_labs_at_once_then_down_all(no_leaks):
    a, b = meshlab.Lab("twin-a"), meshlab.Lab("twin-b")
    try:
        a.up(stage="edge", quiet=True)
        b.up(stage=0, quiet=True)
        blocks = {lab.name: {p.ip.split(".")[1] for p in lab.pods()} for lab in (a, b)}
        assert len(blocks["twin-a"]) == len(blocks["twin-b"]) == 1  # one 127.L.0.0/16 block each ...
        assert blocks["twin-a"] != blocks["twin-b"]  # ... and not the same one
        assert a.url.split(".")[1] in blocks["twin-a"] and b.url.split(".")[1] in blocks["twin-b"]
        ra, rb = a.traffic(n=50), b.traffic(n=50)
        assert (ra.ok, rb.ok) == (50, 50), (str(ra), str(rb))
        assert {p["hops"][0]["kind"] for p in ra.paths} == {"proxy"}  # stage 1: behind its edge
        assert {p["hops"][0]["kind"] for p in rb.paths} == {"app"}  # stage 0: straight in
        down = cli("down", "--all")
        assert down.returncode == 0, down.stderr
        assert "2 lab(s)" in down.stdout and "twin-a" in down.stdout and "twin-b" in down.stdout
        assert_gone("twin-a")
        assert_gone("twin-b")
        assert cli("down", "--all").stdout.startswith("removed 0 lab(s)")
    finally:
        a.down()
        b.down()
