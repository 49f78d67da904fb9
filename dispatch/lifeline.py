"""Processes a manager starts die with it. ``kill -9`` of a master leaves no one to stop its children and
queue workers; the kernel tells them (Linux PR_SET_PDEATHSIG), and they also notice their parent changed.

The manager puts its pid in the environment, so a process whose manager died before it got here (its
parent is already init or a subreaper) finds out at once."""
from __future__ import annotations

import ctypes
import os
import threading

ENV = "MTDISPATCH_MANAGER_PID"
PR_SET_PDEATHSIG = 1


def manager_pid() -> int:
    try:
        return int(os.environ.get(ENV, "")) or os.getppid()
    except ValueError:
        return os.getppid()


def die_with_parent(sig: int) -> int:
    """Have ``sig`` sent to this process when its parent dies; send it now if the parent is gone already.
    Returns the parent's pid."""
    parent = manager_pid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: watch_parent still notices
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return parent


def orphaned(parent: int) -> bool:
    return os.getppid() != parent


def watch_parent(parent: int, sig: int, interval: float = 0.5) -> threading.Thread:
    """A daemon thread that sends ``sig`` to this process once its parent is gone (where prctl is not)."""

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(interval):
            if orphaned(parent):
                os.kill(os.getpid(), sig)
                return

    thread = threading.Thread(target=watch, name="mtdispatch-parent-watch", daemon=True)
    thread.start()
    return thread
