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
