"""The plain packer's path for random keys makes exactly the batches of its line-by-line path.

``PlainPacker`` takes every line through ``_pack_each`` for keys read from the line, and through
``_pack_random_keys`` (bulk keys, bisect over cumulative sizes) for ``random`` keys. The second is only
faster: hypothesis feeds both the same chunks, key sequence and limits and compares every batch.
"""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tailer.lines import split_lines
from tailer.packing import MAX_RECORD_BYTES, PlainPacker, Span
from tailer.partition import RandomKeys


def keys_from(start: int) -> RandomKeys:
    keys = RandomKeys()
    keys.next = start
    return keys


def pack_all(packer: PlainPacker, chunks: list[list[bytes]]) -> tuple[list, list]:
    out, dead = [], []
    for n, lines in enumerate(chunks):
        packer.pack(Span(f"s-{n}", 0, 0, len(lines)), lines)
        out += packer.take_full()
    out += packer.flush()
    return [(b.records, b.nbytes, b.lines, sorted((s.segment_id, c) for s, c in b.spans.items()), b.seq)
            for b in out], dead


line_sizes = st.one_of(st.integers(1, 300), st.sampled_from([1024, 50_000, 400_000]))
chunks = st.lists(st.lists(line_sizes.map(lambda n: b"x" * (n - 1) + b"\n"), max_size=1200), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@example(chunks=[[b"x\n"] * 300] * 3, start=0, max_batch_bytes=1024 * 1024)  # a batch left open by the last chunk
@example(chunks=[[b"x" * 99 + b"\n"] * 700], start=2**48 - 3, max_batch_bytes=5_000)  # a key one digit longer
@given(chunks=chunks, start=st.sampled_from([0, 15, 2**47 - 3, 2**48 - 1]),
       max_batch_bytes=st.sampled_from([300, 5_000, 100_000, 1024 * 1024, 5 * 1024 * 1024]))
def test_random_keys_make_the_batches_of_the_line_by_line_path(chunks, start, max_batch_bytes):
    dead = []
    fast = PlainPacker(keys_from(start), lambda span, line, reason: dead.append(line), max_batch_bytes=max_batch_bytes)
    keys = keys_from(start)
    slow = PlainPacker(lambda line: keys(line), lambda span, line, reason: dead.append(line),
                       max_batch_bytes=max_batch_bytes)
    assert pack_all(fast, chunks) == pack_all(slow, chunks)


def test_a_line_over_the_record_limit_goes_to_dead_letters_on_the_random_key_path():
    dead = []
    packer = PlainPacker(RandomKeys(), lambda span, line, reason: dead.append(line))
    big = b"x" * MAX_RECORD_BYTES + b"\n"
    packer.pack(Span("s", 0, 0, 3), [b"a\n", big, b"b\n"])
    batches = packer.flush()
    assert dead == [big]
    assert [r[0] for r in batches[0].records] == [b"a\n", b"b\n"]


def test_many_keys_are_the_keys_of_as_many_calls():
    one, bulk = keys_from(2**40 - 2), keys_from(2**40 - 2)
    assert bulk.many(5) + [bulk()] == [one() for _ in range(6)]


_LINES = re.compile(rb"[^\n]*\n")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"") + b"\n"), max_size=30),
       st.binary(max_size=5))
def test_split_lines_is_the_regular_expression(lines, tail):
    data = b"".join(lines)
    assert split_lines(data) == _LINES.findall(data) == lines
    assert split_lines(data + tail.replace(b"\n", b"")) == _LINES.findall(data + tail.replace(b"\n", b""))
