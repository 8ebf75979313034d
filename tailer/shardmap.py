"""Which shard a partition key lands on, for aggregating per-key records by shard.

The KCL drops sub-records whose own partition key hashes outside the shard the
aggregated record arrived on. With ``--aggregate`` and per-record keys
(``field:`` or ``hash``), lines are therefore grouped by the shard their key
hashes to (MD5, as Kinesis does), and each aggregate is sent with the first
sub-record's key, which lands it on that same shard. The map is re-read
periodically, so resharding is picked up.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import time
from collections.abc import Callable

from .errors import ShipError

__all__ = ["ShardMap"]

log = logging.getLogger(__name__)
REFRESH_SECONDS = 60.0
RETRY_SECONDS = 5.0


class ShardMap:
    def __init__(self, list_shards: Callable[[], list[dict]], clock: Callable[[], float] = time.monotonic) -> None:
        self._list_shards = list_shards
        self._clock = clock
        self._starts: list[int] = []
        self._ids: list[str] = []
        self._loaded_at = float("-inf")

    def refresh(self) -> None:
        open_shards = [s for s in self._list_shards() if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {})]
        ranges = sorted((int(s["HashKeyRange"]["StartingHashKey"]), s["ShardId"]) for s in open_shards)
        if ranges:
            self._starts = [start for start, _ in ranges]
            self._ids = [shard for _, shard in ranges]
        self._loaded_at = self._clock()

    def maybe_refresh(self) -> None:
        if self._clock() - self._loaded_at < REFRESH_SECONDS:
            return
        try:
            self.refresh()
        except ShipError as exc:
            self._loaded_at = self._clock() - REFRESH_SECONDS + RETRY_SECONDS
            log.error("shard map not loaded; aggregating per key until it is", extra={"error": str(exc)})

    def shard_for(self, key: str) -> str | None:
        """The shard ``key`` hashes to, or ``None`` while the map is unknown."""
        if not self._ids:
            return None
        hashed = int.from_bytes(hashlib.md5(key.encode(), usedforsecurity=False).digest(), "big")
        return self._ids[bisect.bisect_right(self._starts, hashed) - 1]
