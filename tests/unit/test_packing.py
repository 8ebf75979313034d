"""Batches obey PutRecords limits and account for every line exactly once."""

from __future__ import annotations

from tailer.kpl import deaggregate
from tailer.packing import (
    MAX_BATCH_BYTES,
    MAX_RECORD_BYTES,
    MAX_RECORDS,
    AggregatingPacker,
    PlainPacker,
    Span,
)
from tailer.partition import RandomKeys, make_key_function
from tailer.shardmap import ShardMap


def shards(n: int) -> list[dict]:
    step = 2**128 // n
    return [{"ShardId": f"shard-{i}", "HashKeyRange": {"StartingHashKey": str(i * step),
                                                         "EndingHashKey": str((i + 1) * step - 1)},
             "SequenceNumberRange": {"StartingSequenceNumber": "1"}} for i in range(n)]


def test_plain_batches_stay_within_limits_and_count_every_line():
    dead = []
    packer = PlainPacker(RandomKeys(), lambda span, line, reason: dead.append(line))
    lines = [b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * (i % 40_000)) for i in range(3000)]
    lines.insert(100, b"y" * (MAX_RECORD_BYTES + 10) + b"\n")
    span = Span("w-00000001", 0, sum(map(len, lines)), len(lines))
    packer.pack(span, lines)
    batches = packer.take_full() + packer.flush()
    for batch in batches:
        assert 0 < len(batch.records) <= MAX_RECORDS
        assert batch.nbytes <= MAX_BATCH_BYTES
        assert batch.nbytes == sum(len(d) + len(k) for d, k, _ in batch.records)
        assert all(len(d) + len(k) <= MAX_RECORD_BYTES for d, k, _ in batch.records)
        assert batch.lines == len(batch.records) == batch.spans[span]
    shipped = [d for b in batches for d, _, _ in b.records]
    assert shipped == [line for line in lines if len(line) <= MAX_RECORD_BYTES]
    assert len(dead) == 1 and span.pending == len(lines) - 1


def test_field_keys_and_fallback():
    keys = make_key_function("field:user.id")
    assert keys(b'{"user":{"id":"u-7"}}\n') == "u-7"
    assert keys(b'{"user":{"id":42}}\n') == "42"
    fallback = keys(b'{"user":{}}\n')
    assert fallback and keys.missing == 1


def test_aggregates_with_random_keys_share_one_key_each():
    packer = AggregatingPacker(RandomKeys(), lambda *a: None, max_bytes=10_000)
    lines = [b'{"n":%d}\n' % i for i in range(5000)]
    span = Span("w-00000001", 0, 1, len(lines))
    packer.pack(span, lines)
    batches = packer.take_full() + packer.flush()
    out = []
    for batch in batches:
        for data, key, _ in batch.records:
            assert len(data) + len(key) <= 10_000
            subs = list(deaggregate(data))
            assert {k for k, _ in subs} == {key}
            out.extend(d for _, d in subs)
    assert out == lines
    assert sum(b.lines for b in batches) == len(lines)
    assert sum(len(b.records) for b in batches) * 50 < len(lines)


def test_aggregates_with_field_keys_group_sub_records_by_shard():
    shard_map = ShardMap(lambda: shards(4))
    packer = AggregatingPacker(make_key_function("field:user"), lambda *a: None, max_bytes=20_000,
                               shard_map=shard_map)
    lines = [b'{"user":"u%d","n":%d}\n' % (i % 97, i) for i in range(4000)]
    span = Span("w-00000001", 0, 1, len(lines))
    packer.pack(span, lines)
    batches = packer.take_full() + packer.flush()
    seen = []
    for batch in batches:
        for data, key, _ in batch.records:
            subs = list(deaggregate(data))
            # The KCL drops sub-records of another shard: every sub-record must hash where the record goes.
            assert {shard_map.shard_for(k) for k, _ in subs} == {shard_map.shard_for(key)}
            seen.extend(d for _, d in subs)
    assert sorted(seen) == sorted(lines)


def test_unknown_shard_map_falls_back_to_one_key_per_aggregate():
    def broken():
        from tailer.errors import Unavailable

        raise Unavailable("down")

    packer = AggregatingPacker(make_key_function("field:user"), lambda *a: None, max_bytes=20_000,
                               shard_map=ShardMap(broken))
    lines = [b'{"user":"u%d"}\n' % (i % 5) for i in range(100)]
    packer.pack(Span("w-00000001", 0, 1, 100), lines)
    for batch in packer.flush():
        for data, key, _ in batch.records:
            assert {k for k, _ in deaggregate(data)} == {key}


def test_aggregated_oversized_line_is_dead_lettered_and_the_rest_packed():
    dead = []
    packer = AggregatingPacker(RandomKeys(), lambda span, line, reason: dead.append(line), max_bytes=51_200)
    big = b"z" * (MAX_RECORD_BYTES + 1) + b"\n"
    lines = [b'{"n":%d}\n' % i for i in range(300)]
    lines.insert(150, big)
    span = Span("w-00000001", 0, 1, len(lines))
    packer.pack(span, lines)
    batches = packer.take_full() + packer.flush()
    shipped = [d for b in batches for data, _k, _ in b.records for _key, d in deaggregate(data)]
    assert shipped == [line for line in lines if line is not big]
    assert dead == [big]
    assert span.pending == len(lines) - 1 == sum(b.spans.get(span, 0) for b in batches)
