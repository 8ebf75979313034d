"""Review item 7: every answer shape a 200 PutRecords / PutRecordBatch could carry, record by record.

Invariant over the whole space: a record counts as delivered only with a non-empty numeric
SequenceNumber and a string ShardId (Firehose: a non-empty RecordId); a per-record ErrorCode never
dead-letters (AWS documents only retryable codes there: throughput, InternalFailure, KMS codes);
anything else is sent again. Nothing is ever silently counted as shipped.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailer.errors import Unavailable
from tailer.firehose import FirehoseSink
from tailer.kinesis import KinesisSink

DOCUMENTED_RECORD_CODES = ["ProvisionedThroughputExceededException", "InternalFailure", "KMSDisabledException",
                           "KMSInvalidStateException", "KMSAccessDeniedException", "KMSNotFoundException",
                           "KMSOptInRequired", "KMSThrottlingException"]
UNDOCUMENTED_RECORD_CODES = ["ValidationException", "InvalidArgumentException", "SerializationException",
                             "AccessDeniedException", "SomethingNew", "x"]
GOOD = {"SequenceNumber": "49590338271490256608559692538361571095921575989136588898", "ShardId": "shardId-000000000000"}

# (entry, delivered?) for Kinesis: delivered only with both fields well-formed.
KINESIS_ENTRIES = [
    (GOOD, True),
    ({"SequenceNumber": "1", "ShardId": "shardId-1"}, True),
    ({"SequenceNumber": "", "ShardId": "shardId-1"}, False),
    ({"SequenceNumber": "", "ShardId": None}, False),
    ({"SequenceNumber": "12a", "ShardId": "shardId-1"}, False),
    ({"SequenceNumber": " 12", "ShardId": "shardId-1"}, False),
    ({"SequenceNumber": 12, "ShardId": "shardId-1"}, False),
    ({"SequenceNumber": None, "ShardId": "shardId-1"}, False),
    ({"SequenceNumber": "12"}, False),
    ({"SequenceNumber": "12", "ShardId": ""}, False),
    ({"SequenceNumber": "12", "ShardId": 7}, False),
    ({"SequenceNumber": "12", "ShardId": ["shardId-1"]}, False),
    ({"ShardId": "shardId-1"}, False),
    ({}, False),
    ({"ErrorCode": ""}, False),
    ({"ErrorCode": None, "SequenceNumber": "", "ShardId": None}, False),
] + [({"ErrorCode": code, "ErrorMessage": "m"}, False) for code in DOCUMENTED_RECORD_CODES + UNDOCUMENTED_RECORD_CODES]


def kinesis_answer(entries, failed=None):
    failed = sum(1 for e in entries if e.get("ErrorCode")) if failed is None else failed
    return orjson.dumps({"FailedRecordCount": failed, "Records": entries})


@pytest.mark.parametrize(("entry", "delivered"), KINESIS_ENTRIES, ids=lambda v: orjson.dumps(v).decode()[:60])
def test_a_kinesis_record_is_delivered_only_with_a_sequence_number_and_a_shard(entry, delivered):
    result = KinesisSink._result(kinesis_answer([GOOD, entry, GOOD]), 3)
    assert not result.rejected, "a per-record answer never dead-letters"
    assert [i for i, _, _ in result.failed] == ([] if delivered else [1])
    assert result.placed[0] == result.placed[2] == GOOD["ShardId"]
    assert (result.placed[1] is not None) is delivered


FIREHOSE_ENTRIES = [
    ({"RecordId": "abc"}, True),
    ({"RecordId": ""}, False),
    ({"RecordId": None}, False),
    ({"RecordId": 5}, False),
    ({}, False),
] + [({"ErrorCode": code, "ErrorMessage": "m"}, False)
     for code in ["ServiceUnavailableException", "InternalFailure", *UNDOCUMENTED_RECORD_CODES]]


@pytest.mark.parametrize(("entry", "delivered"), FIREHOSE_ENTRIES, ids=lambda v: orjson.dumps(v).decode()[:60])
def test_a_firehose_record_is_delivered_only_with_a_record_id(entry, delivered):
    entries = [{"RecordId": "a"}, entry, {"RecordId": "b"}]
    failed = sum(1 for e in entries if e.get("ErrorCode"))
    result = FirehoseSink._result(orjson.dumps({"FailedPutCount": failed, "RequestResponses": entries}), 3)
    assert not result.rejected, "a per-record answer never dead-letters"
    assert [i for i, _, _ in result.failed] == ([] if delivered else [1])


_json = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                     max_leaves=8)
_entry = st.dictionaries(st.sampled_from(["SequenceNumber", "ShardId", "ErrorCode", "ErrorMessage", "Other"]),
                         _json | st.sampled_from(["1", "", "shardId-1", "ValidationException", "InternalFailure"]),
                         max_size=4)


@settings(max_examples=300, deadline=None)
@given(entries=st.lists(_entry, min_size=1, max_size=6), failed=st.integers(-1, 7) | st.none())
def test_any_answer_is_either_unreadable_or_accounts_for_every_record(entries, failed):
    count = len(entries)
    try:
        result = KinesisSink._result(kinesis_answer(entries, failed), count)
    except Unavailable:
        return  # unreadable: the whole call is sent again
    assert not result.rejected
    failed_indexes = {i for i, _, _ in result.failed}
    for i, entry in enumerate(entries):
        good = (isinstance(entry.get("SequenceNumber"), str) and entry["SequenceNumber"].isdigit()
                and entry["SequenceNumber"].isascii() and isinstance(entry.get("ShardId"), str)
                and entry["ShardId"] != "" and not entry.get("ErrorCode"))
        assert (i not in failed_indexes) is good, entry
        assert (result.placed[i] is not None) is good
