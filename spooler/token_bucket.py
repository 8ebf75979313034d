"""A token bucket: a rate with a bounded burst (the receiver's bad-event budget, replay's --rate).

Lives in ``spooler`` (the bottom layer, standard library only) so that both the
receiver and the tailer can use it without importing each other.
"""

from __future__ import annotations

import threading
import time

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` (default: one second's worth) saved up. Thread-safe.

    ``burst_seconds`` sets the capacity to that many seconds' worth instead (it may then be below one
    second's worth): what is saved up while nothing is taken — a stall — is never more than that.
    """

    def __init__(self, rate: float, capacity: float | None = None, clock=time.monotonic, *,
                 burst_seconds: float | None = None) -> None:
        self.rate = float(rate)
        if burst_seconds is not None:
            self.capacity = self.rate * burst_seconds
        else:
            self.capacity = max(self.rate, float(capacity or 0))
        self._clock = clock
        self._tokens = self.capacity
        self._at = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self, n: float = 1.0) -> bool:
        with self._lock:
            self._refill()
            if self._tokens < n:
                return False
            self._tokens -= n
            return True

    def seconds_until(self, n: float = 1.0) -> float:
        """How long until ``n`` tokens (at most the capacity) could be taken."""
        with self._lock:
            self._refill()
            return max(0.0, (min(n, self.capacity) - self._tokens) / self.rate)
