"""What is left to deliver of one batch: groups of record indexes that only shrink.

Nothing accepted is ever in a group again. Groups go out one at a time, in
order, so a batch never has more than one call out; narrowing a rejected call
makes at most log2(n) calls without a backoff before it stops (once one record
alone fails like the whole call, ``splitting`` is off). Owned by one delivery
thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .packing import MAX_BATCH_BYTES, MAX_RECORDS, Batch
from .sink import Record

__all__ = ["Outstanding", "OutstandingGroup"]


class OutstandingGroup:
    """Record indexes that go out in one call, and when they may be tried again."""

    __slots__ = ("due", "failures", "indexes")

    def __init__(self, indexes: list[int]) -> None:
        self.indexes = indexes
        self.failures = 0
        self.due = float("-inf")


class Outstanding:
    """What is left of one batch: groups of record indexes that only shrink, sent one at a time in
    order (so a batch never has more than one call out, and narrowing makes at most log2(n) calls
    without a backoff before it stops, once one record alone fails like the whole call)."""

    def __init__(self, batch: Batch, clock: Callable[[], float]) -> None:
        self._batch = batch
        self._clock = clock
        self._groups: deque[OutstandingGroup] = deque([OutstandingGroup(list(range(len(batch.records))))] if batch.records else [])
        self.splitting = True

    def __bool__(self) -> bool:
        return bool(self._groups)

    def records_left(self) -> int:
        return sum(len(g.indexes) for g in self._groups)

    def next_due(self) -> OutstandingGroup | None:
        front = self._groups[0]
        return front if front.due <= self._clock() else None

    def wait_seconds(self) -> float:
        return max(0.0, self._groups[0].due - self._clock())

    def retry_in(self, group: OutstandingGroup, seconds: float) -> None:
        group.due = self._clock() + seconds
        group.failures += 1

    def keep(self, group: OutstandingGroup, remaining: list[int]) -> None:
        if remaining:
            group.indexes = remaining
        else:
            self._groups.remove(group)

    def split(self, group: OutstandingGroup) -> None:
        half = len(group.indexes) // 2
        position = self._groups.index(group)
        second = OutstandingGroup(group.indexes[half:])
        group.indexes = group.indexes[:half]
        self._groups.insert(position + 1, second)

    def append(self, records: list[Record], predicted: list[str | None] | None = None) -> None:
        """New records for the batch (lines of a rejected aggregate, misplaced lines), in calls within limits."""
        batch = self._batch
        first = len(batch.records)
        batch.records.extend(records)
        for offset, shard in enumerate(predicted or ()):
            if shard is not None:
                batch.predicted[first + offset] = shard
        current: list[int] = []
        size = 0
        for i in range(first, len(batch.records)):
            data, key, _ = self._batch.records[i]
            nbytes = len(data) + len(key.encode())
            if current and (len(current) >= MAX_RECORDS or size + nbytes > MAX_BATCH_BYTES):
                self._groups.append(OutstandingGroup(current))
                current, size = [], 0
            current.append(i)
            size += nbytes
        if current:
            self._groups.append(OutstandingGroup(current))
