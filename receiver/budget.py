"""A worker's memory for request bodies in flight, shared by its threads.

A request holds a :class:`Hold` while its body is read, inflated, parsed and
serialized, and says how many bytes it needs at each step (``need``: the
estimate only grows, so each step asks for the most it will need so far).

- Small requests pass without touching the shared pool: a body whose estimate
  stays under ``small_bytes`` is never counted and never waits, so bombs can
  never starve them (at most ``threads × small_bytes`` goes uncounted).
- A larger request needs more than the whole pool: 413 (it could never run).
- Otherwise it takes the worker's *turn* to estimate: one large request at a
  time reads, inflates and parses (orjson holds the GIL while parsing, so
  parses in one process would not overlap anyway), reserving what it needs as
  its estimate grows, and waiting for other requests to give memory back if it
  must. Once its whole estimate is reserved (``estimated()``) it gives up the
  turn; what it needs after that (output longer than expected) never waits.
  Only the turn's holder ever waits for memory while holding some, and it waits
  only for requests that never wait: no two requests can wait for each other.
- Waiting is bounded: for the turn and then for memory, ``wait_seconds`` (1 s)
  each, and at most ``max_waiters`` requests (half the worker's threads) wait
  for the turn at once; beyond either, 503 + Retry-After, so a storm of large
  bodies never ties up the threads that small requests need.

Thread-safe (each Hold belongs to one request's thread).
"""

from __future__ import annotations

import logging
import threading

from .errors import TooLarge, Unavailable
from .throttled_log import ThrottledLog

__all__ = ["DEFAULT_SMALL_BYTES", "Hold", "MemoryBudget"]

# Estimates up to this pass uncounted: ~35 KB of typical JSON (a hundred small events) or less.
DEFAULT_SMALL_BYTES = 512 * 1024
DEFAULT_WAIT_SECONDS = 1.0
RETRY_AFTER_SECONDS = 1.0

# The figures of a refusal go to the log, at most one line per 10 s: the client learns only to retry.
_refused = ThrottledLog(logging.getLogger(__name__), "large requests refused while the parse budget is busy",
                        level=logging.INFO)


class MemoryBudget:
    def __init__(self, capacity_bytes: int, small_bytes: int = DEFAULT_SMALL_BYTES, *, max_waiters: int = 4,
                 wait_seconds: float = DEFAULT_WAIT_SECONDS) -> None:
        if capacity_bytes < small_bytes:
            raise ValueError(f"a memory budget of {capacity_bytes} bytes is below the small-request size {small_bytes}")
        self.capacity_bytes = capacity_bytes
        self.small_bytes = small_bytes
        self.max_waiters = max_waiters
        self.wait_seconds = wait_seconds
        self._turn = threading.Lock()  # held by the one large request that is estimating
        self._freed = threading.Condition(threading.Lock())
        self._used = 0
        self._waiters = 0
        self.peak_bytes = 0  # the most ever reserved at once (for tests and metrics)

    @property
    def used_bytes(self) -> int:
        return self._used

    def hold(self) -> Hold:
        return Hold(self)

    def _take_turn(self, total: int) -> None:
        if self._turn.acquire(blocking=False):
            return
        with self._freed:
            crowded = self._waiters >= self.max_waiters
            if not crowded:
                self._waiters += 1
        if not crowded:
            try:
                if self._turn.acquire(timeout=self.wait_seconds):
                    return
            finally:
                with self._freed:
                    self._waiters -= 1
        raise self._busy(total)

    def _take(self, nbytes: int, total: int, *, wait: bool) -> None:
        with self._freed:
            if wait and self._used + nbytes > self.capacity_bytes:
                self._freed.wait_for(lambda: self._used + nbytes <= self.capacity_bytes, self.wait_seconds)
            if self._used + nbytes <= self.capacity_bytes:
                self._used += nbytes
                self.peak_bytes = max(self.peak_bytes, self._used)
                return
        raise self._busy(total)

    def _give_back(self, nbytes: int) -> None:
        with self._freed:
            self._used -= nbytes
            self._freed.notify_all()

    def _busy(self, total: int) -> Unavailable:
        _refused.add(needed_bytes=total, max_parse_bytes=self.capacity_bytes, used_bytes=self._used,
                     waiting=self._waiters)
        return Unavailable("other large requests are being parsed by this worker; retry shortly",
                           RETRY_AFTER_SECONDS, written="none")


class Hold:
    """One request's share of the budget; a context manager that gives it back. Not thread-safe."""

    __slots__ = ("_budget", "_has_turn", "_estimated", "needed_bytes", "reserved_bytes")

    def __init__(self, budget: MemoryBudget) -> None:
        self._budget = budget
        self._has_turn = False
        self._estimated = False
        self.reserved_bytes = 0  # taken from the pool (0 while the request is small)
        self.needed_bytes = 0  # the largest need so far

    def need(self, total_bytes: int) -> None:
        """This request will have ``total_bytes`` live at once: reserve them, or raise 413/503."""
        if total_bytes <= self.needed_bytes:
            return
        self.needed_bytes = total_bytes
        budget = self._budget
        if total_bytes <= budget.small_bytes:
            return
        if total_bytes > budget.capacity_bytes:
            raise TooLarge(
                f"this request needs about {total_bytes} bytes of memory to parse; a worker allows "
                f"{budget.capacity_bytes} (--max-parse-bytes): send fewer or smaller events per request",
                needed_bytes=total_bytes, max_parse_bytes=budget.capacity_bytes,
            )
        if not self._estimated and not self._has_turn:
            budget._take_turn(total_bytes)
            self._has_turn = True
        budget._take(total_bytes - self.reserved_bytes, total_bytes, wait=self._has_turn)
        self.reserved_bytes = total_bytes

    def estimated(self) -> None:
        """Everything this request needs is reserved: the next large request may start; later needs never wait."""
        self._estimated = True
        if self._has_turn:
            self._has_turn = False
            self._budget._turn.release()

    def release(self) -> None:
        self.estimated()
        if self.reserved_bytes:
            self._budget._give_back(self.reserved_bytes)
            self.reserved_bytes = 0

    def __enter__(self) -> Hold:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
