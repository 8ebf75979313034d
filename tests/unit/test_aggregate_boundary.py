"""Review item 9: with --aggregate, a lone line that fits a plain record but not the KPL envelope is sent plain.

Over every line size around the 1 MiB record limit, for each kind of partition key: a line whose data and
key fit a plain record is never dead-lettered (it goes as a plain, non-aggregated record, which every KCL
consumer reads as is); only a line that no record can carry is.
"""

from __future__ import annotations

import pytest

from tailer.kpl import is_aggregated
from tailer.packing import MAX_RECORD_BYTES, AggregatingPacker, PlainPacker, Span
from tailer.partition import make_key_function
from tailer.shardmap import ShardMap

KEYS = ["random", "hash", "field:u"]


def shards():
    return [{"ShardId": "shard-0", "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": str(2**128 - 1)},
             "SequenceNumberRange": {"StartingSequenceNumber": "1"}}]


def line_of(total: int) -> bytes:
    head = b'{"u":"user-1","p":"'
    tail = b'"}\n'
    return head + b"x" * (total - len(head) - len(tail)) + tail


def pack(packer_kind: str, key: str, line: bytes):
    dead = []

    def dead_letter(span, bad, reason):
        dead.append(bad)
        span.pending -= 1

    key_fn = make_key_function(key)
    if packer_kind == "plain":
        packer = PlainPacker(key_fn, dead_letter)
    else:
        shard_map = ShardMap(shards) if key != "random" else None
        if shard_map is not None:
            shard_map.maybe_refresh()
        packer = AggregatingPacker(key_fn, dead_letter, max_bytes=MAX_RECORD_BYTES - 256, shard_map=shard_map)
    span = Span("s-00000001", 0, len(line), 1)
    packer.pack(span, [line])
    batches = packer.flush()
    records = [r for b in batches for r in b.records]
    return records, dead, batches


SIZES = [MAX_RECORD_BYTES - d for d in (0, 1, 12, 24, 40, 55, 56, 100, 200, 300)] + [MAX_RECORD_BYTES + 1]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("size", SIZES)
def test_aggregate_never_dead_letters_a_line_that_plain_accepts(key, size):
    line = line_of(size)
    plain_records, plain_dead, _ = pack("plain", key, line)
    records, dead, batches = pack("aggregate", key, line)
    if plain_dead:
        assert dead == [line], "what plain cannot send, no record can"
        return
    assert not dead, f"a {size}-byte line plain accepts was dead-lettered with --aggregate"
    [record] = records
    data, record_key, _ = record
    assert len(data) + len(record_key.encode()) <= MAX_RECORD_BYTES
    assert data == line or is_aggregated(data)
    assert sum(b.lines for b in batches) == 1, "the line is carried (and acknowledged) once"


def test_the_periodic_shard_map_refresh_never_blocks_the_caller():
    """Review item 6 (reading): ListShards off the loop thread once the map is known."""
    import threading
    import time

    from tailer import shardmap as module

    release = threading.Event()
    calls = []

    def slow_list_shards():
        calls.append(time.monotonic())
        if len(calls) > 1:
            release.wait(10)
        return shards()

    now = [0.0]
    shard_map = ShardMap(slow_list_shards, clock=lambda: now[0])
    shard_map.maybe_refresh()  # the first load: on the caller's thread
    assert shard_map.shard_for("k") == "shard-0"
    now[0] += module.REFRESH_SECONDS
    started = time.monotonic()
    shard_map.maybe_refresh()
    assert time.monotonic() - started < 1.0, "the loop waited for a slow ListShards"
    assert shard_map.shard_for("k") == "shard-0", "the old map serves meanwhile"
    release.set()
    deadline = time.monotonic() + 10
    while shard_map.refreshes < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert shard_map.refreshes == 2


def kpl_lookalike_line(total: int) -> bytes:
    """A spool line of ``total`` bytes that is itself a valid KPL aggregate of two other lines: the magic, a
    key table whose tag 0x0a (a newline) is written as the overlong varint 0x8a 0x00, and an MD5 that happens
    to end in the line's one newline (a nonce is searched for: about one in 270 digests does)."""
    import hashlib

    from tailer.kpl import KPL_MAGIC, varint

    def sub_record(data: bytes) -> bytes:
        inner = b"\x08\x00\x1a" + varint(len(data)) + data
        return b"\x1a" + varint(len(inner)) + inner

    for nonce in range(100_000):
        evil = sub_record(b"EVIL")
        pad = b"%08d" % nonce
        pad += b"y" * (total - 4 - 16 - 4 - len(evil) - len(sub_record(pad)) - 3)  # varint(len) grows by 2 here
        body = b"\x8a\x00\x01k" + evil + sub_record(pad)
        line = KPL_MAGIC + body + hashlib.md5(body, usedforsecurity=False).digest()
        if line.count(b"\n") == 1 and line.endswith(b"\n"):
            return line
    raise AssertionError("no nonce found")


def test_a_lone_line_whose_bytes_read_as_an_aggregate_is_dead_lettered_not_sent_to_be_taken_apart():
    """Hostile review (round six): a line too big for the envelope goes plain — and a consumer of an aggregated
    stream would read one that is itself a KPL aggregate as other lines. Kept in dead letters instead."""
    from tailer.kpl import deaggregate

    line = kpl_lookalike_line(MAX_RECORD_BYTES - 40)
    assert is_aggregated(line) and [data for _key, data in deaggregate(line)][0] == b"EVIL"
    records, dead, batches = pack("aggregate", "random", line)
    assert (records, dead) == ([], [line])
    plain_records, plain_dead, _ = pack("plain", "random", line)  # plain mode sends lines as they are
    assert [r[0] for r in plain_records] == [line] and not plain_dead


def test_a_rejected_record_of_one_line_that_reads_as_an_aggregate_is_dead_lettered_whole():
    """Only a record the packer made of several lines is taken apart when the service rejects it; a one-line
    record whose bytes happen to be a KPL aggregate is dead-lettered as the line it is."""
    import threading

    from tailer.delivery import Backoff, Delivery
    from tailer.errors import RecordsRejected
    from tailer.kpl import Aggregate
    from tailer.metrics import TailerMetrics
    from tailer.packing import Batch
    from tests.unit.test_shipper import FakeSink

    lookalike = Aggregate(max_bytes=4096)
    assert lookalike.add(b"first", "k") and lookalike.add(b"second", "k")
    line = lookalike.to_bytes()
    assert is_aggregated(line)

    class Sink(FakeSink):
        def put_records(self, records):
            if any(data == line for data, _, _ in records):
                raise RecordsRejected("invalid record", [0], code="ValidationException")
            return super().put_records(records)

    _records, _dead, [plain_batch] = pack("plain", "random", line)  # PlainPacker: one line a record
    span = Span("s-00000001", 0, len(line), 1)  # the aggregating packer's lone line: its one line recorded
    lone_batch = Batch(records=[(line, "k", None)], record_spans=[{span: 1}], lines=1, spans={span: 1})
    for batch in (plain_batch, lone_batch):
        sink, rejected = Sink(), []
        delivery = Delivery(sink, TailerMetrics(), backoff=Backoff(0.001, 0.01), abort=threading.Event(),
                            reject=lambda _batch, record, _reason: rejected.append(record[0]),  # noqa: B023
                            permanent_retry_seconds=0.01)
        delivery.deliver(batch)
        assert rejected == [line]
        assert not sink.accepted, "the record was taken apart and its fake lines sent"


def test_an_aggregate_larger_than_a_record_is_refused_when_the_packer_is_made():
    """The config refuses --aggregate-max-bytes past the record limit; the packer does too, whoever makes it."""
    from tailer.partition import RandomKeys

    AggregatingPacker(RandomKeys(), lambda *_: None, max_bytes=MAX_RECORD_BYTES)
    with pytest.raises(ValueError, match="record limit"):
        AggregatingPacker(RandomKeys(), lambda *_: None, max_bytes=MAX_RECORD_BYTES + 1)
