"""The fast reading of a PutRecords answer agrees with the entry-by-entry one, whatever the answer.

tailer/kinesis.py reads an all-stored answer in C loops (``_all_stored``) and
falls back to the entry-by-entry reading for anything else; hypothesis builds
answers around the edges of what is believed (sequence numbers of 0, 1, 128, 129
digits, non-ASCII digits, empty or non-string shard ids, error codes that are
falsy, entries that are not objects) and both readings must give the same
placed / failed / rejected, or both raise Unavailable.
"""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tailer.errors import Unavailable
from tailer.kinesis import KinesisSink

_sequences = st.one_of(
    st.text("0123456789", min_size=1, max_size=130),
    st.sampled_from(["", "٣", "12²", "0x1f", " 1", "1 ", "4" * 128, "4" * 129]),
    st.integers(-2**63, 2**63 - 1), st.none(), st.booleans(),
)
_shards = st.one_of(st.sampled_from(["shardId-000000000000", "s", ""]), st.integers(0, 9), st.none())
_codes = st.one_of(st.none(), st.sampled_from(["", 0, False, "InternalFailure",
                                               "ProvisionedThroughputExceededException", "Other", 1]))
_entry = st.fixed_dictionaries({}, optional={"SequenceNumber": _sequences, "ShardId": _shards,
                                             "ErrorCode": _codes, "ErrorMessage": st.text(max_size=5)})
_good = st.fixed_dictionaries({"SequenceNumber": st.text("0123456789", min_size=1, max_size=128),
                               "ShardId": st.sampled_from(["shardId-000000000000", "shardId-000000000001"])})
_entries = st.one_of(
    st.lists(_good, min_size=1, max_size=20),
    st.lists(st.one_of(_good, _good, _entry), min_size=1, max_size=20),
    st.lists(st.one_of(_good, st.integers(0, 9), st.text(max_size=3), st.lists(st.none(), max_size=1)), min_size=1,
             max_size=5),
)


# One flaw put into an otherwise stored answer: each one the entry-by-entry reading does not believe.
FLAWS = [("SequenceNumber", v) for v in ["", "٣", "12²", "0x1f", " 1", "1 ", "4" * 129, 7, None, True]] + \
        [("ShardId", v) for v in ["", 0, None, ["s"]]] + \
        [("ErrorCode", v) for v in ["InternalFailure", "ProvisionedThroughputExceededException", "Other", 1]] + \
        [("ErrorCode", v) for v in ["", 0, False, None]] + [("SequenceNumber", "4" * 128), ("SequenceNumber", "0")]


def _read(reader, *args):
    try:
        result = reader(*args)
    except Unavailable:
        return "Unavailable"
    return list(result.placed), result.failed, result.rejected


@settings(max_examples=400, deadline=None)
@given(entries=_entries, failed_count=st.one_of(st.just(0), st.integers(0, 3)))
def test_the_fast_reading_agrees_with_the_entry_by_entry_one(entries, failed_count):
    content = orjson.dumps({"FailedRecordCount": failed_count, "Records": entries})
    assert _read(KinesisSink._result, content, len(entries)) == \
        _read(KinesisSink._result_entry_by_entry, entries, len(entries))


def test_an_all_stored_answer_takes_the_fast_reading(monkeypatch):
    """Else the agreement above would hold trivially."""
    def slow(*_args):
        raise AssertionError("read entry by entry")

    monkeypatch.setattr(KinesisSink, "_result_entry_by_entry", staticmethod(slow))
    entries = [{"SequenceNumber": "4959" * 14, "ShardId": f"shardId-00000000000{i % 4}"} for i in range(500)]
    result = KinesisSink._result(orjson.dumps({"FailedRecordCount": 0, "Records": entries}), 500)
    assert list(result.placed) == [e["ShardId"] for e in entries] and result.failed == result.rejected == []


@settings(max_examples=300, deadline=None)
@given(good=st.lists(_good, min_size=1, max_size=30), flaw=st.sampled_from(FLAWS), where=st.integers(0, 29),
       drop=st.booleans())
def test_one_flaw_anywhere_is_read_as_the_entry_by_entry_reading_reads_it(good, flaw, where, drop):
    entries = [dict(e) for e in good]
    entry = entries[where % len(entries)]
    field, value = flaw
    if drop and field != "ErrorCode":
        del entry[field]
    else:
        entry[field] = value
    content = orjson.dumps({"FailedRecordCount": 0, "Records": entries})
    assert _read(KinesisSink._result, content, len(entries)) == \
        _read(KinesisSink._result_entry_by_entry, entries, len(entries))
