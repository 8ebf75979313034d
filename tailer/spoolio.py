"""The shipper's spool operations, each guarded so that an I/O error never stops the tailer.

Every spool operation of the loop — list, seal an orphan, open, stat and read a
segment, write a dead letter, save the checkpoint, archive or delete a segment,
prune the archive — goes through :class:`GuardedSpool`. An ``OSError``
(``EIO``, ``ENOSPC``, ``EFBIG``, ``EROFS``, ``EACCES``, …) is logged
(rate-limited per operation, with a "recovered" line once it works again),
counted in ``spoolship_tailer_spool_errors_total{operation}``, and that
operation on that target is not tried again before a backoff (50 ms doubling
up to ``--max-backoff``); the caller gets :data:`FAILED` and carries on with
whatever else it can ship. A vanished file (``FileNotFoundError``) is not an
error where a rename may race us: callers that expect it get :data:`MISSING`.

:class:`SpoolOps` is the raw operations (the ``spooler`` functions and the few
``os`` calls); tests substitute a subclass that fails, a test double of the
disk. Not thread-safe: the loop owns the guard; delivery threads call the raw
``SpoolOps.write_dead_letter`` and handle its errors themselves.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import spooler
from spooler.presence import live_writers

from .metrics import TailerMetrics
from .ratelog import RateLimitedLog

__all__ = ["FAILED", "MISSING", "GuardedSpool", "SpoolOps"]

log = logging.getLogger(__name__)
FIRST_RETRY_SECONDS = 0.05


class _Outcome:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __bool__(self) -> bool:
        return False


FAILED = _Outcome("FAILED")  # an OSError: logged, counted, backed off
MISSING = _Outcome("MISSING")  # the file is gone (renamed or deleted meanwhile)


class SpoolOps:
    """The raw operations, one method each, so a test double can make any of them fail."""

    list_segments = staticmethod(spooler.list_segments)
    seal_orphan = staticmethod(spooler.seal_orphan)
    read_lines = staticmethod(spooler.read_lines)
    read_range = staticmethod(spooler.read_range)
    write_dead_letter = staticmethod(spooler.write_dead_letter)
    archive_segment = staticmethod(spooler.archive_segment)
    prune_archive = staticmethod(spooler.prune_archive)
    live_writers = staticmethod(live_writers)

    @staticmethod
    def open_segment(path: Path) -> int:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    @staticmethod
    def size_of(fd: int) -> int:
        return os.fstat(fd).st_size

    @staticmethod
    def delete_segment(path: Path) -> None:
        os.unlink(path)

    @staticmethod
    def exists(path: Path) -> bool:
        try:
            os.stat(path)
        except FileNotFoundError:
            return False
        return True

    @staticmethod
    def save_checkpoint(store: spooler.CheckpointStore, offsets: dict[str, int],
                        identities: dict[str, dict] | None = None) -> None:
        store.save(offsets, identities)


class GuardedSpool:
    def __init__(self, ops: SpoolOps, metrics: TailerMetrics, *, max_backoff_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ops = ops
        self._metrics = metrics
        self._max_backoff = max(FIRST_RETRY_SECONDS, max_backoff_seconds)
        self._clock = clock
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}  # (operation, target) -> (count, retry at)
        self._errors = RateLimitedLog(log)

    def run(self, operation: str, target: str, fn: Callable, *args, missing_ok: bool = False, clears: bool = True,
            **kwargs):
        """``fn(*args, **kwargs)``, or FAILED (OSError, or still backing off), or MISSING.

        ``clears=False``: a success does not end the target's backoff — for the checks around a read (an
        fstat, the bytes before an offset), which succeed while the read itself keeps failing: each success
        reset the backoff to 50 ms and logged a recovery (review 4: 1,146 failures and 1,145 recoveries
        logged in 10 s for one unreadable segment)."""
        key = (operation, target)
        failure = self._failures.get(key)
        if failure is not None and self._clock() < failure[1]:
            return FAILED
        try:
            result = fn(*args, **kwargs)
        except FileNotFoundError:
            if not missing_ok:
                raise
            return MISSING
        except OSError as exc:
            self._failed(key, failure, exc)
            return FAILED
        if failure is not None and clears:
            del self._failures[key]
            if not any(op == operation for op, _ in self._failures):
                self._errors.recovered(operation, "spool operation recovered", operation=operation)
        return result

    def retry_at(self, operation: str, target: str = "") -> float:
        """When ``operation`` on ``target`` may be tried again (0: now)."""
        failure = self._failures.get((operation, target))
        return failure[1] if failure else 0.0

    def failing(self) -> bool:
        return bool(self._failures)

    def failing_on(self, operation: str, target: str) -> bool:
        """``operation`` on ``target`` failed last time it was tried (backing off, or due for a retry)."""
        return (operation, target) in self._failures

    def forget(self, operation: str, target: str) -> None:
        """The target is gone (a segment deleted): drop its backoff state."""
        self._failures.pop((operation, target), None)

    def _failed(self, key: tuple[str, str], failure: tuple[int, float] | None, exc: OSError) -> None:
        count = failure[0] + 1 if failure else 1
        delay = min(self._max_backoff, FIRST_RETRY_SECONDS * 2 ** min(count - 1, 20))
        self._failures[key] = (count, self._clock() + delay)
        operation, target = key
        self._metrics.spool_errors.labels(operation).inc()
        self._errors.error(operation, "spool operation failed; retrying", operation=operation, target=target,
                           errno=exc.errno, error=str(exc), retry_seconds=round(delay, 3))
