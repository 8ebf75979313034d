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
