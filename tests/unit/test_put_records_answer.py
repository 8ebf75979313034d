"""The fast readings of a PutRecords answer agree with the entry-by-entry one, whatever the answer.

tailer/kinesis.py proves an all-stored answer from its bytes (tailer/kinesis_answer.py), else
reads it with orjson and checks it in C loops (``_all_stored``), and falls back to the
entry-by-entry reading for anything else. Hypothesis builds answers around the edges of what is
believed (sequence numbers of 0, 1, 128, 129 digits, non-ASCII digits, empty or non-string shard
ids, error codes that are falsy, entries that are not objects) and the readings must give the same
placed / failed / rejected, or all raise Unavailable; and it mutates the bytes of stored answers of
every shape the byte proof knows (a byte put in, taken out or changed, anywhere), which the byte
proof must never believe where the JSON reading does not.
"""

from __future__ import annotations

import json
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailer import kinesis_answer
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


def test_an_all_stored_answer_in_another_shape_takes_the_c_loop_reading(monkeypatch):
    """Else the agreement above would hold trivially for answers the byte proof does not know."""
    def slow(*_args):
        raise AssertionError("read entry by entry")

    monkeypatch.setattr(KinesisSink, "_result_entry_by_entry", staticmethod(slow))
    entries = [{"SequenceNumber": "4959" * 14, "ShardId": f"shardId-00000000000{i % 4}"} for i in range(500)]
    content = json.dumps({"FailedRecordCount": 0, "Records": entries}).encode()  # with spaces
    assert not kinesis_answer.stored_count(content, 500)
    result = KinesisSink._result(content, 500)
    assert list(result.placed) == [e["ShardId"] for e in entries] and result.failed == result.rejected == []


def _stored(count: int, order: int = 0, encryption: str = "", at_end: bool = False) -> tuple[bytes, list[str]]:
    """An all-stored answer as Kinesis (order 0) or kinesalite (order 1) writes it, and its shard ids."""
    shards = [f"shardId-{i % 7:012d}" for i in range(count)]
    entries = [{"SequenceNumber": str(10**55 + 7919 * i), "ShardId": shard} for i, shard in enumerate(shards)]
    if order:
        entries = [{"ShardId": e["ShardId"], "SequenceNumber": e["SequenceNumber"]} for e in entries]
    doc = {"FailedRecordCount": 0, "Records": entries}
    if encryption:
        doc = {**doc, "EncryptionType": encryption} if at_end else {"EncryptionType": encryption, **doc}
    return orjson.dumps(doc), shards


SHAPES = [(order, encryption, at_end) for order in (0, 1) for encryption, at_end in
          (("", False), ("KMS", False), ("NONE", False), ("KMS", True), ("NONE", True))]


@pytest.mark.parametrize(("order", "encryption", "at_end"), SHAPES)
def test_every_known_shape_of_a_stored_answer_is_proven_from_its_bytes(order, encryption, at_end):
    content, shards = _stored(500, order, encryption, at_end)
    with mock.patch("tailer.kinesis.orjson.loads", side_effect=AssertionError("parsed")):
        result = KinesisSink._result(content, 500)
    assert isinstance(result.placed, kinesis_answer.StoredShards) and result.failed == result.rejected == []
    assert list(result.placed) == shards and result.placed[3] == shards[3] and len(result.placed) == 500
    assert not kinesis_answer.stored_count(content, 499) and not kinesis_answer.stored_count(content, 501)
    assert result.placed == shards and result.placed != tuple(shards) and repr(result.placed).startswith("StoredShards([")


def test_the_connectors_occur_only_where_the_proof_says():
    for n in (1, 2, 3, 4, 5):
        kinesis_answer.check_connectors(n)


def _json_reading(content: bytes, count: int):
    """The reading without the byte proof: orjson, the C-loop check, entry by entry."""
    with mock.patch("tailer.kinesis.proven_stored", return_value=False):
        return _read(KinesisSink._result, content, count)


_BYTES = st.one_of(st.sampled_from(b'0123456789"{}[],:\\ -adeINS'), st.integers(0, 255))
_EDITS = st.lists(st.tuples(st.sampled_from(["put", "take", "change"]), st.integers(0, 10**6), _BYTES),
                  min_size=1, max_size=3)


def _edit(content: bytes, edits) -> bytes:
    out = bytearray(content)
    for op, where, byte in edits:
        i = where % (len(out) + (op == "put"))
        if op == "put":
            out.insert(i, byte)
        elif op == "take" and out:
            del out[i % len(out)]
        elif out:
            out[i % len(out)] = byte
    return bytes(out)


@settings(max_examples=1500, deadline=None)
@given(shape=st.sampled_from(SHAPES), count=st.integers(1, 6), edits=_EDITS, miscount=st.sampled_from([0, 0, 0, -1, 1]))
def test_a_stored_answer_mutated_anywhere_is_believed_only_where_the_json_reading_believes_it(shape, count, edits,
                                                                                             miscount):
    content = _edit(_stored(count, *shape)[0], edits)
    sent = max(1, count + miscount)
    expected = _json_reading(content, sent)
    assert _read(KinesisSink._result, content, sent) == expected
    if kinesis_answer.stored_count(content, sent):
        assert expected != "Unavailable" and expected[1] == expected[2] == [] and all(expected[0]), expected


@settings(max_examples=300, deadline=None)
@given(shape=st.sampled_from(SHAPES), count=st.integers(1, 6), where=st.integers(0, 10**6),
       digit=st.sampled_from(b"0123456789"))
def test_a_digit_changed_in_a_sequence_number_or_shard_id_is_still_proven(shape, count, where, digit):
    """The proof is no stricter than it must be: any digits in the value slots are a stored answer."""
    content = bytearray(_stored(count, *shape)[0])
    slots = [i for i in range(len(content)) if chr(content[i]).isdigit()
             and content[i - 1:i] != b":"]  # not the FailedRecordCount, which must stay 0
    content[slots[where % len(slots)]] = digit
    assert kinesis_answer.stored_count(bytes(content), count)


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


compiled = pytest.importorskip("tailer._speedups", reason="tailer._speedups is not built (tests/unit/test_speedups.py)")


@settings(max_examples=1500, deadline=None)
@given(shape=st.sampled_from(SHAPES), count=st.integers(1, 6), edits=st.one_of(st.just([]), _EDITS),
       miscount=st.sampled_from([0, 0, 0, -1, 1, -10**6]))
def test_the_compiled_proof_believes_exactly_what_the_python_proof_believes(shape, count, edits, miscount):
    content = _edit(_stored(count, *shape)[0], edits)
    sent = count + miscount
    assert compiled.stored_answer(content, sent) == kinesis_answer.stored_count(content, sent)
    assert compiled.stored_answer(memoryview(content), sent) == kinesis_answer.stored_count(content, sent)


@pytest.mark.parametrize("digits", [1, 56, 127, 128, 129, 300])
@pytest.mark.parametrize("where", ["SequenceNumber", "ShardId"])
def test_both_proofs_take_128_digits_and_refuse_129_in_either_value(digits, where):
    entries = [{"SequenceNumber": "7" * (digits if where == "SequenceNumber" else 56),
                "ShardId": "shardId-" + "1" * (digits if where == "ShardId" else 12)}] * 3
    content = orjson.dumps({"FailedRecordCount": 0, "Records": entries})
    assert compiled.stored_answer(content, 3) == kinesis_answer.stored_count(content, 3) == (digits <= 128)


@pytest.mark.parametrize("n", [-2**63 - 1, -1, 0, 2**63 - 1, 2**80])
def test_a_count_no_answer_can_have_is_believed_by_neither_proof(n):
    content = _stored(3)[0]
    assert compiled.stored_answer(content, n) is kinesis_answer.stored_count(content, n) is False
