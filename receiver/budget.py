"""A worker's memory for request bodies in flight, shared by its threads.

A request holds a :class:`Hold` while its body is read, inflated, parsed and
serialized, and says how many bytes it needs at each step (``need``: the
estimate only grows, so each step asks for the most it will need so far).
Small requests pass without touching the shared pool: a body whose estimate
stays under ``small_bytes`` is never counted, so bombs can never starve them
(at most ``threads × small_bytes`` of memory goes uncounted). A larger request
reserves its whole estimate from the pool, and is refused:

- 413 when it needs more than the whole pool (it could never run), and
- 503 + Retry-After when the pool is in use by other large requests: refused
  at once rather than waiting, so a storm of large bodies never ties up the
  waitress threads that small requests need.

Thread-safe.
"""

from __future__ import annotations

import threading

from .errors import TooLarge, Unavailable

__all__ = ["DEFAULT_SMALL_BYTES", "Hold", "MemoryBudget"]

# Estimates up to this pass uncounted: ~35 KB of typical JSON (a hundred small events) or less.
DEFAULT_SMALL_BYTES = 512 * 1024
RETRY_AFTER_SECONDS = 1.0


class MemoryBudget:
    def __init__(self, capacity_bytes: int, small_bytes: int = DEFAULT_SMALL_BYTES) -> None:
        if capacity_bytes < small_bytes:
            raise ValueError(f"a memory budget of {capacity_bytes} bytes is below the small-request size {small_bytes}")
        self.capacity_bytes = capacity_bytes
        self.small_bytes = small_bytes
        self._lock = threading.Lock()
        self._used = 0
        self.peak_bytes = 0  # the most ever reserved at once (for tests and metrics)

    @property
    def used_bytes(self) -> int:
        return self._used

    def hold(self) -> Hold:
        return Hold(self)

    def _take(self, nbytes: int, total: int) -> None:
        with self._lock:
            if self._used + nbytes > self.capacity_bytes:
                in_use = self._used
            else:
                self._used += nbytes
                self.peak_bytes = max(self.peak_bytes, self._used)
                return
        raise Unavailable(
            f"this request needs about {total} bytes of memory to parse and {in_use} of this worker's "
            f"{self.capacity_bytes} (--max-parse-bytes) are in use by other large requests; retry shortly",
            RETRY_AFTER_SECONDS,
        )

    def _give_back(self, nbytes: int) -> None:
        with self._lock:
            self._used -= nbytes


class Hold:
    """One request's share of the budget; a context manager that gives it back. Not thread-safe."""

    __slots__ = ("_budget", "reserved_bytes", "needed_bytes")

    def __init__(self, budget: MemoryBudget) -> None:
        self._budget = budget
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
        budget._take(total_bytes - self.reserved_bytes, total_bytes)
        self.reserved_bytes = total_bytes

    def release(self) -> None:
        if self.reserved_bytes:
            self._budget._give_back(self.reserved_bytes)
            self.reserved_bytes = 0

    def __enter__(self) -> Hold:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
