"""Firehose records: whole lines, in order, each record within 1,000 KiB, each call within 500 records and 4 MiB."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailer.firehose_packing import (
    FIREHOSE_MAX_BATCH_BYTES,
    FIREHOSE_MAX_RECORD_BYTES,
    NdjsonPacker,
)
from tailer.packing import MAX_RECORDS, Span, split_aggregate


def releasing(dead: list):
    def dead_letter(span, line, reason):
        dead.append(line)
        span.pending -= 1

    return dead_letter


def line(n: int, size: int) -> bytes:
    body = b'{"n":%d,"p":"' % n
    return body + b"x" * max(0, size - len(body) - 3) + b'"}\n'


def check(batches, spans, dead, lines, record_max, batch_max):
    """Every line in exactly one record (in order) or dead-lettered; every limit kept; spans add up."""
    shipped = []
    for batch in batches:
        assert 0 < len(batch.records) <= MAX_RECORDS
        assert sum(len(data) for data, _, _ in batch.records) <= batch_max
        assert batch.lines == sum(batch.spans.values())
        for data, key, hash_key in batch.records:
            assert key == "" and hash_key is None
            assert 0 < len(data) <= record_max and data.endswith(b"\n")
            shipped.extend(data.splitlines(keepends=True))
    assert shipped == [x for x in lines if x not in dead]
    assert all(len(x) > record_max for x in dead)
    for span in spans:
        assert span.pending == sum(b.spans.get(span, 0) for b in batches)


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.one_of(st.integers(8, 400), st.integers(400, 60_000), st.just(10_001)), max_size=300),
       chunk=st.integers(1, 50), record_max=st.sampled_from([10_000, 64_000, FIREHOSE_MAX_RECORD_BYTES]))
def test_records_are_whole_lines_in_order_within_every_limit(sizes, chunk, record_max):
    dead: list = []
    packer = NdjsonPacker(releasing(dead), record_max_bytes=record_max, max_batch_bytes=FIREHOSE_MAX_BATCH_BYTES)
    lines = [line(i, size) for i, size in enumerate(sizes)]
    spans, batches = [], []
    for start in range(0, len(lines), chunk):
        part = lines[start:start + chunk]
        span = Span("w-00000001", start, start + len(part), len(part))
        spans.append(span)
        packer.pack(span, part)
        batches += packer.take_full()
    batches += packer.flush()
    check(batches, spans, dead, lines, record_max, FIREHOSE_MAX_BATCH_BYTES)


def test_small_events_are_packed_thousands_to_a_record():
    packer = NdjsonPacker(releasing([]))
    lines = [line(i, 200) for i in range(50_000)]
    span = Span("w-00000001", 0, 1, len(lines))
    packer.pack(span, lines)
    batches = packer.take_full() + packer.flush()
    records = [r for b in batches for r in b.records]
    assert len(records) == 10  # 50,000 × 200 bytes in records of 1,024,000
    assert all(len(r[0]) > FIREHOSE_MAX_RECORD_BYTES - 200 for r in records[:-1])
    assert sum(b.lines for b in batches) == 50_000


def test_a_line_longer_than_a_record_is_dead_lettered_and_its_neighbours_shipped():
    dead: list = []
    packer = NdjsonPacker(releasing(dead), record_max_bytes=4096, max_batch_bytes=FIREHOSE_MAX_BATCH_BYTES)
    lines = [line(0, 100), line(1, 5000), line(2, 100)]
    span = Span("w-00000001", 0, 1, 3)
    packer.pack(span, lines)
    batches = packer.flush()
    assert dead == [lines[1]]
    assert [r[0] for b in batches for r in b.records] == [lines[0] + lines[2]]
    assert span.pending == 2


def test_limits_beyond_firehose_are_refused():
    with pytest.raises(ValueError):
        NdjsonPacker(releasing([]), record_max_bytes=FIREHOSE_MAX_RECORD_BYTES + 1)
    with pytest.raises(ValueError):
        NdjsonPacker(releasing([]), max_batch_bytes=FIREHOSE_MAX_BATCH_BYTES + 1)


def test_a_rejected_record_of_many_lines_is_taken_apart_line_by_line():
    lines = [line(i, 50) for i in range(5)]
    parts = split_aggregate((b"".join(lines), "", None))
    assert [data for data, _, _ in parts] == lines
    assert split_aggregate((lines[0], "", None)) is None, "one line: nothing to take apart"
    assert split_aggregate((b"no newline", "", None)) is None
