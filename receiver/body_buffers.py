"""The request bodies one worker holds while they arrive and wait for a thread, within a budget.

waitress reads every body whole before the app runs: up to ``INBUF_OVERFLOW_BYTES``
(512 KiB) of it in memory, and a larger one in a temp file under ``$TMPDIR``. A
connection keeps its body until its answer is sent. Without a bound, 1,000
connections announcing 5 MiB each and sending slowly held 1.5 GB of ``/tmp``,
or 950 connections of 511 KB held 520 MB of memory (security review, finding 4).

So each worker counts what its connections hold, by the size a body announces
(``Content-Length``, counted when the headers end) or, for a chunked body, by
what has arrived so far:

- at most ``capacity_bytes`` (``--max-buffered-body-bytes``) in all, memory and
  temp files together;
- at most ``memory_bytes`` of it in memory, counting ``min(size, 512 KiB)`` per
  body (a larger body moves to its temp file once it passes 512 KiB);
- a body of at most ``SMALL_BODY_BYTES`` is never counted and never refused
  here, so holders of large bodies cannot starve beacons; what small bodies can
  hold is bounded by the connection limit instead (1,000 × 8 KiB).

A body that does not fit is refused (503 + ``Retry-After``) before any more of
it is read; what a body held is given back when its request is done or its
connection closes. Thread-safe: the serving loop takes, request threads give back.
"""

from __future__ import annotations

import threading

__all__ = [
    "DEFAULT_MAX_BUFFERED_BODY_BYTES",
    "INBUF_OVERFLOW_BYTES",
    "MAX_BUFFERED_IN_MEMORY_BYTES",
    "SMALL_BODY_BYTES",
    "BodyBuffers",
]

# waitress's inbuf_overflow (its default, set explicitly in receiver/listener.py): a body's bytes in memory.
INBUF_OVERFLOW_BYTES = 512 * 1024
# A beacon, a handful of events: read before the API key is checked, never counted.
SMALL_BODY_BYTES = 8 * 1024
# 12 bodies of the default --max-body-bytes (5 MiB) waiting at once; more is a queue a thread will not reach soon.
DEFAULT_MAX_BUFFERED_BODY_BYTES = 64 * 1024**2
# 16 bodies of 512 KiB (or 1,024 of 8 KiB) in memory; larger ones are in temp files past their first 512 KiB.
MAX_BUFFERED_IN_MEMORY_BYTES = 8 * 1024**2


def _in_memory(nbytes: int) -> int:
    return min(nbytes, INBUF_OVERFLOW_BYTES)


class BodyBuffers:
    """Counts what the bodies of one worker's connections hold; refuses a body that would pass the budget."""

    def __init__(self, capacity_bytes: int = DEFAULT_MAX_BUFFERED_BODY_BYTES,
                 memory_bytes: int = MAX_BUFFERED_IN_MEMORY_BYTES, small_bytes: int = SMALL_BODY_BYTES) -> None:
        self.capacity_bytes = capacity_bytes
        self.memory_bytes = min(memory_bytes, capacity_bytes)
        self.small_bytes = small_bytes
        self._lock = threading.Lock()
        self._used = 0
        self._memory = 0
        self.peak_bytes = 0  # the most ever held at once (tests, the report)
        self.refused = 0

    @property
    def used_bytes(self) -> int:
        return self._used

    @property
    def memory_used_bytes(self) -> int:
        return self._memory

    def counted(self, nbytes: int) -> int:
        """What a body of ``nbytes`` counts for: nothing while it is small."""
        return nbytes if nbytes > self.small_bytes else 0

    def grow(self, held: int, nbytes: int) -> bool:
        """A body that holds ``held`` (counted) bytes now needs ``nbytes``: take the difference, or refuse."""
        wanted = self.counted(nbytes)
        if wanted <= held:
            return True
        extra, extra_memory = wanted - held, _in_memory(wanted) - _in_memory(held)
        with self._lock:
            if self._used + extra > self.capacity_bytes or self._memory + extra_memory > self.memory_bytes:
                self.refused += 1
                return False
            self._used += extra
            self._memory += extra_memory
            self.peak_bytes = max(self.peak_bytes, self._used)
        return True

    def give_back(self, held: int) -> None:
        """A body that held ``held`` counted bytes is done."""
        if held:
            with self._lock:
                self._used -= held
                self._memory -= _in_memory(held)
