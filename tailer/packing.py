"""Turning spool lines into PutRecords batches under Kinesis's limits.

A :class:`Span` is a range of a segment read in one go; it counts its lines
still unacknowledged. Every line of a span ends up in exactly one record (or
in dead letters), every record in exactly one :class:`Batch`, and a batch
knows how many lines of each span it carries, so acknowledging a batch can
release its spans — also when aggregation mixes lines of many spans.

Limits (PutRecords): ≤ 500 records and ≤ 5 MiB per call counting data and
partition keys (their UTF-8 bytes); ≤ 1 MiB per record (data + key). Batches
are cut at ``max_batch_bytes`` (≤ 5 MiB) to bound the memory of calls in
flight, and the aggregates being filled hold at most ``max_open_bytes``
together (the largest are closed first), so memory does not grow with the
number of partition keys. Not thread-safe: the shipper's loop owns the packers.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from operator import add

from .kpl import Aggregate, deaggregate, encode_lines, is_aggregated
from .lines import LINE, split_lines
from .partition import KeyFunction, RandomKeys
from .shardmap import ShardMap
from .sink import Record

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_RECORD_BYTES",
    "MAX_RECORDS",
    "OPEN_AGGREGATES_MAX_BYTES",
    "AggregatingPacker",
    "Batch",
    "PackerBase",
    "PlainPacker",
    "Span",
    "split_aggregate",
]

MAX_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
# Aggregates being filled at once (one per shard; per key while the shard map is unknown)...
MAX_OPEN_AGGREGATES = 4096
# ... and their bytes together, whatever the number of keys and --aggregate-max-bytes.
OPEN_AGGREGATES_MAX_BYTES = 4 * 1024 * 1024

# Called for a line that can never be shipped: (span, line, reason). The callee owns the line from
# then on: it releases it from its span (``span.pending -= 1``) once the line is safely stored.
DeadLetter = Callable[["Span", bytes, str], None]


@dataclass(eq=False, slots=True)
class Span:
    """Bytes [start, end) of a segment; ``pending`` lines still await Kinesis."""

    segment_id: str
    start: int
    end: int
    pending: int


@dataclass(eq=False)
class Batch:
    """Records for one call, the lines they carry per span, and (for per-shard aggregates, by
    record index) the shard each record is predicted to land on."""

    records: list[Record] = field(default_factory=list)
    nbytes: int = 0
    lines: int = 0
    spans: dict[Span, int] = field(default_factory=dict)
    seq: int = 0
    predicted: dict[int, str] = field(default_factory=dict)
    record_spans: list[dict[Span, int]] = field(default_factory=list)  # per record; empty: one line each
    held: list[int] = field(default_factory=list)  # records handed back undelivered (tailer/delivery.py)
    rejected_lines: int = 0  # lines of it dead-lettered because the service named them

    def lines_of(self, index: int) -> dict[Span, int]:
        """The lines record ``index`` carries, per span."""
        if self.record_spans:
            return self.record_spans[index]
        for span, lines in self.spans.items():  # one line per record, in span order (PlainPacker)
            if index < lines:
                return {span: 1}
            index -= lines
        raise IndexError(index)

    def carries_several_lines(self, index: int) -> bool:
        """Whether record ``index`` was packed from more than one line (an aggregate, a Firehose record of
        NDJSON lines) — from what the packer recorded, not from its bytes: a single line may itself read as a
        KPL aggregate. A record appended after packing (lines sent again) has no entry: its bytes decide."""
        if index < len(self.record_spans):
            return sum(self.record_spans[index].values()) > 1
        return bool(self.record_spans)  # PlainPacker keeps none: one line a record, never appended to

    def add_span_lines(self, span: Span, lines: int) -> None:
        if lines:
            self.spans[span] = self.spans.get(span, 0) + lines
            self.lines += lines


class _PackerBase:
    def __init__(self, dead_letter: DeadLetter, clock: Callable[[], float] = time.monotonic,
                 max_batch_bytes: int = MAX_BATCH_BYTES) -> None:
        if not 0 < max_batch_bytes <= MAX_BATCH_BYTES:
            raise ValueError(f"max_batch_bytes must be in (0, {MAX_BATCH_BYTES}]")
        self.max_batch_bytes = max_batch_bytes
        self._dead_letter = dead_letter
        self._clock = clock
        self._batch = Batch()
        self._batch_seq = 0
        self._full: list[Batch] = []
        self.pending_since: float | None = None  # when the oldest unflushed line arrived

    def _new_batch(self) -> None:
        if self._batch.records:
            self._batch_seq += 1
            self._batch.seq = self._batch_seq
            self._full.append(self._batch)
        self._batch = Batch()

    def _add_record(self, record: Record, size: int, spans: dict[Span, int], predicted: str | None = None) -> None:
        batch = self._batch
        if batch.records and (len(batch.records) >= MAX_RECORDS or batch.nbytes + size > self.max_batch_bytes):
            self._new_batch()
            batch = self._batch
        if predicted is not None:
            batch.predicted[len(batch.records)] = predicted
        batch.records.append(record)
        batch.record_spans.append(spans)
        batch.nbytes += size
        for span, lines in spans.items():
            batch.add_span_lines(span, lines)

    def _reject(self, span: Span, line: bytes, reason: str) -> None:
        self._dead_letter(span, line, reason)  # the callee releases the line from its span

    def pack(self, span: Span, lines: list[bytes]) -> None:
        raise NotImplementedError

    def pack_chunk(self, span: Span, data: bytes) -> None:
        """The lines of ``data`` — bytes read from the spool, ending at a newline — into records: the
        same as ``pack(span, split_lines(data))``, which a packer may do without a line object each."""
        self.pack(span, split_lines(data))

    def take_full(self) -> list[Batch]:
        """Batches that reached a limit and are ready to send."""
        full, self._full = self._full, []
        return full


PackerBase = _PackerBase  # for the packers of other destinations (tailer/firehose_packing.py)


class PlainPacker(_PackerBase):
    """One line, one record."""

    def __init__(self, key_fn: KeyFunction, dead_letter: DeadLetter, clock: Callable[[], float] = time.monotonic,
                 max_batch_bytes: int = MAX_BATCH_BYTES) -> None:
        super().__init__(dead_letter, clock, max_batch_bytes)
        self._key_fn = key_fn

    def pack(self, span: Span, lines: list[bytes]) -> None:
        if self.pending_since is None and lines:
            self.pending_since = self._clock()
        if isinstance(self._key_fn, RandomKeys):
            self._pack_random_keys(span, lines)
        else:
            self._pack_each(span, lines, self._key_fn)

    def _pack_random_keys(self, span: Span, lines: list[bytes]) -> None:
        """Random keys (the default): the same batches as ``_pack_each``, cut with ``bisect`` over
        cumulative sizes instead of a Python step per line (keys are ASCII: characters are bytes)."""
        keys = self._key_fn.many(len(lines))
        sizes = list(map(add, map(len, lines), map(len, keys)))
        if not lines or max(sizes) > MAX_RECORD_BYTES:  # a line over the record limit: the careful path
            pending = iter(keys)
            self._pack_each(span, lines, lambda _line: next(pending))
            return
        ends = list(accumulate(sizes))  # ends[i]: bytes of lines[:i+1] with their keys
        records = list(zip(lines, keys, repeat(None)))
        max_batch_bytes = self.max_batch_bytes
        i, n = 0, len(lines)
        while i < n:
            batch = self._batch
            before = ends[i - 1] if i else 0
            j = bisect_right(ends, before + max_batch_bytes - batch.nbytes, i, min(n, i + MAX_RECORDS - len(batch.records)))
            if j == i:
                if batch.records:  # full: the next line opens a new batch
                    self._new_batch()
                    continue
                j = i + 1  # a line larger than the batch limit goes alone, as in _pack_each
            batch.records.extend(records[i:j])
            batch.nbytes += ends[j - 1] - before
            batch.add_span_lines(span, j - i)
            i = j
            if i < n or len(batch.records) >= MAX_RECORDS:
                self._new_batch()

    def _pack_each(self, span: Span, lines: list[bytes], key_fn: KeyFunction) -> None:
        max_batch_bytes = self.max_batch_bytes
        batch = self._batch
        records = batch.records
        nbytes = batch.nbytes
        in_batch = 0
        for line in lines:
            key = key_fn(line)
            size = len(line) + len(key.encode())
            if size > MAX_RECORD_BYTES:
                self._reject(span, line, f"line of {len(line)} bytes (with its key) exceeds the 1 MiB record limit")
                continue
            if records and (len(records) >= MAX_RECORDS or nbytes + size > max_batch_bytes):
                batch.nbytes = nbytes
                batch.add_span_lines(span, in_batch)
                self._new_batch()
                batch, records, nbytes, in_batch = self._batch, self._batch.records, 0, 0
            records.append((line, key, None))
            nbytes += size
            in_batch += 1
        batch.nbytes = nbytes
        batch.add_span_lines(span, in_batch)
        if len(records) >= MAX_RECORDS:
            self._new_batch()

    def flush(self) -> list[Batch]:
        self._new_batch()
        self.pending_since = None
        return self.take_full()


class _OpenAggregate:
    __slots__ = ("aggregate", "key", "spans")

    def __init__(self, max_bytes: int, key: str | None) -> None:
        self.aggregate = Aggregate(max_bytes)
        self.key = key
        self.spans: dict[Span, int] = {}


class AggregatingPacker(_PackerBase):
    """Many lines per record, in the KPL format.

    With ``random`` keys every aggregate gets one fresh key shared by all its
    lines. With per-line keys a ``shard_map`` groups lines by the shard their
    key hashes to, so every sub-record belongs to the shard its aggregate lands on.
    """

    def __init__(
        self,
        key_fn: KeyFunction,
        dead_letter: DeadLetter,
        *,
        max_bytes: int,
        shard_map: ShardMap | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        max_open_bytes: int = OPEN_AGGREGATES_MAX_BYTES,
    ) -> None:
        super().__init__(dead_letter, clock, max_batch_bytes)
        if max_bytes > MAX_RECORD_BYTES:
            raise ValueError(f"an aggregate's max_bytes must be at most the {MAX_RECORD_BYTES}-byte record limit")
        self.max_open_bytes = max_open_bytes
        self._per_line_keys = not isinstance(key_fn, RandomKeys)
        if self._per_line_keys and shard_map is None:
            raise ValueError("per-line partition keys with --aggregate need a shard map")
        self._key_fn = key_fn
        self._max_bytes = max_bytes
        self._shard_map = shard_map
        self._open: dict[str, _OpenAggregate] = {}

    def pack(self, span: Span, lines: list[bytes]) -> None:
        """Lines, each ending in a newline (as :func:`split_lines` gives them)."""
        if self._per_line_keys:
            self._packed(span, lines, self._pack_per_line_keys)
        else:
            self._packed(span, b"".join(lines), self._pack_random_key)

    def pack_chunk(self, span: Span, data: bytes) -> None:
        if self._per_line_keys:
            self._packed(span, split_lines(data), self._pack_per_line_keys)
        else:
            self._packed(span, data, self._pack_random_key)

    def _packed(self, span: Span, lines_or_chunk, pack: Callable) -> None:
        """Per-line keys take lines, random keys the chunk; the bookkeeping around either is the same."""
        if self.pending_since is None and lines_or_chunk:
            self.pending_since = self._clock()
        pack(span, lines_or_chunk)
        self._bound_open_aggregates()

    def open_bytes(self) -> int:
        return sum(current.aggregate.size for current in self._open.values())

    def _bound_open_aggregates(self) -> None:
        """Past the count or byte budget, close the largest aggregates until half of it is left."""
        total = self.open_bytes()
        if len(self._open) <= MAX_OPEN_AGGREGATES and total <= self.max_open_bytes:
            return
        by_size = sorted(self._open, key=lambda slot: self._open[slot].aggregate.size, reverse=True)
        for slot in by_size:
            if len(self._open) <= MAX_OPEN_AGGREGATES // 2 and total <= self.max_open_bytes // 2:
                break
            total -= self._open[slot].aggregate.size
            self._close(slot)

    def _pack_random_key(self, span: Span, data: bytes) -> None:
        """One key per aggregate, its lines encoded straight from the chunk (:func:`tailer.kpl.encode_lines`:
        one C pass where it is built), as many as fit, with no object per line."""
        pos, n = 0, len(data)
        while pos < n:
            current = self._open.get("")
            if current is None:
                current = self._open[""] = _OpenAggregate(self._max_bytes, self._key_fn(b""))
            aggregate = current.aggregate
            taken = 0
            if aggregate.count == 0:  # the first line also puts the key in the key table, and is always taken
                end = data.find(b"\n", pos) + 1
                if end == 0:  # no newline left: not a line (the reader hands over complete lines only)
                    break
                line = data[pos:end]
                aggregate.add(line, current.key)
                pos = end
                if aggregate.record_bytes > MAX_RECORD_BYTES:
                    del self._open[""]
                    self._lone_line(span, line, current.key)
                    continue
                taken = 1
            records, pos, count = encode_lines(data, pos, aggregate.room_for(current.key))
            if count:
                aggregate.extend_records(records, count)
                taken += count
            if taken:
                current.spans[span] = current.spans.get(span, 0) + taken
            if pos < n:
                self._close("")

    def _pack_per_line_keys(self, span: Span, lines: list[bytes]) -> None:
        """Per-line keys: group lines by the shard their key hashes to."""
        self._shard_map.maybe_refresh()
        for line in lines:
            key = self._key_fn(line)
            # Group by shard; while the shard map is unknown, by key (always correct, packs less).
            slot = self._shard_map.shard_for(key) or "key:" + key
            current = self._open.get(slot)
            if current is None:
                current = self._open[slot] = _OpenAggregate(self._max_bytes, key)
            if not current.aggregate.add(line, key):
                self._close(slot)
                current = self._open[slot] = _OpenAggregate(self._max_bytes, key)
                current.aggregate.add(line, key)
            if current.aggregate.record_bytes > MAX_RECORD_BYTES:  # a lone line over the limit
                del self._open[slot]
                self._lone_line(span, line, key)
                continue
            current.spans[span] = current.spans.get(span, 0) + 1

    def _lone_line(self, span: Span, line: bytes, key: str) -> None:
        """A line too big for the KPL envelope: a plain record if it fits one (KCL reads both), else rejected —
        as is one whose own bytes are a KPL aggregate (magic, protobuf, digest: never a JSON event), which
        every consumer of an aggregated stream would take apart into other lines than the one sent."""
        size = len(line) + len(key.encode())
        if size > MAX_RECORD_BYTES:
            self._reject(span, line, f"line of {len(line)} bytes exceeds the 1 MiB record limit")
            return
        if is_aggregated(line):
            self._reject(span, line, f"line of {len(line)} bytes is too big for an aggregate, and its bytes read as "
                                     "a KPL aggregate: sent plain, consumers would take it apart into other lines")
            return
        self._add_record((line, key, None), size, {span: 1})

    def _close(self, slot: str) -> None:
        current = self._open.pop(slot, None)
        if current is None or not current.aggregate.count:
            return
        key = current.aggregate.first_key
        data = current.aggregate.to_bytes()
        # Only an aggregate of lines grouped by shard (many keys) can land where some of its keys do not belong.
        predicted = None if slot == "" or slot.startswith("key:") else slot
        self._add_record((data, key, None), len(data) + current.aggregate.first_key_bytes, current.spans, predicted)

    def flush(self) -> list[Batch]:
        for slot in list(self._open):
            self._close(slot)
        self._new_batch()
        self.pending_since = None
        return self.take_full()


def split_aggregate(record: Record) -> list[Record] | None:
    """A record of several lines as one plain record per line, or None for a record of one line.

    Takes apart a KPL aggregate (each line under its own key) and a record of NDJSON lines
    (Firehose packs many lines per record; each keeps the record's key): a spool line never
    holds a newline but its last byte.
    """
    data = record[0]
    if is_aggregated(data):
        parts = [(line, key, None) for key, line in deaggregate(data)]
    elif data.endswith(b"\n"):
        parts = [(line, record[1], None) for line in LINE.findall(data)]
    else:  # not lines (never made by a packer): kept whole
        return None
    return parts if len(parts) > 1 else None
