"""Gzip bodies: every member is inflated (RFC 1952 allows several), within one cumulative cap, or refused.

A body is taken whole or not at all: a member followed by anything that is not
another complete member is a 400, never a 201 for the part that did inflate.
"""

from __future__ import annotations

import gzip
import zlib

import pytest

from receiver.body import BodyLimits, decode_body
from receiver.errors import BadRequest, TooLarge

LIMITS = BodyLimits(max_inflated_bytes=10_000, max_event_bytes=1000, max_events=100, max_depth=8)


def member(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def decode(raw: bytes, limits: BodyLimits = LIMITS) -> bytes:
    return bytes(decode_body(raw, "gzip", limits))


@pytest.mark.parametrize("parts", [
    [b'{"n":1}\n'],
    [b'{"n":1}\n', b'{"n":2}\n'],
    [b'{"n":1}\n{"n":2}\n', b"", b'{"n":3}\n', b'{"n":4}\n{"n":5}\n'],
    [b""] * 5 + [b'{"n":1}\n'],
    [b"x" * 3000, b"y" * 3000, b"z" * 3000],
])
def test_every_member_is_inflated_in_order(parts):
    assert decode(b"".join(member(p) for p in parts)) == b"".join(parts)


def test_members_made_by_a_streaming_compressor_and_by_concatenated_files():
    streamed = zlib.compressobj(wbits=31)
    one = streamed.compress(b"a" * 4000) + streamed.flush()
    assert decode(one + member(b"b" * 10) + one) == b"a" * 4000 + b"b" * 10 + b"a" * 4000


def test_the_cap_counts_all_members_together():
    limits = BodyLimits(max_inflated_bytes=1000, max_event_bytes=1000, max_events=100, max_depth=8)
    assert len(decode(member(b"a" * 500) + member(b"b" * 500), limits)) == 1000
    with pytest.raises(TooLarge, match="1000"):
        decode(member(b"a" * 500) + member(b"b" * 501), limits)
    with pytest.raises(TooLarge):
        decode(member(b"a" * 600) * 2, limits)


@pytest.mark.parametrize("tail", [
    b"garbage", b"\x00", b"\x00" * 8, b"\x1f", b"\x1f\x8b", b"\x1f\x8b\x08\x00",
    b'{"n":9}\n', b"\n",
])
def test_a_member_followed_by_anything_else_is_a_400(tail):
    with pytest.raises(BadRequest):
        decode(member(b'{"n":1}\n') + tail)


def test_a_truncated_second_member_is_a_400():
    second = member(b'{"n":2}\n')
    for cut in range(1, len(second)):
        with pytest.raises(BadRequest):
            decode(member(b'{"n":1}\n') + second[:cut])


def test_more_members_than_events_is_refused():
    limits = BodyLimits(max_inflated_bytes=10_000, max_event_bytes=1000, max_events=3, max_depth=8)
    assert decode(member(b"{}\n") * 3, limits) == b"{}\n" * 3
    with pytest.raises(TooLarge, match="gzip members"):
        decode(member(b"{}\n") * 4, limits)


def test_gzip_inside_gzip_stays_bytes():
    inner = member(b'{"n":1}')
    assert decode(member(inner)) == inner  # the parser then refuses it as not JSON


def test_empty_or_truncated_bodies_are_400():
    for raw in (b"", member(b"abc")[:-1], member(b"abc")[:10]):
        with pytest.raises(BadRequest):
            decode(raw)
