"""Group commit: many threads waiting for the same fsync share one.

Each append gets a sequence number (bytes appended so far). A thread that needs
its append durable waits until ``durable_seq`` covers it; if no fsync is under
way it becomes the leader, fsyncs the current segment once for everybody who
appended before it started, and wakes the rest. The interval policy's
background thread uses the same path, so an fsync is never run twice at once.

Thread-safe. Lock order: the writer's lock may be held when calling
:meth:`mark_durable`; this class never takes the writer's lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

__all__ = ["GroupCommit"]


class GroupCommit:
    def __init__(self, current_target: Callable[[], tuple[int, int | None]]) -> None:
        """``current_target()`` returns (appended seq, fd of the active segment or None).

        The seq must be read before the fd: a seal between the two reads leaves
        everything up to seq in a sealed (already fsynced) segment.
        """
        self._current_target = current_target
        self._cond = threading.Condition()
        self._durable_seq = 0
        self._syncing = False
        self.fsync_count = 0

    @property
    def durable_seq(self) -> int:
        return self._durable_seq

    def mark_durable(self, seq: int) -> None:
        """Record that everything up to ``seq`` is on disk (a seal fsynced it)."""
        with self._cond:
            if seq > self._durable_seq:
                self._durable_seq = seq
                self._cond.notify_all()

    def wait_durable(self, seq: int) -> None:
        """Return once every append up to ``seq`` is fsynced; raises OSError if fsync fails."""
        with self._cond:
            while self._durable_seq < seq:
                if self._syncing:
                    self._cond.wait()
                    continue
                self._lead_one_fsync()

    def sync_now(self) -> None:
        """Fsync whatever is appended so far (the interval policy's tick)."""
        target, _ = self._current_target()
        self.wait_durable(target)

    def wait_idle_then(self, action: Callable[[], None]) -> None:
        """Run ``action`` when no fsync is under way (closing a retired descriptor)."""
        with self._cond:
            while self._syncing:
                self._cond.wait()
            action()

    def _lead_one_fsync(self) -> None:
        # Called with self._cond held; releases it around the fsync itself.
        self._syncing = True
        target, fd = self._current_target()
        self._cond.release()
        ok = False
        try:
            if fd is not None:
                os.fdatasync(fd)
            ok = True
        finally:
            self._cond.acquire()
            self._syncing = False
            if ok:
                self.fsync_count += 1
                self._durable_seq = max(self._durable_seq, target)
            self._cond.notify_all()
