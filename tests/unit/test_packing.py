"""Batches obey PutRecords limits and account for every line exactly once."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailer.errors import Unavailable
from tailer.kpl import deaggregate
from tailer.packing import (
    MAX_BATCH_BYTES,
    MAX_RECORD_BYTES,
    MAX_RECORDS,
    OPEN_AGGREGATES_MAX_BYTES,
    AggregatingPacker,
    PlainPacker,
    Span,
    split_aggregate,
)
from tailer.partition import MAX_KEY_UNITS, RandomKeys, make_key_function, truncate_key
from tailer.shardmap import ShardMap


def releasing(dead: list):
    """A dead-letter callback that stores the line and releases it from its span, as the shipper does."""

    def dead_letter(span, line, reason):
        dead.append(line)
        span.pending -= 1

    return dead_letter


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def record_bytes(record) -> int:
    data, key, _ = record
    return len(data) + len(key.encode())


def shards(n: int) -> list[dict]:
    step = 2**128 // n
    return [{"ShardId": f"shard-{i}", "HashKeyRange": {"StartingHashKey": str(i * step),
                                                         "EndingHashKey": str((i + 1) * step - 1)},
             "SequenceNumberRange": {"StartingSequenceNumber": "1"}} for i in range(n)]


def test_plain_batches_stay_within_limits_and_count_every_line():
    dead = []
    packer = PlainPacker(RandomKeys(), releasing(dead))
    lines = [b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * (i % 40_000)) for i in range(3000)]
    lines.insert(100, b"y" * (MAX_RECORD_BYTES + 10) + b"\n")
    span = Span("w-00000001", 0, sum(map(len, lines)), len(lines))
    packer.pack(span, lines)
    batches = packer.take_full() + packer.flush()
    for batch in batches:
        assert 0 < len(batch.records) <= MAX_RECORDS
        assert batch.nbytes <= MAX_BATCH_BYTES
        assert batch.nbytes == sum(map(record_bytes, batch.records))
        assert all(record_bytes(r) <= MAX_RECORD_BYTES for r in batch.records)
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
    packer = AggregatingPacker(RandomKeys(), releasing(dead), max_bytes=51_200)
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


# -- issue 11 ----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=400))
def test_field_keys_fit_kinesis_in_utf16_units_and_never_split_a_character(value):
    """Defect 4: Kinesis counts UTF-16 code units (an emoji is two); a cut key is the longest prefix that fits."""
    import orjson

    keys = make_key_function("field:k")
    try:
        line = orjson.dumps({"k": value}) + b"\n"
    except orjson.JSONEncodeError:  # lone surrogates are not JSON the receiver would accept
        return
    key = keys(line)
    assert 1 <= utf16_units(key) <= MAX_KEY_UNITS
    assert value.startswith(key)
    if key != value:
        assert utf16_units(value[:len(key) + 1]) > MAX_KEY_UNITS, "the longest prefix that fits"


def test_keys_of_256_emoji_or_cjk_are_cut_to_what_kinesis_accepts():
    assert truncate_key("\U0001F600" * 256) == "\U0001F600" * 128
    assert truncate_key("a" + "\U0001F600" * 200) == "a" + "\U0001F600" * 127, "no half emoji"
    assert truncate_key("鍵" * 300) == "鍵" * 256
    assert truncate_key("") == ""


@pytest.mark.parametrize("key_char", ["k", "鍵", "\U0001F600"])
def test_aggregated_records_stay_under_the_record_limit_counting_key_bytes(key_char):
    """Defect 5: at the largest --aggregate-max-bytes, a 256-unit CJK key must not push a record past 1 MiB."""
    from tailer.config import TailerConfig

    largest = TailerConfig("/tmp/x", "s", aggregate_max_bytes=MAX_RECORD_BYTES - 256).aggregate_max_bytes
    key = truncate_key(key_char * 256)
    lines = [b'{"k":"%s","p":"%s"}\n' % (key.encode(), b"x" * (i % 97)) for i in range(4_000)]
    for key_fn, shard_map in ((make_key_function("field:k"), ShardMap(lambda: shards(2))), (RandomKeys(), None)):
        packer = AggregatingPacker(key_fn, releasing([]), max_bytes=largest, shard_map=shard_map)
        packer.pack(Span("w-00000001", 0, 1, len(lines)), lines)
        batches = packer.take_full() + packer.flush()
        assert batches
        for batch in batches:
            assert all(record_bytes(r) <= MAX_RECORD_BYTES for r in batch.records)
            assert batch.nbytes == sum(map(record_bytes, batch.records)) <= MAX_BATCH_BYTES


def test_plain_records_count_key_bytes_too():
    dead = []
    packer = PlainPacker(make_key_function("field:k"), releasing(dead))
    key = "鍵" * 256
    fits = b'{"k":"%s","p":"' % key.encode()
    fits += b"x" * (MAX_RECORD_BYTES - len(key.encode()) - len(fits) - 3) + b'"}\n'
    too_big = fits[:-3] + b'x"}\n'
    span = Span("w-00000001", 0, 1, 2)
    packer.pack(span, [fits, too_big])
    [batch] = packer.flush()
    assert [r[0] for r in batch.records] == [fits] and dead == [too_big]
    assert record_bytes(batch.records[0]) == MAX_RECORD_BYTES


@pytest.mark.parametrize("max_bytes", [51_200, MAX_RECORD_BYTES - 256])
@pytest.mark.parametrize("map_known", [True, False], ids=["by-shard", "by-key"])
def test_open_aggregates_are_bounded_whatever_the_number_of_keys(max_bytes, map_known):
    """Defect 7: 4,096 keys x large aggregates must not hold keys x aggregate size in memory."""
    def unknown():
        raise Unavailable("down")

    shard_map = ShardMap(lambda: shards(4)) if map_known else ShardMap(unknown)
    packer = AggregatingPacker(make_key_function("field:u"), releasing([]), max_bytes=max_bytes,
                               shard_map=shard_map)
    pad = b"p" * 1000
    peak = 0
    lines = [b'{"u":"k%d","p":"%s"}\n' % (i % 4096, pad) for i in range(4096 * 12)]
    span = Span("w-00000001", 0, 1, len(lines))
    for start in range(0, len(lines), 2000):  # one read chunk (~2 MiB) at a time, as the shipper packs
        packer.pack(span, lines[start:start + 2000])
        peak = max(peak, packer.open_bytes())
        packer.take_full()
    assert peak <= OPEN_AGGREGATES_MAX_BYTES + 2 * 2000 * len(lines[0]), f"{peak >> 20} MiB open"
    out = packer.flush()
    assert out


def test_split_aggregate_gives_each_line_under_its_own_key():
    packer = AggregatingPacker(make_key_function("field:u"), releasing([]), max_bytes=20_000,
                               shard_map=ShardMap(lambda: shards(1)))
    lines = [b'{"u":"u%d"}\n' % i for i in range(5)]
    packer.pack(Span("w-00000001", 0, 1, 5), lines)
    [batch] = packer.flush()
    [record] = batch.records
    assert split_aggregate(record) == [(line, f"u{i}", None) for i, line in enumerate(lines)]
    assert split_aggregate((b'{"plain":1}\n', "k", None)) is None
    assert batch.predicted == {0: "shard-0"}, "a per-shard aggregate carries its predicted shard"
