"""KPL aggregation checked against aws-kinesis-agg, an implementation we did not write."""

from __future__ import annotations

import base64

from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
from hypothesis import given, settings
from hypothesis import strategies as st

from tailer.kpl import Aggregate, deaggregate, is_aggregated


def their_deaggregate(data: bytes) -> list[tuple[str, bytes]]:
    record = {"Data": data, "PartitionKey": "outer", "SequenceNumber": "1", "ApproximateArrivalTimestamp": 0}
    return [(u["kinesis"]["partitionKey"], base64.b64decode(u["kinesis"]["data"]))
            for u in iter_deaggregate_records(record, data_format="Boto3")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=3000), st.sampled_from(["a", "b", "ключ", "k" * 256])),
                min_size=1, max_size=60))
def test_our_aggregates_deaggregate_with_their_library(items):
    aggregate = Aggregate(max_bytes=1024 * 1024 - 256)
    for data, key in items:
        assert aggregate.add(data, key)
    encoded = aggregate.to_bytes()
    assert len(encoded) == aggregate.size
    assert is_aggregated(encoded)
    expected = [(key, data) for data, key in items]
    assert their_deaggregate(encoded) == expected
    assert list(deaggregate(encoded)) == expected


def test_we_read_their_aggregates():
    theirs = RecordAggregator()
    items = [(f"pk{i % 3}", b'{"n":%d}\n' % i) for i in range(100)]
    for key, data in items:
        assert theirs.add_user_record(key, data) is None
    _key, _ehk, data = theirs.clear_and_get().get_contents()
    assert list(deaggregate(data)) == items


def test_aggregate_respects_its_size_limit_counting_the_key():
    aggregate = Aggregate(max_bytes=2000)
    line = b"x" * 199 + b"\n"
    added = 0
    while aggregate.add(line, "key"):
        added += 1
    assert added > 5
    assert aggregate.size + len("key") <= 2000
    assert len(aggregate.to_bytes()) == aggregate.size


def test_plain_records_pass_through_deaggregate():
    assert list(deaggregate(b'{"n":1}\n')) == [("", b'{"n":1}\n')]


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from(["k" * 256, "鍵" * 256, "\U0001F600" * 128, "é" * 256]),
       sizes=st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=40))
def test_record_plus_key_bytes_never_exceed_the_limit_at_the_largest_aggregate_size(key, sizes):
    """Defect 5: Kinesis counts the key's UTF-8 bytes (768 for 256 CJK characters), not its characters."""
    record_limit = 1024 * 1024
    aggregate = Aggregate(max_bytes=record_limit - 256)  # the largest --aggregate-max-bytes allowed
    filler = 0
    while True:  # fill to the brim with lines of the drawn sizes, then a few one-byte lines
        size = sizes[filler % len(sizes)] if filler < 2000 else 0
        if not aggregate.add(b"x" * size + b"\n", key):
            if size == 0:
                break
            sizes = [0]
            filler = 2000
        filler += 1
    assert aggregate.record_bytes <= record_limit - 256
    assert len(aggregate.to_bytes()) + len(aggregate.first_key.encode()) <= record_limit
