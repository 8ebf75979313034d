"""The parse-memory estimate: the same however a body is cut into pieces, and above a model of what it costs.

The model counts what orjson leaves behind for a body, object by object
(``sys.getsizeof`` plus the allocator's 16 bytes, each object once), plus
yyjson's 16-byte tape entry per value and key, its copy of the strings and the
body itself. Hypothesis draws documents of every structure — deep, wide, many
keys, short and long strings, ASCII and not, numbers small and huge — and the
estimate must cover the model. (tests/integration/test_parse_cost.py checks the
estimate against measured RSS for the worst shapes.)
"""

from __future__ import annotations

import sys

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.cost import SCAN_FROM_BYTES, ParseCost, decoding_bytes, serializing_bytes

ALLOCATOR_BYTES = 16
TAPE_BYTES = 16


def modeled_bytes(body: bytes) -> int:
    doc = orjson.loads(body)
    seen: set[int] = set()
    objects = values = 0
    stack = [doc]
    while stack:
        value = stack.pop()
        values += 1
        if value is None or value is True or value is False or id(value) in seen:
            continue
        seen.add(id(value))
        objects += sys.getsizeof(value) + ALLOCATOR_BYTES
        if isinstance(value, dict):
            for key, item in value.items():
                values += 1
                if id(key) not in seen:
                    seen.add(id(key))
                    objects += sys.getsizeof(key) + ALLOCATOR_BYTES
                stack.append(item)
        elif isinstance(value, list):
            stack.extend(value)
    return 2 * len(body) + TAPE_BYTES * values + objects


def estimate(body: bytes) -> int:
    cost = ParseCost()
    cost.add(body)
    return decoding_bytes(0, cost)


keys = st.text(max_size=12) | st.sampled_from(["a", "type", "user_id", ""])
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.integers(0, 300)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
           | st.text(alphabet="a", max_size=3) | st.sampled_from(["é", "😀", "\u2028", "x" * 200])
           | st.builds(lambda n, c, tail: c + tail * n, st.integers(0, 50_000), st.sampled_from(["", "é", "😀"]),
                       st.sampled_from(["x", "é"])))
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(keys, inner, max_size=8),
    max_leaves=40,
)


@st.composite
def structured(draw) -> object:
    """A small document made large: repeated in an array, under many keys, or nested deep."""
    unit = draw(documents)
    count = draw(st.integers(1, 2000))
    how = draw(st.sampled_from(["array", "keys", "deep", "as-is"]))
    if how == "array":
        return [unit] * count
    if how == "keys":
        return {f"k{i}": unit for i in range(count)}
    if how == "deep":
        for _ in range(min(count, 200)):
            unit = [unit] if count % 2 else {"a": unit}
        return unit
    return unit


@settings(max_examples=200, deadline=None)
@given(structured())
def test_the_estimate_covers_the_modeled_cost_of_any_document(doc):
    body = orjson.dumps(doc)
    assert estimate(body) >= modeled_bytes(body)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([b"{}", b"[]", b"0", b"1.5", b'"a"', b'"\xc3\xa9"', b'{"a":0}', b'{"":""}', b"[[]]",
                        b'["a"]', b"9" * 40, b'"\\u00e9"', b"true"]),
       st.integers(1, 3000))
def test_the_estimate_covers_repeated_bomb_shapes(unit, count):
    for body in (b"[" + b",".join([unit] * count) + b"]", b'{"a":[' + b",".join([unit] * count) + b"]}",
                 b"{" + b",".join(b'"%d":%s' % (i, unit) for i in range(count)) + b"}"):
        assert estimate(body) >= modeled_bytes(body)


def cut(body: bytes, cuts: list[int]) -> list[bytes]:
    edges = sorted({0, len(body), *(c for c in cuts if c <= len(body))})
    return [body[start:end] for start, end in zip(edges, edges[1:], strict=False)]


@given(st.binary(max_size=3 * SCAN_FROM_BYTES) | st.text(max_size=SCAN_FROM_BYTES).map(lambda t: t.encode()),
       st.lists(st.integers(0, 3 * SCAN_FROM_BYTES), max_size=8))
def test_pieces_never_count_less_than_the_whole(body, cuts):
    whole = ParseCost()
    whole.add(body)
    pieces = ParseCost()
    for piece in cut(body, cuts):
        pieces.add(piece)
    assert pieces.length == whole.length and pieces.parse_bytes() >= whole.parse_bytes()


@given(st.binary(min_size=1, max_size=64), st.binary(max_size=64), st.lists(st.integers(0, 5), max_size=4))
def test_scanned_pieces_count_the_same_as_the_whole(seed, tail, cut_at):
    body = seed * (6 * SCAN_FROM_BYTES // len(seed) + 1) + tail
    cuts = [SCAN_FROM_BYTES * c for c in cut_at]  # every piece at least SCAN_FROM_BYTES long, so all are scanned
    whole = ParseCost()
    whole.add(body)
    pieces = ParseCost()
    for piece in cut(body, cuts):
        pieces.add(piece)
    assert pieces.parse_bytes() == whole.parse_bytes() and pieces.wide == whole.wide


def test_an_escape_cut_between_pieces_still_counts_as_wide():
    cost = ParseCost()
    cost.add(b'{"s":"' + b"a" * SCAN_FROM_BYTES + b'\\')
    cost.add(b'ud83d\\ude00"' + b" " * SCAN_FROM_BYTES + b"}")
    assert cost.wide


def test_small_pieces_are_charged_the_worst_rate_without_a_scan():
    cost = ParseCost()
    cost.add(b"[" * (SCAN_FROM_BYTES - 1))
    assert cost.containers == 0 and cost.parse_bytes() >= 134 * (SCAN_FROM_BYTES - 1)
    scanned = ParseCost()
    scanned.add(b"[" * SCAN_FROM_BYTES)
    assert scanned.containers == SCAN_FROM_BYTES and scanned.parse_bytes() <= cost.parse_bytes() * 1.01 + 134


def test_phases_hold_what_is_live_in_each():
    cost = ParseCost()
    cost.add(b'{"s":"' + b"a" * 1000 + b'"}')
    assert decoding_bytes(0, cost) == cost.length + cost.parse_bytes()
    assert decoding_bytes(10**6, cost) == 10**6 + cost.length  # a large raw gzip body outweighs the parse
    assert serializing_bytes(cost, 2, 500) > cost.parse_bytes() + 500
