"""A log line that a flood of clients cannot turn into a flood of log lines.

Things a client can cause many times a second (a refused append, a slow request
closed) are logged at most once per ``interval_seconds``, with how many times
they happened since the last line. Logging must never become the back-pressure
on the request path (the failure that started this project).
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["ThrottledLog"]

DEFAULT_INTERVAL_SECONDS = 10.0


class ThrottledLog:
    """``add(n, **fields)`` counts occurrences; at most one record per interval reports them. Thread-safe."""

    def __init__(self, logger: logging.Logger, event: str, *, level: int = logging.WARNING,
                 interval_seconds: float = DEFAULT_INTERVAL_SECONDS) -> None:
        self._logger = logger
        self._event = event
        self._level = level
        self._interval = interval_seconds
        self._lock = threading.Lock()
        self._next_at = 0.0
        self._count = 0

    def add(self, n: int = 1, **fields: object) -> bool:
        """Count ``n`` occurrences; log them (with ``fields`` of this one) if the interval has passed."""
        now = time.monotonic()
        with self._lock:
            self._count += n
            if now < self._next_at:
                return False
            count, self._count = self._count, 0
            self._next_at = now + self._interval
        self._logger.log(self._level, self._event, extra={"count": count, **fields})
        return True
