"""Rate-limited error logs: one line per interval and kind, with a count, and a "recovered" line after.

A failure that repeats every few milliseconds (an endpoint answering garbage, a
full disk) must not flood the log: the first one is logged, the next ones within
``interval_seconds`` are counted and reported with the next line that goes out.
Thread-safe.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, interval_seconds: float = 10.0) -> None:
        self._log = logger
        self._interval = interval_seconds
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, int]] = {}

    def error(self, kind: str, event: str, *, exc_info: BaseException | None = None, **fields) -> None:
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._state.get(kind, (float("-inf"), 0))
            if now - last < self._interval:
                self._state[kind] = (last, suppressed + 1)
                return
            self._state[kind] = (now, 0)
        self._log.error(event, exc_info=exc_info, extra={**fields, "kind": kind, "suppressed": suppressed})

    def recovered(self, kind: str, event: str, **fields) -> None:
        with self._lock:
            if self._state.pop(kind, None) is None:
                return
        self._log.info(event, extra={**fields, "kind": kind})
