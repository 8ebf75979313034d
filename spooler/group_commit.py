"""Group commit: many threads waiting for the same fsync share one — and none is told a lie.

Each append gets a sequence number (bytes appended so far). A thread that needs
its append durable waits until ``durable_seq`` covers it; if no fsync is under
way it becomes the leader, fsyncs the active segment once for everybody who
appended before it started, and wakes the rest. A seal's fsync takes the same
path (:meth:`sync_segment`), so two fsyncs never run at once and nothing is taken
for durable that no successful fsync covered: "no segment open" is never read as
"already durable".

A failed fsync is final for its segment. Linux reports a writeback error once
and may then forget the lost pages ("fsyncgate"), so a later fsync of the same
file can succeed without them. Every byte of that segment not yet durable is
*poisoned*: a waiter whose seq falls in a poisoned range gets :class:`FsyncFailed`,
however many later fsyncs succeed. The writer seals the segment and tells us
where it ended (:meth:`close_poison`).

Thread-safe. Lock order: the writer's lock may be held when calling into this
class; this class never takes the writer's lock (a failure is signalled through
the ``on_failure`` callback, which must not block).
"""

from __future__ import annotations

import errno
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FsyncFailed", "GroupCommit"]

# (appended seq, descriptor of the active segment or None, the segment object as a token)
Target = tuple[int, "int | None", object]
_MAX_POISONED_RANGES = 1000


class FsyncFailed(OSError):
    """The fsync covering these bytes failed; ``token`` is the segment it failed on (or None)."""

    def __init__(self, cause: OSError, token: object) -> None:
        super().__init__(cause.errno or errno.EIO, f"fsync failed: {cause.strerror or cause}")
        self.token = token


@dataclass
class _Poisoned:
    after: int  # bytes up to here were durable when the fsync failed
    upto: int | None  # the segment's end; None while the writer has not sealed it yet
    cause: OSError
    token: object

    def covers(self, seq: int) -> bool:
        return seq > self.after and (self.upto is None or seq <= self.upto)


class GroupCommit:
    def __init__(self, current_target: Callable[[], Target], on_failure: Callable[[object], None]) -> None:
        """``current_target()`` reads the appended seq first, then the active segment.

        The writer keeps this invariant: a segment stops being the active one only
        after all its bytes are durable or poisoned. So whatever a leader reads,
        fsyncing the segment it got makes everything up to the seq it got durable.
        """
        self._current_target = current_target
        self._on_failure = on_failure
        self._cond = threading.Condition()
        self._durable_seq = 0
        self._syncing = False
        self._poisoned: deque[_Poisoned] = deque(maxlen=_MAX_POISONED_RANGES)
        self.fsync_count = 0
        self.failure_count = 0

    @property
    def durable_seq(self) -> int:
        """Every byte up to here is settled: durable, or poisoned (its waiters get FsyncFailed)."""
        return self._durable_seq

    def wait_durable(self, seq: int) -> None:
        """Return once every append up to ``seq`` is fsynced; raises :class:`FsyncFailed` if it never will be."""
        with self._cond:
            while True:
                poisoned = self._poison_covering(seq)
                if poisoned is not None:
                    raise FsyncFailed(poisoned.cause, poisoned.token)
                if self._durable_seq >= seq:
                    return
                if self._syncing:
                    self._cond.wait()
                    continue
                self._lead_one_fsync()

    def sync_now(self) -> None:
        """Fsync whatever is appended so far (the interval policy's tick)."""
        target, _, _ = self._current_target()
        self.wait_durable(target)

    def sync_segment(self, fd: int, end_seq: int, token: object) -> None:
        """A seal's fsync: exclusive like a leader's; makes ``end_seq`` durable or poisons up to it."""
        with self._cond:
            while self._syncing:
                self._cond.wait()
            self._syncing = True
        cause = None
        try:
            os.fsync(fd)
        except OSError as exc:
            cause = exc
        with self._cond:
            self._syncing = False
            if cause is None:
                self.fsync_count += 1
                self._durable_seq = max(self._durable_seq, end_seq)
            else:
                self._poison(cause, token, upto=end_seq)
                self._durable_seq = max(self._durable_seq, end_seq)  # settled: poisoned
            self._cond.notify_all()
        if cause is not None:
            raise FsyncFailed(cause, token)

    def close_poison(self, token: object, end_seq: int) -> None:
        """The writer sealed a segment: a poisoned range still open for it ends at ``end_seq``.

        Everything up to ``end_seq`` is then settled (durable or poisoned), so nothing
        retries an fsync for it, and a later segment's fsyncs may move past it.
        """
        with self._cond:
            for poisoned in self._poisoned:
                if poisoned.token is token and poisoned.upto is None:
                    poisoned.upto = end_seq
                    self._durable_seq = max(self._durable_seq, end_seq)
                    self._cond.notify_all()

    def wait_idle_then(self, action: Callable[[], None]) -> None:
        """Run ``action`` when no fsync is under way (closing a retired descriptor)."""
        with self._cond:
            while self._syncing:
                self._cond.wait()
            action()

    def _poison_covering(self, seq: int) -> _Poisoned | None:
        for poisoned in self._poisoned:
            if poisoned.covers(seq):
                return poisoned
        return None

    def _poison(self, cause: OSError, token: object, *, upto: int | None) -> None:
        self.failure_count += 1
        self._poisoned.append(_Poisoned(self._durable_seq, upto, cause, token))

    def _lead_one_fsync(self) -> None:
        # Called with self._cond held; releases it around the fsync itself.
        self._syncing = True
        target, fd, token = self._current_target()
        self._cond.release()
        cause = None
        try:
            if fd is not None:
                os.fdatasync(fd)
        except OSError as exc:
            cause = exc
        finally:
            self._cond.acquire()
            self._syncing = False
            self._cond.notify_all()
        if cause is not None:
            self._poison(cause, token, upto=None)
            self._on_failure(token)
            raise FsyncFailed(cause, token)
        if fd is not None:
            self.fsync_count += 1
            self._durable_seq = max(self._durable_seq, target)
        elif self._durable_seq < target and self._poison_covering(target) is None:
            # No segment open, yet these bytes are neither durable nor poisoned: the writer's
            # invariant broke. Say "unknown" rather than hang or answer a durability we never saw.
            self._poison(OSError(errno.EIO, "no segment holds these bytes"), None, upto=target)
