"""The slow log's watchdog (php-fpm's ``request_slowlog_timeout``): a request still running ``timeout`` seconds
after it started gets the Python stack of every thread written to the error log.

A POSIX timer of the process (``timer_create`` on CLOCK_MONOTONIC, through ctypes: the standard library has
none) sends SIGNAL when it expires, and faulthandler's handler for that signal writes the stacks. The handler
is C code, so the dump happens even while the request is stuck in C code that holds the GIL. Arming the timer
at the start of a request and disarming it at its end are one system call each.

``faulthandler.dump_traceback_later`` does the same with a watchdog thread, but it starts a new thread at every
call and joins the previous one. Measured: arming and disarming cost 30 us of CPU in a loop, against 2.6 us for
the timer; on /dispatch/ping through runfcgi, the slow log added 153 us of CPU per request (512 -> 665 us,
medians of 8 alternating runs of 3,000 requests) and adds 32 us with the timer (355 -> 387 us). It remains the
fallback where timer_create is missing.

A fork does not inherit the timer (POSIX): a forked process (the drainer) creates its own at its first request.
"""
from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import sys
from typing import TextIO

SIGNAL = signal.SIGRTMIN + 1  # a real-time signal nothing else in the child uses
MAX_TIMEOUT = 2**31  # seconds, exclusive: the timer's seconds are a C long, faulthandler's too
_CLOCK_MONOTONIC = 1
_SIGEV_SIGNAL = 0


class _SigEvent(ctypes.Structure):  # struct sigevent (Linux: 64 bytes)
    _fields_ = [("sigev_value", ctypes.c_void_p), ("sigev_signo", ctypes.c_int), ("sigev_notify", ctypes.c_int),
                ("_pad", ctypes.c_int * 12)]


class _TimeSpec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("it_interval", _TimeSpec), ("it_value", _TimeSpec)]


def _libc():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timer_create.argtypes = [ctypes.c_int, ctypes.POINTER(_SigEvent), ctypes.POINTER(ctypes.c_void_p)]
        libc.timer_settime.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_ITimerSpec),
                                       ctypes.POINTER(_ITimerSpec)]
        return libc
    except (OSError, AttributeError):  # no timer_create here (not Linux, or an old libc without it in libc)
        return None


class SlowLog:
    """Arm at the start of a request, disarm at its end; one per process."""

    def __init__(self, timeout: float, file: TextIO | None = None) -> None:
        if not 0 < timeout < MAX_TIMEOUT:  # also refuses nan
            raise ValueError(f"slow log timeout {timeout!r}: must be above 0 and below {MAX_TIMEOUT} seconds")
        self.timeout = timeout
        self.file = file or sys.stderr
        self._libc = _libc()
        self._timer: ctypes.c_void_p | None = None
        self._armed = _ITimerSpec(it_value=_TimeSpec(int(timeout), int(timeout % 1 * 1e9)))
        self._disarmed = _ITimerSpec()
        if self._libc is not None:
            faulthandler.register(SIGNAL, file=self.file, all_threads=True, chain=False)
            os.register_at_fork(after_in_child=self._forget_timer)

    def _forget_timer(self) -> None:
        self._timer = None

    def _create_timer(self) -> ctypes.c_void_p | None:
        event = _SigEvent(sigev_signo=SIGNAL, sigev_notify=_SIGEV_SIGNAL)
        timer = ctypes.c_void_p()
        if self._libc.timer_create(_CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer)) != 0:
            self._libc = None  # e.g. RLIMIT_SIGPENDING: the thread-based fallback from now on
            faulthandler.unregister(SIGNAL)
            return None
        self._timer = timer
        return timer

    def arm(self) -> None:
        if self._libc is not None and (self._timer is not None or self._create_timer() is not None):
            if self._libc.timer_settime(self._timer, 0, ctypes.byref(self._armed), None) == 0:
                return
            self._libc = None  # refused (it never is for a valid timeout): the thread-based fallback from now on
            faulthandler.unregister(SIGNAL)
        faulthandler.dump_traceback_later(self.timeout, file=self.file)

    def disarm(self) -> None:
        if self._libc is not None and self._timer is not None:
            self._libc.timer_settime(self._timer, 0, ctypes.byref(self._disarmed), None)
        else:
            faulthandler.cancel_dump_traceback_later()
