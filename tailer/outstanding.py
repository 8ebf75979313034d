"""What is left to deliver of one batch: groups of record indexes that only shrink.

Nothing accepted is ever in a group again. Any group that is due goes out (not
only the first: a group waiting for a slow retry never holds back the others),
one call at a time, so a batch never has more than one call out. Splitting is
per group: narrowing a rejected call makes at most log2(n) calls without a
backoff before it stops (once one record alone fails like the whole call, that
record's group is ``held``: the call's fault, retried slowly — and when nothing
else is left, the delivery hands the batch back with it held out, so its
neighbours are acknowledged). Owned by one delivery thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .packing import MAX_BATCH_BYTES, MAX_RECORDS, Batch
from .sink import Record

__all__ = ["LONE_REFUSALS_MAX", "Outstanding", "OutstandingGroup"]

# Lone records refused like their whole call, after which a batch stops splitting: then it is the call
# that is refused (every record alone would fail), and splitting further would only make calls.
LONE_REFUSALS_MAX = 3


class OutstandingGroup:
    """Record indexes that go out in one call, and when they may be tried again."""

    __slots__ = ("due", "failures", "indexes", "splitting")

    def __init__(self, indexes: list[int]) -> None:
        self.indexes = indexes
        self.failures = 0
        self.due = float("-inf")
        self.splitting = True


class Outstanding:
    """What is left of one batch (see the module docstring)."""

    def __init__(self, batch: Batch, clock: Callable[[], float]) -> None:
        self._batch = batch
        self._clock = clock
        self._groups: deque[OutstandingGroup] = deque([OutstandingGroup(list(range(len(batch.records))))] if batch.records else [])
        self._original = len(batch.records)  # records appended later (lines of a split aggregate) cannot be held
        self.held: list[int] = []
        self.splitting = True  # off after LONE_REFUSALS_MAX lone records failed like their calls
        self.lone_refusals = 0

    def __bool__(self) -> bool:
        return bool(self._groups)

    def records_left(self) -> int:
        return sum(len(g.indexes) for g in self._groups) + len(self.held)

    def next_due(self) -> OutstandingGroup | None:
        """The first group that is due, in order (None: every group waits for its retry)."""
        now = self._clock()
        for group in self._groups:
            if group.due <= now:
                return group
        return None

    def wait_seconds(self) -> float:
        return max(0.0, min(g.due for g in self._groups) - self._clock())

    def hold(self, group: OutstandingGroup) -> bool:
        """Move a lone record the call path refuses out of the batch's groups; False if it cannot be
        (a record appended during the delivery has no lines of its own to hand back)."""
        if len(group.indexes) != 1 or group.indexes[0] >= self._original:
            return False
        self.held.append(group.indexes[0])
        self._groups.remove(group)
        return True

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
        second.due = group.due
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
