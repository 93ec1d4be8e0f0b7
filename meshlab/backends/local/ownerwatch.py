"""Run a program until it ends or its owner process dies: `python -m meshlab.backends.local.ownerwatch OWNER -- ARGV`.

PR_SET_PDEATHSIG fires when the *thread* that started a child exits, so a process started from a short-lived
thread (e.g. `Lab.up` in a worker thread) would die at once. This parent is single-threaded: its child gets
PDEATHSIG from it, and it watches the owner process itself (as the supervisor does with --owner).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

from . import procs


def owner_gone(owner: int, fd: int | None) -> bool:
    """True once the owner process has exited."""
    if fd is not None:
        return bool(select.select([fd], [], [], 0)[0])
    return not procs.is_same_process(owner, None)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m meshlab.backends.local.ownerwatch OWNER -- ARGV...", file=sys.stderr)
        return 2
    owner, command = int(args[0]), args[2:]
    try:
        fd = os.pidfd_open(owner)
    except ProcessLookupError:
        return 0  # the owner is already gone: nothing to run for
    except (AttributeError, OSError):
        fd = None
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=procs._die_with_parent, close_fds=True)
    while child.poll() is None:
        if owner_gone(owner, fd):
            procs.kill_group(child.pid, grace=1.0)
            child.wait(timeout=5)
            return 0
        time.sleep(0.2)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
