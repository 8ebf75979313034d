"""Packing spool lines into Firehose records: many whole lines per record, NDJSON inside.

Firehose bills every record rounded up to 5 KB, and a delivery to S3 is the
records' bytes one after another. So a record here is as many complete lines as
fit in ``record_max_bytes`` (at most 1,000 KiB, Firehose's record limit), kept
byte for byte: an S3 object stays NDJSON, one event per line, whatever the
record boundaries. A 200-byte event costs 1/5,000 of a record instead of a
whole 5 KB one (docs/performance.md has the figures).

Limits (PutRecordBatch): ≤ 500 records and ≤ 4 MiB per call, ≤ 1,000 KiB per
record. A line longer than a record is dead-lettered, as the Kinesis packers do
with a line over 1 MiB. Records carry no partition key (``""``). Not
thread-safe: the shipper's loop owns it.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable
from itertools import accumulate

from .packing import DeadLetter, PackerBase, Span

__all__ = ["FIREHOSE_MAX_BATCH_BYTES", "FIREHOSE_MAX_RECORD_BYTES", "NdjsonPacker"]

FIREHOSE_MAX_RECORD_BYTES = 1000 * 1024
FIREHOSE_MAX_BATCH_BYTES = 4 * 1024 * 1024


class NdjsonPacker(PackerBase):
    """Whole lines joined into records of at most ``record_max_bytes``; a record waits for more lines
    until it is full, or until the shipper flushes it after ``--linger``."""

    def __init__(self, dead_letter: DeadLetter, *, record_max_bytes: int = FIREHOSE_MAX_RECORD_BYTES,
                 max_batch_bytes: int = FIREHOSE_MAX_BATCH_BYTES, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < record_max_bytes <= FIREHOSE_MAX_RECORD_BYTES:
            raise ValueError(f"record_max_bytes must be in (0, {FIREHOSE_MAX_RECORD_BYTES}]")
        if not record_max_bytes <= max_batch_bytes <= FIREHOSE_MAX_BATCH_BYTES:
            raise ValueError(f"max_batch_bytes must be in [{record_max_bytes}, {FIREHOSE_MAX_BATCH_BYTES}]")
        super().__init__(dead_letter, clock, max_batch_bytes)
        self.record_max_bytes = record_max_bytes
        self._parts: list[bytes] = []
        self._size = 0
        self._spans: dict[Span, int] = {}

    def pack(self, span: Span, lines: list[bytes]) -> None:
        if not lines:
            return
        if self.pending_since is None:
            self.pending_since = self._clock()
        limit = self.record_max_bytes
        start = 0
        for i, line in enumerate(lines):  # runs of lines that fit a record, around the ones that never do
            if len(line) > limit:
                self._pack_run(span, lines[start:i])
                self._reject(span, line, f"line of {len(line)} bytes exceeds the {limit}-byte Firehose record")
                start = i + 1
        self._pack_run(span, lines[start:] if start else lines)

    def _pack_run(self, span: Span, lines: list[bytes]) -> None:
        """Lines each at most a record long: fill the open record, close it, go on (bisect over sizes)."""
        ends = list(accumulate(map(len, lines)))  # ends[i]: bytes of lines[:i+1]
        i, n = 0, len(lines)
        while i < n:
            before = ends[i - 1] if i else 0
            j = bisect_right(ends, before + self.record_max_bytes - self._size, i)
            if j == i:  # the next line does not fit what is left: close, and it fits an empty record
                self._close()
                continue
            self._parts.extend(lines[i:j])
            self._size += ends[j - 1] - before
            self._spans[span] = self._spans.get(span, 0) + (j - i)
            i = j
            if i < n:
                self._close()

    def _close(self) -> None:
        if not self._parts:
            return
        data = b"".join(self._parts)
        self._add_record((data, "", None), len(data), self._spans)
        self._parts, self._size, self._spans = [], 0, {}

    def flush(self) -> list:
        self._close()
        self._new_batch()
        self.pending_since = None
        return self.take_full()
