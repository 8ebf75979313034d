"""Unique, time-sortable event ids and receive times.

Ids are ULID-shaped: 48 bits of milliseconds since the epoch, then 80 bits that
are random at each new millisecond and counted up within it (so ids from one
worker sort in receive order, and two workers collide with negligible odds),
encoded as 26 characters of base32hex — an alphabet whose ASCII order is its
numeric order, so ids sort as strings.
"""

from __future__ import annotations

import base64
import os
import threading
import time

__all__ = ["IdGenerator", "format_received_at"]

_RANDOM_BITS = 80
_RANDOM_MASK = (1 << _RANDOM_BITS) - 1


class IdGenerator:
    """Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0

    def new_ids(self, count: int, now_ms: int) -> list[str]:
        with self._lock:
            if now_ms > self._last_ms:
                self._last_ms = now_ms
                self._counter = int.from_bytes(os.urandom(10), "big") >> 1  # room to count up
            ms, first = self._last_ms, self._counter
            self._counter += count
        ids = []
        for i in range(count):
            value = (ms << _RANDOM_BITS) | ((first + i) & _RANDOM_MASK)
            ids.append(base64.b32hexencode(value.to_bytes(16, "big"))[:26].decode())
        return ids


def format_received_at(now: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-26T07:45:42.123Z``."""
    seconds = int(now)
    millis = int((now - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
