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
however many later fsyncs succeed. And that segment is never fsynced again: an
fsync after the failure would make durable the bytes appended after the lost
ones, behind a hole (zeros on disk) — a line of NUL bytes glued to an event. Its
unsynced tail stays at its end, where a power cut cuts it off whole. The writer
seals the segment and tells us where it ended (:meth:`close_poison`).

A poisoned range is kept while a waiter may still ask about it: the writer
registers each append that will wait (:meth:`register`, under its own lock, so
before anyone can seal past it), and a closed range below every registered
append is dropped — however many fail, none is forgotten too early.

Thread-safe. Lock order: the writer's lock may be held when calling into this
class; this class never takes the writer's lock (failures and successes are
signalled through callbacks, which must not block).
"""

from __future__ import annotations

import errno
import os
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FsyncFailed", "GroupCommit"]

# (appended seq, descriptor of the active segment or None, the segment object as a token)
Target = tuple[int, "int | None", object]


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


def _ignore(_token: object) -> None:
    return None


class GroupCommit:
    def __init__(self, current_target: Callable[[], Target], on_failure: Callable[[object, OSError], None],
                 on_success: Callable[[object], None] = _ignore) -> None:
        """``current_target()`` reads the appended seq first, then the active segment.

        The writer keeps this invariant: a segment stops being the active one only
        after all its bytes are durable or poisoned. So whatever a leader reads,
        fsyncing the segment it got makes everything up to the seq it got durable.
        """
        self._current_target = current_target
        self._on_failure = on_failure
        self._on_success = on_success
        self._cond = threading.Condition()
        self._durable_seq = 0
        self._syncing = False
        self._poisoned: list[_Poisoned] = []
        self._waiting: Counter[int] = Counter()  # registered appends' seqs, until their wait ends
        self.fsync_count = 0
        self.failure_count = 0

    @property
    def durable_seq(self) -> int:
        """Every byte up to here is settled: durable, or poisoned (its waiters get FsyncFailed)."""
        return self._durable_seq

    @property
    def poisoned_ranges(self) -> int:
        """How many failed-fsync ranges are remembered (for tests: they must not pile up)."""
        return len(self._poisoned)

    @property
    def registered_waits(self) -> int:
        """How many registered appends have not ended their wait (for tests: none may be left behind)."""
        return sum(self._waiting.values())

    def register(self, seq: int) -> None:
        """An append up to ``seq`` will call :meth:`wait_durable`: keep what it may ask about until then."""
        with self._cond:
            self._waiting[seq] += 1

    def wait_durable(self, seq: int, *, registered: bool = False) -> None:
        """Return once every append up to ``seq`` is fsynced; raises :class:`FsyncFailed` if it never will be.

        ``registered``: the caller registered ``seq`` (:meth:`register`); this wait ends that.
        """
        with self._cond:
            try:
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
            finally:
                if registered:
                    self._unregister_locked(seq)

    def unregister(self, seq: int) -> None:
        """A registered append will not call :meth:`wait_durable` after all (its request failed)."""
        with self._cond:
            self._unregister_locked(seq)

    def _unregister_locked(self, seq: int) -> None:
        if self._waiting[seq] <= 0:
            del self._waiting[seq]
            raise RuntimeError(f"a wait for seq {seq} ended that was never registered")  # a bug of the caller
        self._waiting[seq] -= 1
        if not self._waiting[seq]:
            del self._waiting[seq]
        self._forget_settled()

    def sync_now(self) -> None:
        """Fsync whatever is appended so far (the interval policy's tick)."""
        target, _, _ = self._current_target()
        self.wait_durable(target)

    def sync_segment(self, fd: int, end_seq: int, token: object) -> None:
        """A seal's fsync: exclusive like a leader's; makes ``end_seq`` durable or poisons up to it.

        A segment whose fsync failed before is not fsynced again (see the module's docstring).
        """
        with self._cond:
            while self._syncing:
                self._cond.wait()
            if self._has_failed(token):
                return  # its unsynced tail stays unsynced; close_poison settles it
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
        self._on_success(token)

    def has_failed(self, token: object) -> bool:
        """Did an fsync of this segment ever fail?"""
        with self._cond:
            return self._has_failed(token)

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
            self._forget_settled()

    def wait_idle_then(self, action: Callable[[], None]) -> None:
        """Run ``action`` when no fsync is under way (closing a retired descriptor)."""
        with self._cond:
            while self._syncing:
                self._cond.wait()
            action()

    def _has_failed(self, token: object) -> bool:
        return token is not None and any(p.token is token for p in self._poisoned)

    def _poison_covering(self, seq: int) -> _Poisoned | None:
        for poisoned in self._poisoned:
            if poisoned.covers(seq):
                return poisoned
        return None

    def _poison(self, cause: OSError, token: object, *, upto: int | None) -> None:
        self.failure_count += 1
        self._poisoned.append(_Poisoned(self._durable_seq, upto, cause, token))

    def _forget_settled(self) -> None:
        """Drop closed ranges no registered append can fall in (every later append's seq is larger)."""
        if not self._poisoned:
            return
        lowest = min(self._waiting, default=None)
        self._poisoned = [p for p in self._poisoned
                          if p.upto is None or (lowest is not None and lowest <= p.upto)]

    def _lead_one_fsync(self) -> None:
        # Called with self._cond held; releases it around the fsync itself.
        target, fd, token = self._current_target()
        if fd is not None and self._has_failed(token):
            # Never reached while the writer keeps its invariant (such bytes are poisoned); never
            # fsync a failed segment, and say "unknown" rather than hang.
            self._poison(OSError(errno.EIO, "an fsync of this segment failed before"), token, upto=target)
            return
        self._syncing = True
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
            self._on_failure(token, cause)
            raise FsyncFailed(cause, token)
        if fd is not None:
            self.fsync_count += 1
            self._durable_seq = max(self._durable_seq, target)
            self._on_success(token)
        elif self._durable_seq < target and self._poison_covering(target) is None:
            # No segment open, yet these bytes are neither durable nor poisoned: the writer's
            # invariant broke. Say "unknown" rather than hang or answer a durability we never saw.
            self._poison(OSError(errno.EIO, "no segment holds these bytes"), None, upto=target)
