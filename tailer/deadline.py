"""A wall-clock deadline per call: a watchdog closes the connection of a call that takes too long.

Socket timeouts bound each read, not the call: an endpoint (or a proxy) that
trickles its answer one byte every few seconds never lets a read time out, and
the call — with its batch and one of the ``--concurrency`` slots — would hang
for as long as the trickle lasts. :class:`CallWatchdog` gives every call a
deadline (``--call-deadline``, 30 s by default: well past the connect and read
timeouts of a healthy call). The connection a call uses is recorded when its
request is written (the pooled connection classes below, installed into
botocore's urllib3 session by :func:`install`); a watchdog thread shuts that
socket down at the deadline, so the blocked read fails at once and the call
raises a retryable error (tailer/errors.py): sent again with backoff, nothing
lost. :meth:`CallWatchdog.interrupt` ends every call in flight at once (the
drain timeout: the tailer must not wait for a hung call to exit). A call that
has expired sends no further request (a retry, or a request whose connection
was still being made at the deadline). The hot call's own exchange
(tailer/http_exchange.py) registers its socket with :func:`record`. The credential fetch of a call (STS
AssumeRole, through a client whose session is ``install``-ed too) runs under
the same deadline.

Reaching into botocore's session (``_pool_classes_by_scheme``, ``_manager``) is
kept in :func:`install` alone; tests/unit/test_call_deadline.py fails loudly if a
botocore upgrade moves it. Thread-safe.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from botocore.awsrequest import (
    AWSHTTPConnection,
    AWSHTTPConnectionPool,
    AWSHTTPSConnection,
    AWSHTTPSConnectionPool,
)

from .errors import Unavailable

__all__ = ["DEFAULT_CALL_DEADLINE_SECONDS", "CallWatchdog", "install", "record"]

DEFAULT_CALL_DEADLINE_SECONDS = 30.0
_current = threading.local()  # the call (a _Call) this thread is making, if any


class _Call:
    __slots__ = ("connection", "deadline", "expired")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.connection = None
        self.expired = False


def record(connection) -> None:
    """Before a request is written on ``connection`` (anything with a ``sock``): the watchdog shuts that
    socket down at the deadline of this thread's call. A call whose deadline has passed sends nothing
    further (a retry, or a request whose connection was still being made at the deadline)."""
    call = getattr(_current, "call", None)
    if call is not None:
        # The connection first, then the check; ``_expire`` does the reverse (expired, then the connection).
        # Whichever runs between the other's two steps, one of them sees the other: the request is not sent,
        # or its socket is shut down. Checked first, an expiry right after the check shut down nothing and the
        # call could hang for ever (hostile review of the watchdog).
        call.connection = connection
        if call.expired:
            raise ConnectionAbortedError("the call's deadline has passed")


class _Recording:
    """Mixin for urllib3 connections: remember which connection the current call writes to."""

    def request(self, *args, **kwargs):
        record(self)  # botocore's own retries (STS) too
        return super().request(*args, **kwargs)


class _HTTPConnection(_Recording, AWSHTTPConnection):
    pass


class _HTTPSConnection(_Recording, AWSHTTPSConnection):
    pass


class _HTTPPool(AWSHTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(AWSHTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def install(http_session) -> None:
    """Make botocore's URLLib3Session record connections (before its first request)."""
    classes = {"http": _HTTPPool, "https": _HTTPSPool}
    http_session._pool_classes_by_scheme = classes
    http_session._manager.pool_classes_by_scheme = classes


class CallWatchdog:
    def __init__(self, deadline_seconds: float = DEFAULT_CALL_DEADLINE_SECONDS) -> None:
        if deadline_seconds <= 0:
            raise ValueError("the call deadline must be positive")
        self.deadline_seconds = deadline_seconds
        self._calls: set[_Call] = set()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._closed = False
        # When the watchdog wakes next: a call due earlier must wake it. All calls get the same deadline
        # and an idle watchdog sleeps one deadline long, so a new call never is: no thread wake-up per
        # call (~3 % of the tailer's CPU under PutRecords calls, docs/performance.md).
        self._wakes_at = 0.0

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        """Around one call on this thread; raises Unavailable if the watchdog ended it."""
        with self._lock:
            self._start()  # before the call is listed: a thread that cannot start leaves no call behind
            # The deadline is taken under the lock: the watchdog sets ``_wakes_at`` from its own clock reading
            # under it, so a call never finds itself due before the watchdog's wake-up only because it read
            # the clock first (that raced at every start and idle wake-up: a needless wake-up each time).
            call = _Call(time.monotonic() + self.deadline_seconds)
            self._calls.add(call)
            if call.deadline < self._wakes_at:
                self._wake.notify()
        _current.call = call
        try:
            yield
        except Exception:
            if call.expired:
                raise Unavailable(f"call ended by its {self.deadline_seconds:g} s deadline (the answer was "
                                  "still not complete)", code="CallDeadline") from None
            raise
        finally:
            _current.call = None
            with self._lock:
                self._calls.discard(call)

    def interrupt(self) -> None:
        """End every call in flight now (their batches stay unacknowledged)."""
        with self._lock:
            calls = list(self._calls)
        for call in calls:
            self._expire(call)

    def close(self) -> None:
        """Stop watching (the sink is closing): calls still in flight, or made after this, are not ended by a
        deadline any more — only by their socket timeouts."""
        with self._lock:
            self._closed = True
            self._wake.notify()

    def _start(self) -> None:
        if self._thread is None and not self._closed:
            thread = threading.Thread(target=self._watch, name="call-watchdog", daemon=True)
            thread.start()  # may raise (a thread limit): the call fails, is retried, and the next one tries again
            self._thread = thread

    def _watch(self) -> None:
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                late = [c for c in self._calls if c.deadline <= now and not c.expired]
                if late:
                    self._lock.release()
                    try:
                        for call in late:
                            self._expire(call)
                    finally:
                        self._lock.acquire()
                    continue
                waits = [c.deadline - now for c in self._calls if not c.expired]
                timeout = min(waits) if waits else self.deadline_seconds
                self._wakes_at = now + timeout
                self._wake.wait(timeout)

    @staticmethod
    def _expire(call: _Call) -> None:
        call.expired = True
        connection = call.connection
        sock = getattr(connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
