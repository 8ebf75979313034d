"""KPL sub-records encoded straight from a chunk (tailer.kpl.encode_lines and its C twin, kpl_records).

Three holds: the compiled function is the Python reference, byte for byte, over lines of every length
(varint boundaries included), starts, rooms and tails; what either encodes is read back by aws-kinesis-agg,
a deaggregator we did not write, as exactly the lines taken; and the aggregating packer makes the very
same records whichever of the two it runs, and loses, repeats or reorders no line whatever the sizes.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tailer.packing as packing
from tailer.kpl import KPL_MAGIC, _encode_lines, deaggregate, varint
from tailer.lines import split_lines
from tailer.packing import MAX_RECORD_BYTES, AggregatingPacker, Span
from tailer.partition import RandomKeys
from tailer.speedups import compiled
from tests.unit.test_kpl import their_deaggregate

needs_compiled = pytest.mark.skipif(compiled is None, reason="tailer._speedups not built "
                                    "(tests/unit/test_speedups.py fails for that)")

# Lengths around the varint boundaries of a line (127/128, 16383/16384) and of its sub-record (+6 or +7).
BOUNDARY_LENGTHS = [1, 2, 119, 120, 121, 122, 123, 127, 128, 129, 16375, 16376, 16377, 16383, 16384, 16385]
line_lengths = st.one_of(st.sampled_from(BOUNDARY_LENGTHS), st.integers(1, 400))


def line_of(length: int, fill: bytes = b"x") -> bytes:
    return fill * (length - 1) + b"\n"


chunks = st.tuples(
    st.lists(st.tuples(line_lengths, st.sampled_from([b"x", b"\r", b"\0", b"\xff"])), max_size=25),
    st.sampled_from([b"", b"partial", b"\r"]),
).map(lambda drawn: b"".join(line_of(n, fill) for n, fill in drawn[0]) + drawn[1])


def in_a_record(records: bytes) -> bytes:
    """The sub-records framed as a whole KPL record: magic, one key, the records, the digest."""
    body = b"\x0a\x01k" + records
    return KPL_MAGIC + body + hashlib.md5(body, usedforsecurity=False).digest()


@needs_compiled
@settings(max_examples=600, deadline=None)
@given(data=chunks, start_at=st.floats(0, 1), room=st.one_of(st.integers(-10, 60_000),
                                                             st.sampled_from([0, 7, 8, 2**62])))
def test_the_compiled_encoder_is_the_python_reference(data, start_at, room):
    start = int(len(data) * start_at)
    assert compiled.kpl_records(data, start, room) == _encode_lines(data, start, room)


@needs_compiled
@pytest.mark.parametrize("length", BOUNDARY_LENGTHS)
def test_every_room_around_a_fit_at_the_varint_boundaries(length):
    data = line_of(length) * 3
    one = 1 + len(varint(3 + len(varint(length)) + length)) + 3 + len(varint(length)) + length
    for room in (one - 1, one, one + 1, 2 * one - 1, 2 * one, 3 * one, 3 * one + 5):
        expected = _encode_lines(data, 0, room)
        assert compiled.kpl_records(data, 0, room) == expected
        assert len(expected[0]) == one * expected[2] == one * min(3, room // one)
        assert expected[1] == length * expected[2]


@pytest.mark.parametrize("encode", [_encode_lines, getattr(compiled, "kpl_records", None)], ids=["python", "c"])
def test_a_start_outside_the_data_and_other_input_is_an_error(encode):
    if encode is None:
        pytest.skip("tailer._speedups not built")
    for start in (-1, 3):
        with pytest.raises(ValueError, match="start is outside the data"):
            encode(b"a\n", start, 100)
    with pytest.raises(TypeError):
        encode("a\n", 0, 100)
    assert encode(b"a\n", 2, 100) == (b"", 2, 0)  # at the end: nothing left
    assert encode(b"a\nb", 0, 100)[1:] == (2, 1)  # a line without its newline is not taken


ODD_ARGUMENTS = [  # past a Py_ssize_t, other buffers (the C's two passes need bytes that cannot change), non-ints
    (b"a\nb\n", 0, 2**63), (b"a\nb\n", 0, 2**100), (b"a\nb\n", 0, -2**64), (b"a\nb\n", 2**63, 5),
    (b"a\nb\n", -2**70, 5), (memoryview(b"a\n"), 0, 5), (bytearray(b"a\n"), 0, 5), (b"a\n", 1.0, 5),
    (b"a\n", 0, 5.0), (b"a\n", True, 5), (b"a\n", None, 5),
]


@needs_compiled
@pytest.mark.parametrize("args", ODD_ARGUMENTS, ids=repr)
def test_odd_arguments_get_the_same_answer_or_the_same_error_from_both(args):
    def outcome(encode):
        try:
            return encode(*args)
        except (TypeError, ValueError) as exc:
            return type(exc)
    assert outcome(compiled.kpl_records) == outcome(_encode_lines)


@settings(max_examples=300, deadline=None)
@given(data=chunks, room=st.integers(0, 40_000))
def test_what_is_encoded_reads_back_as_the_lines_taken(data, room):
    for encode in filter(None, (_encode_lines, getattr(compiled, "kpl_records", None))):
        records, end, count = encode(data, 0, room)
        assert len(records) <= room
        taken = split_lines(data[:end])
        assert len(taken) == count
        if count:
            expected = [("k", line) for line in taken]
            assert their_deaggregate(in_a_record(records)) == expected
            assert list(deaggregate(in_a_record(records))) == expected
        rest = split_lines(data[end:])
        if rest:  # stopped at a line that does not fit, never before one that does
            assert len(encode(rest[0], 0, room - len(records))[0]) == 0


def packed(data: bytes, max_bytes: int, encode, first_key: int) -> tuple[list, list[bytes]]:
    dead: list[bytes] = []

    def dead_letter(span, line, reason):
        dead.append(line)
        span.pending -= 1

    keys = RandomKeys()
    keys.next = first_key
    packer = AggregatingPacker(keys, dead_letter, max_bytes=max_bytes)
    span = Span("s-1", 0, len(data), data.count(b"\n"))
    original = packing.encode_lines
    packing.encode_lines = encode
    try:
        packer.pack_chunk(span, data)
        batches = packer.flush()
    finally:
        packing.encode_lines = original
    return batches, dead


big_lines = st.one_of(line_lengths, st.sampled_from([MAX_RECORD_BYTES - 100, MAX_RECORD_BYTES, MAX_RECORD_BYTES + 1]))


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(big_lines, min_size=1, max_size=30),
       max_bytes=st.sampled_from([300, 1000, 20_000, 500_000, MAX_RECORD_BYTES - 256]))
def test_the_packer_makes_the_same_records_with_either_encoder_and_keeps_every_line(lengths, max_bytes):
    lines = [b"%d:" % i + line_of(max(n - 3, 1)) for i, n in enumerate(lengths)]
    data = b"".join(lines)
    python_batches, python_dead = packed(data, max_bytes, _encode_lines, 2**40)
    if compiled is not None:
        c_batches, c_dead = packed(data, max_bytes, compiled.kpl_records, 2**40)
        assert [b.records for b in c_batches] == [b.records for b in python_batches]
        assert c_dead == python_dead
    shipped = [line for batch in python_batches for record in batch.records for _key, line in deaggregate(record[0])]
    assert sorted(shipped + python_dead) == sorted(lines)  # every line once: shipped or dead-lettered
    assert shipped == [line for line in lines if line not in python_dead]  # in order
    for batch in python_batches:
        for data_, key, _ in batch.records:
            assert len(data_) + len(key) <= MAX_RECORD_BYTES
            if len(list(deaggregate(data_))) > 1:  # an aggregate of several lines keeps to --aggregate-max-bytes
                assert len(data_) + len(key) <= max_bytes
        assert sum(batch.spans.values()) == batch.lines == sum(len(list(deaggregate(r[0]))) for r in batch.records)
