"""Start processes that die with their supervisor, and stop them for sure."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the supervisor dies, and lead a process group."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.setpgid(0, 0)


def spawn(argv: list[str], env: dict, log_path, cwd=None) -> subprocess.Popen:
    """Start argv with its output appended to log_path; it dies if this process dies."""
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent, close_fds=True)
    finally:
        log.close()


def start_time(pid: int) -> int | None:
    """The process start time in clock ticks (from /proc), to tell a pid from a reused one."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def is_same_process(pid: int, started: int | None) -> bool:
    """True when pid is alive and is the process that was recorded."""
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def kill_group(pid: int, started: int | None = None, grace: float = 0.0) -> None:
    """Kill a process and its group (SIGTERM then SIGKILL after grace seconds)."""
    if not is_same_process(pid, started):
        return
    if grace > 0:
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and is_same_process(pid, started) and not _is_zombie(pid):
            time.sleep(0.02)
    _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    for target in (lambda: os.killpg(pid, sig), lambda: os.kill(pid, sig)):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_gone(pid: int, started: int | None, timeout: float = 5.0) -> bool:
    """Wait until pid has exited (or is a zombie); True when it is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_same_process(pid, started) or _is_zombie(pid):
            return True
        time.sleep(0.02)
    return False
