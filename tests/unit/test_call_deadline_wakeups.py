"""The call watchdog is not woken per call, and still ends every call at its deadline.

All calls get the same deadline, so a new call is never due before the one the
watchdog already sleeps towards (or, idle, one deadline from when it went to
sleep): tailer/deadline.py wakes it only for a call due earlier. A thread
wake-up per PutRecords call cost ~3 % of the tailer's CPU.
"""

from __future__ import annotations

import socket
import time

import pytest

from tailer import deadline
from tailer.deadline import CallWatchdog
from tailer.errors import Unavailable


class _Counting:
    def __init__(self, condition) -> None:
        self._condition = condition
        self.notified = 0

    def notify(self, *args) -> None:
        self.notified += 1
        self._condition.notify(*args)

    def __getattr__(self, name):
        return getattr(self._condition, name)


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock


def _blocked_call(watchdog: CallWatchdog) -> float:
    """A call blocked on a read that never completes; how long until the watchdog ended it."""
    mine, theirs = socket.socketpair()
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable, match="deadline"), watchdog.call():
            deadline.record(_Connection(mine))
            if not mine.recv(1):  # shut down by the watchdog: the read ends
                raise ConnectionResetError("closed")
    finally:
        mine.close()
        theirs.close()
    return time.monotonic() - started


def test_calls_do_not_wake_the_watchdog_and_a_call_after_an_idle_spell_still_ends_at_its_deadline():
    watchdog = CallWatchdog(0.5)
    counting = _Counting(watchdog._wake)
    watchdog._wake = counting
    try:
        for _ in range(50):
            with watchdog.call():
                pass
        assert counting.notified == 0
        time.sleep(0.8)  # the watchdog's idle sleep starts and, later, ends
        assert 0.4 < _blocked_call(watchdog) < 5
        assert 0.4 < _blocked_call(watchdog) < 5  # right after one expired
    finally:
        watchdog.close()
