"""Which shard a partition key lands on, for aggregating per-key records by shard.

The KCL drops sub-records whose own partition key hashes outside the shard the
aggregated record arrived on. With ``--aggregate`` and per-record keys
(``field:`` or ``hash``), lines are therefore grouped by the shard their key
hashes to (MD5, as Kinesis does), and each aggregate is sent with the first
sub-record's key, which lands it on that same shard — while the map is right.
It is re-read every minute (in a background thread: the shipping loop never
waits for ListShards but for the very first attempt, which ends at the call
deadline), and at once (at most once a second) when a
delivery sees a record land on another shard than predicted (see
:mod:`tailer.placement`).

Thread-safe: the loop reads it while delivery threads may refresh it; each
refresh swaps one immutable table.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import threading
import time
from collections.abc import Callable

from .errors import ShipError

__all__ = ["ShardMap", "hash_key"]

log = logging.getLogger(__name__)
REFRESH_SECONDS = 60.0
RETRY_SECONDS = 5.0
MISMATCH_REFRESH_SECONDS = 1.0
MISMATCH_WAIT_SECONDS = 1.0  # longest a delivery waits for another's refresh


def hash_key(key: str) -> int:
    """The 128-bit hash Kinesis places a partition key by."""
    return int.from_bytes(hashlib.md5(key.encode(), usedforsecurity=False).digest(), "big")


class _Table:
    __slots__ = ("ids", "ranges", "starts")

    def __init__(self, shards: list[dict]) -> None:
        self.ranges = {s["ShardId"]: (int(s["HashKeyRange"]["StartingHashKey"]),
                                      int(s["HashKeyRange"]["EndingHashKey"])) for s in shards}
        open_shards = sorted((self.ranges[s["ShardId"]][0], s["ShardId"]) for s in shards
                             if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {}))
        self.starts = [start for start, _ in open_shards]
        self.ids = [shard for _, shard in open_shards]


class ShardMap:
    def __init__(self, list_shards: Callable[[], list[dict]], clock: Callable[[], float] = time.monotonic) -> None:
        self._list_shards = list_shards
        self._clock = clock
        self._table = _Table([])
        self._loaded_at = float("-inf")
        self._refreshing = threading.Lock()
        self._tried = False
        self.refreshes = 0

    def refresh(self) -> None:
        """Re-read the shards now; raises ShipError if ListShards fails (the old map stays)."""
        with self._refreshing:
            self._load()

    def _load(self) -> None:
        table = _Table(self._list_shards())
        if table.ids:
            self._table = table
        self._loaded_at = self._clock()
        self.refreshes += 1

    def maybe_refresh(self) -> None:
        """The loop's periodic refresh; a failure is logged and retried in a few seconds.

        Only the first load runs on the caller's thread (before it lines are grouped per key anyway);
        later ones run in a thread of their own, so the loop never waits for a slow ListShards."""
        if self._clock() - self._loaded_at < REFRESH_SECONDS:
            return
        if not self._refreshing.acquire(blocking=False):
            return  # a delivery (or a background refresh) is refreshing it right now
        if self.refreshes == 0 and not self._tried:  # only the very first attempt; retries never block the loop
            self._tried = True
            self._locked_load()
        else:
            threading.Thread(target=self._locked_load, name="shard-map-refresh", daemon=True).start()

    def _locked_load(self) -> None:
        """Load, with ``_refreshing`` already held (released here)."""
        try:
            self._load()
        except ShipError as exc:
            self._loaded_at = self._clock() - REFRESH_SECONDS + RETRY_SECONDS
            log.error("shard map not loaded; aggregating per key until it is", extra={"error": str(exc)})
        finally:
            self._refreshing.release()

    def refresh_after_mismatch(self) -> None:
        """A record landed elsewhere than predicted: refresh unless that was just done; may raise ShipError."""
        # Several deliveries may notice at once: one ListShards serves them all. One that is slow (it ends at
        # the call deadline) never holds the others: they go on with the map as it is (lines sent again).
        if not self._refreshing.acquire(timeout=MISMATCH_WAIT_SECONDS):
            return
        try:
            if self._clock() - self._loaded_at >= MISMATCH_REFRESH_SECONDS:
                self._load()
        finally:
            self._refreshing.release()

    def shard_for(self, key: str) -> str | None:
        """The open shard ``key`` hashes to, or ``None`` while the map is unknown."""
        table = self._table
        if not table.ids:
            return None
        return table.ids[bisect.bisect_right(table.starts, hash_key(key)) - 1]

    def owns(self, shard_id: str, key: str) -> bool | None:
        """Does ``shard_id`` (open or closed) cover ``key``'s hash? ``None`` if the shard is unknown."""
        bounds = self._table.ranges.get(shard_id)
        if bounds is None:
            return None
        return bounds[0] <= hash_key(key) <= bounds[1]
