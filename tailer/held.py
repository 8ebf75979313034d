"""Records held out of their batch: refused alone by something on the way, retried slowly, never dropped.

When one record of a batch fails like its whole call even when sent alone (a
proxy's 413 for the one 800 kB line; :mod:`tailer.delivery`), the delivery hands
the batch back once every other record is in the stream, with that record in
``Batch.held``. The shipper acknowledges the rest — their segments can be
checkpointed and deleted — and keeps the held records here as a batch of their
own, sent again every ``permanent_retry_seconds``. Nothing is dead-lettered: the
record is not at fault unless the service says so for that record (issue 11).

Memory: reading stops while held records hold more than ``max_bytes``
(:meth:`HeldRecords.backed_up`). Not thread-safe: the shipper's loop owns it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .packing import Batch, Span

__all__ = ["HeldRecords"]

log = logging.getLogger(__name__)


class HeldRecords:
    def __init__(self, retry_seconds: float, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._retry_seconds = retry_seconds
        self._max_bytes = max_bytes
        self._clock = clock
        self._waiting: list[tuple[float, Batch]] = []

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def hold_out(self, batch: Batch) -> Batch:
        """The held records of ``batch`` as a batch of their own, kept until they are due again."""
        held = Batch()
        for i in batch.held:
            record = batch.records[i]
            lines = batch.lines_of(i)
            if i in batch.predicted:
                held.predicted[len(held.records)] = batch.predicted[i]
            held.records.append(record)
            held.record_spans.append(lines)
            held.nbytes += len(record[0]) + len(record[1].encode())
            for span, count in lines.items():
                held.add_span_lines(span, count)
        self._waiting.append((self._clock() + self._retry_seconds, held))
        log.warning("records refused alone held out of their batch; the rest is acknowledged", extra={
            "records": len(held.records), "lines": held.lines, "retry_seconds": self._retry_seconds})
        return held

    def take_due(self) -> list[Batch]:
        now = self._clock()
        due = [batch for at, batch in self._waiting if at <= now]
        self._waiting = [(at, batch) for at, batch in self._waiting if at > now]
        return due

    def next_due_at(self) -> float | None:
        return min((at for at, _ in self._waiting), default=None)

    def backed_up(self) -> bool:
        return sum(batch.nbytes for _, batch in self._waiting) >= self._max_bytes

    def spans(self) -> set[Span]:
        return {span for _, batch in self._waiting for span in batch.spans}
