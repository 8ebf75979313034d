"""The append's ``write(2)``, made without releasing the GIL while the disk is quick.

Why: ``os.write`` releases the GIL around the system call. For an append of a few
hundred bytes to the page cache (a microsecond or two) that release costs far more
than the write. In a receiver worker eight waitress threads and the serving loop
share one GIL on two cores: the release hands the GIL to another thread on the other
core, and the writer then waits (a futex) to win it back — two cross-core hand-overs
per request. Measured with single-event POSTs (docs/performance.md, "The GIL
hand-over of the append"): about 1/3 of the worker's CPU per request, the whole
gap to a bare Flask+waitress endpoint.

``ctypes.PyDLL`` calls libc's ``write`` with the GIL held: nothing else in the
process runs for the length of the call. That is right while the call is short,
and wrong when the disk is slow (dirty-page throttling, a stalled network disk):
then the serving loop, the probes and the metrics would stop with it. So a call that
keeps the GIL is timed; one that took longer than ``SLOW_WRITE_SECONDS`` sends every
write of the process — every writer's, one state for all of them (``SLOW_DISK``) —
of the next ``RELEASE_FOR_SECONDS`` back to ``os.write``. At worst one slow write per
period stops the worker for its own duration — which the writer's lock already made
every other append wait for. A write that never returns stops the worker altogether
(the liveness probe then fails, and the kubelet restarts it; with the GIL released
the appends would hang all the same, but the probes would answer). The time measured
includes any wait for the GIL between the clock readings (a thread may lose it at a
bytecode boundary, for the switch interval of each thread wanting it): 50 ms is
ten switch intervals, and a worker that busy gives nothing up by releasing it.

The same contract as ``os.write`` otherwise: the count written (a short write is the
caller's to finish), ``OSError`` with the errno of a failure (``OSError(errno, …)``
picks the subclass as ``os.write`` does; the errno is read before anything else
runs), and after ``EINTR`` the write is made again by ``os.write`` itself — its
PEP 475 loop, with the GIL released: a disk that answers ``EINTR`` slowly, again and
again, never holds it. Only ``bytes`` up to ``KEEP_GIL_MAX_BYTES`` keep the GIL: a
larger copy is worth releasing it for. ``os.write`` is called instead whenever
something has replaced it (a tracer, or the fault layers of the unit tests, which
replace ``os.write`` to fail or shorten appends: they keep testing the writer's
answer to them), and without ``ctypes`` or a libc ``write`` (never seen on Linux).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable

__all__ = ["KEEP_GIL_MAX_BYTES", "RELEASE_FOR_SECONDS", "SLOW_DISK", "SLOW_WRITE_SECONDS", "AppendWrite",
           "SlowDisk", "libc_write"]

log = logging.getLogger(__name__)

_OS_WRITE = os.write

# 64 KiB: a 100-event batch is ~17 KB; copying 64 KiB into the page cache takes ~10 µs.
KEEP_GIL_MAX_BYTES = 64 * 1024
# A write to the page cache takes microseconds; 50 ms is a disk that throttles or stalls (or a worker
# so busy that threads wait ten switch intervals for the GIL).
SLOW_WRITE_SECONDS = 0.05
RELEASE_FOR_SECONDS = 60.0


def _load_libc_write() -> Callable[[int, bytes, int], int] | None:
    """libc's ``write`` called with the GIL held: the count, or -1 with ``ctypes.get_errno()`` set."""
    try:
        import ctypes

        write = ctypes.PyDLL(None, use_errno=True).write  # PyDLL: calls keep the GIL
    except (ImportError, OSError, AttributeError):
        return None
    write.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
    write.restype = ctypes.c_ssize_t
    return write


def _get_errno() -> int:
    import ctypes

    return ctypes.get_errno()  # ctypes' copy for this thread, saved right after the call (use_errno)


libc_write = _load_libc_write()


class SlowDisk:
    """Until when the appends of every writer sharing this go to ``os.write`` (0: not now)."""

    __slots__ = ("release_until", "slow_writes")

    def __init__(self) -> None:
        self.release_until = 0.0
        self.slow_writes = 0  # writes that kept the GIL and took longer than SLOW_WRITE_SECONDS


SLOW_DISK = SlowDisk()  # the process's: one slow write releases the GIL for every writer of it


class AppendWrite:
    """``write(fd, data)`` for one writer: the GIL kept while the process's writes are quick.

    Not thread-safe on its own: the writer calls it under its lock.
    """

    __slots__ = ("_clock", "_libc_write", "_slow")

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 gil_keeping_write: Callable[[int, bytes, int], int] | None = None,
                 slow_disk: SlowDisk | None = None) -> None:
        self._libc_write = gil_keeping_write or libc_write  # None without ctypes: every write is os.write
        self._clock = clock
        self._slow = slow_disk or SLOW_DISK

    @property
    def slow_writes(self) -> int:
        return self._slow.slow_writes

    @property
    def keeps_gil(self) -> bool:
        """Whether the next small write would keep the GIL."""
        return self._libc_write is not None and self._clock() >= self._slow.release_until

    def __call__(self, fd: int, data: bytes) -> int:
        # The hot path of every append: a few checks, the call, two clock readings.
        fast = self._libc_write
        if (self._slow.release_until or fast is None or type(data) is not bytes or len(data) > KEEP_GIL_MAX_BYTES
                or os.write is not _OS_WRITE):
            return self._released(fd, data)
        clock = self._clock
        started = clock()
        code = 0
        try:
            written = fast(fd, data, len(data))
            if written < 0:
                code = _get_errno()  # before anything else can run
        finally:  # a slow failure counts too: a disk that takes seconds to say EIO
            took = clock() - started
            if took > SLOW_WRITE_SECONDS:
                self._slowed(took)
        if written < 0:
            if code == errno.EINTR:
                return os.write(fd, data)  # made again with the GIL released, signal handlers run first (PEP 475)
            raise OSError(code, os.strerror(code))
        return written

    def _released(self, fd: int, data: bytes) -> int:
        slow = self._slow
        if slow.release_until and self._libc_write is not None and self._clock() >= slow.release_until:
            slow.release_until = 0.0
            return self(fd, data)
        return os.write(fd, data)

    def _slowed(self, took: float) -> None:
        slow = self._slow
        slow.slow_writes += 1
        slow.release_until = self._clock() + RELEASE_FOR_SECONDS
        log.warning("slow spool write (a slow disk, or a worker waiting that long for the GIL): appends release "
                    "the GIL for a while", extra={"write_seconds": round(took, 3), "over_seconds": SLOW_WRITE_SECONDS,
                                                  "release_seconds": RELEASE_FOR_SECONDS})
