"""What is left to deliver of one batch: groups of record indexes that only shrink.

Nothing accepted is ever in a group again. Any group that is due goes out (not
only the first: a group waiting for a slow retry never holds back the others),
one call at a time, so a batch never has more than one call out. Splitting is
per group: a refused call is split in halves until single records are left; a
record refused alone like its whole call is ``held`` (the call's fault, retried
slowly — and when nothing else is left, the delivery hands the batch back with
it held out, so its neighbours are acknowledged). After ``LONE_REFUSALS_MAX``
lone refusals (perhaps the path refuses every call) the halves of a refused call
each wait a backoff before they go: fewer calls, yet every record still ends up
delivered or held — a group of several records is never retried as it is.
A record appended during the delivery (a line of a rejected aggregate, a
misplaced line) has no lines of its own to hand back: holding it holds the
original record it came from (its lines are sent again: duplicates, never a
loss). Owned by one delivery thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .packing import MAX_BATCH_BYTES, MAX_RECORDS, Batch
from .sink import Record

__all__ = ["LONE_REFUSALS_MAX", "Outstanding", "OutstandingGroup"]

# Lone records refused like their whole call, after which a batch splits only with a backoff: then it may
# be the call that is refused (every record alone would fail), and splitting at once would only make calls.
LONE_REFUSALS_MAX = 3


class OutstandingGroup:
    """Record indexes that go out in one call, and when they may be tried again."""

    __slots__ = ("due", "failures", "indexes")

    def __init__(self, indexes: list[int]) -> None:
        self.indexes = indexes
        self.failures = 0
        self.due = float("-inf")


class Outstanding:
    """What is left of one batch (see the module docstring)."""

    def __init__(self, batch: Batch, clock: Callable[[], float]) -> None:
        self._batch = batch
        self._clock = clock
        self._groups: deque[OutstandingGroup] = deque([OutstandingGroup(list(range(len(batch.records))))] if batch.records else [])
        self._original = len(batch.records)  # records appended later are held as the record they came from
        self._origin: dict[int, int] = {}  # appended record index -> the original record index it came from
        self.held: list[int] = []
        self.splitting = True  # splits at once; off (split with a backoff) after LONE_REFUSALS_MAX lone refusals
        self.lone_refusals = 0
        self._placements: dict[int, int] = {}  # original record -> times its lines were sent again as misplaced

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
        """Move the records of a group the call path refuses out of the batch's groups (an appended record:
        the original it came from); False if a record has no original to hold (never, by construction)."""
        originals = [self._origin.get(i, i) for i in group.indexes]
        if any(i >= self._original for i in originals):
            return False
        for i in originals:
            if i not in self.held:
                self.held.append(i)
        self._groups.remove(group)
        return True

    def split_later(self, group: OutstandingGroup, seconds: float) -> None:
        """Split the group in halves that each wait ``seconds`` (and count a failure) before they go."""
        self.split(group)
        second = self._groups[self._groups.index(group) + 1]
        self.retry_in(group, seconds)
        self.retry_in(second, seconds)
        second.failures = group.failures

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

    def placement_round(self, index: int) -> int:
        """Count one more "landed on a shard that does not own its keys" for the original record ``index``
        came from; returns how many there have been."""
        root = self._origin.get(index, index)
        self._placements[root] = self._placements.get(root, 0) + 1
        return self._placements[root]

    def append(self, records: list[Record], predicted: list[str | None] | None = None, *, origin: int,
               after_seconds: float = 0.0) -> None:
        """New records for the batch (lines of a rejected aggregate, misplaced lines) that came from record
        ``origin``, in calls within limits, due in ``after_seconds``."""
        batch = self._batch
        first = len(batch.records)
        batch.records.extend(records)
        root = self._origin.get(origin, origin)
        for i in range(first, len(batch.records)):
            self._origin[i] = root
        for offset, shard in enumerate(predicted or ()):
            if shard is not None:
                batch.predicted[first + offset] = shard
        current: list[int] = []
        size = 0
        for i in range(first, len(batch.records)):
            data, key, _ = self._batch.records[i]
            nbytes = len(data) + len(key.encode())
            if current and (len(current) >= MAX_RECORDS or size + nbytes > MAX_BATCH_BYTES):
                self._add_group(current, after_seconds)
                current, size = [], 0
            current.append(i)
            size += nbytes
        if current:
            self._add_group(current, after_seconds)

    def _add_group(self, indexes: list[int], after_seconds: float) -> None:
        group = OutstandingGroup(indexes)
        if after_seconds > 0:
            group.due = self._clock() + after_seconds
        self._groups.append(group)
