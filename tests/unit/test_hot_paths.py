"""The request path's fast forms give the same answers as the plain forms they replace (issue 16).

Each fast path (ids encoded a run at a time, nesting checked a level at a time in C,
the parse-cost counts taken from the body with every other byte deleted, stamps set
by C loops) is checked against the straightforward code over drawn inputs.
"""

from __future__ import annotations

import multiprocessing
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.body import BodyLimits, _depth_exceeds, _nesting_within, read_events
from receiver.budget import MemoryBudget
from receiver.cost import ParseCost
from receiver.errors import BadRequest
from receiver.stamped_lines import serialize_spliced
from receiver.stamping import (
    _RANDOM_BITS,
    _RANDOM_MASK,
    IdGenerator,
    Stamping,
    _stamp_and_serialize,
    encode_id,
    encode_run,
    format_received_at,
    serialize_events,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=2), inner, max_size=4),
    max_leaves=30,
)


@given(st.integers(0, 2**48 - 1), st.integers(0, _RANDOM_MASK) | st.integers(_RANDOM_MASK - 600, _RANDOM_MASK),
       st.integers(1, 700))
def test_a_run_of_ids_is_each_id_encoded_alone(ms, first, count):
    expected = [encode_id((ms << _RANDOM_BITS) | ((first + i) & _RANDOM_MASK)) for i in range(count)]
    assert encode_run(ms, first, count) == expected


@settings(max_examples=500)
@given(st.lists(st.dictionaries(st.text(max_size=2), json_values, max_size=4), min_size=1, max_size=5),
       st.integers(0, 8))
def test_nesting_a_level_at_a_time_agrees_with_the_recursive_check(events, max_depth):
    assert _nesting_within(events, max_depth) == (not any(_depth_exceeds(e, max_depth) for e in events))


def test_deep_nesting_is_found_at_exactly_the_limit():
    event = {"a": 1}
    for _ in range(9):
        event = {"n": [event]}  # 1 + 9 * 2 levels
    assert _nesting_within([event], 19) and not _nesting_within([event], 18)


@settings(max_examples=20, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(300_000, 700_000))
def test_large_pieces_are_counted_exactly(seed, size):
    """Pieces longer than one counting slice: the counts are those of bytes.count over the whole."""
    body = (seed * (size // len(seed) + 1))[:size]
    cost = ParseCost()
    cost.add(body)
    assert cost.containers == body.count(b"{") + body.count(b"[")
    assert (cost.values, cost.keys, cost.quotes, cost.lines) == (
        body.count(b","), body.count(b":"), body.count(b'"'), body.count(b"\n"))
    assert cost.wide == (not body.isascii() or b"\\u" in body)


def _child_ids(ids: IdGenerator, now_ms: int, out) -> None:
    out.put(ids.new_ids(3, now_ms))


@pytest.mark.parametrize("child_ms", [2, 1], ids=["a later millisecond", "the parent's millisecond"])
def test_a_forked_worker_never_draws_its_parents_ids(child_ms):
    ids = IdGenerator()
    ids.new_ids(1, 1)  # the generator is in use before the fork, as in a pre-forking server
    queue = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=_child_ids, args=(ids, child_ms, queue))
    child.start()
    theirs = queue.get(timeout=30)
    child.join(30)
    assert not set(theirs) & set(ids.new_ids(3, child_ms))


def test_a_batch_keeps_client_ids_and_stamps_every_event_once():
    events = [{"n": 0}, {"n": 1, "_id": "mine"}, {"n": 2, "_received_at": "old"}, {"n": 3}]
    out = serialize_events(events, Stamping(), IdGenerator(), 1000, context={"ip": "10.0.0.1"})
    lines = [orjson.loads(line) for line in bytes(out).splitlines()]
    assert [line["n"] for line in lines] == [0, 1, 2, 3]
    assert lines[1]["_id"] == "mine"
    assert len({line["_id"] for line in lines}) == 4
    assert len({line["_received_at"] for line in lines}) == 1 and lines[2]["_received_at"] != "old"
    assert all(line["ip"] == "10.0.0.1" for line in lines)
    assert list(lines[2]) == ["n", "_received_at", "_id", "ip"]  # an existing key keeps its place


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=2), json_values, max_size=4), min_size=1, max_size=5),
       st.integers(1, 8), st.sampled_from(["", "[[{", "}]"]))
def test_a_counted_body_skips_the_nesting_check_only_when_no_event_can_be_too_deep(events, max_depth, noise):
    """Bodies long enough to be counted (so ``containers`` is known), brackets inside strings too."""
    events = [{**event, "pad": noise + "x" * 2100} for event in events]
    body = orjson.dumps(events)
    limits = BodyLimits(max_inflated_bytes=10**7, max_event_bytes=10**7, max_events=100, max_depth=max_depth)
    too_deep = any(_depth_exceeds(e, max_depth) for e in events)
    with MemoryBudget(10**9).hold() as hold:
        if too_deep:
            with pytest.raises(BadRequest, match="nesting"):
                read_events(body, None, "application/json", limits, hold)
        else:
            assert read_events(body, None, "application/json", limits, hold)[0] == events


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=2), json_values, max_size=4), min_size=1, max_size=5),
       st.integers(1, 8), st.sampled_from(["", "[[{", "}]"]), st.booleans())
def test_a_small_body_skips_the_nesting_check_only_when_no_event_can_be_too_deep(events, max_depth, noise, ndjson):
    """Bodies too short for the parse cost to count (a beacon): their brackets are counted before the parse."""
    events = [{**event, "pad": noise} for event in events]
    body = b"\n".join(map(orjson.dumps, events)) if ndjson else orjson.dumps(events)
    limits = BodyLimits(max_inflated_bytes=10**7, max_event_bytes=10**7, max_events=100, max_depth=max_depth)
    too_deep = any(_depth_exceeds(e, max_depth) for e in events)
    kind = "application/x-ndjson" if ndjson else "application/json"
    with MemoryBudget(10**9).hold() as hold:
        if too_deep:
            with pytest.raises(BadRequest, match="nesting"):
                read_events(body, None, kind, limits, hold)
        else:
            assert read_events(body, None, kind, limits, hold)[0] == events


class CountingIds(IdGenerator):
    """Ids 0, 1, 2, … of a fixed millisecond: two serializations of the same events compare byte for byte."""

    def __init__(self) -> None:
        super().__init__()
        self.next = 0

    def new_ids(self, count: int, now_ms: int) -> list[str]:
        first, self.next = self.next, self.next + count
        return encode_run(1_700_000_000_000, first, count)


plain_events = st.lists(st.dictionaries(st.text(max_size=4).filter(lambda k: k not in ("_id", "at")), json_values,
                                        min_size=1, max_size=4), min_size=2, max_size=600)


@settings(max_examples=150, deadline=None)
@given(plain_events, st.sampled_from([("_id", "_received_at"), ("id", "at"), ('q"\u00e9', "\\t")]))
def test_spliced_stamps_are_the_bytes_of_stamped_dicts(events, fields):
    """Byte for byte what stamping the dicts and serializing them gives (the same ids and time)."""
    stamping = Stamping(True, *fields)
    events = [event for event in events if fields[0] not in event and fields[1] not in event] or [{"a": 1}, {"b": 2}]
    received_at = format_received_at(1_700_000_000_123)
    copies = orjson.loads(orjson.dumps(events))
    ids = CountingIds()
    spliced = serialize_spliced(events, fields[0], fields[1], received_at, lambda count: ids.new_ids(count, 0), 10**6)
    assert events == copies, "the events themselves are never modified"
    with mock.patch("time.time_ns", return_value=1_700_000_000_123 * 1_000_000):
        general = _stamp_and_serialize(copies, stamping, CountingIds(), 10**6, None, None)
    assert bytes(spliced) == bytes(general)


@pytest.mark.parametrize("events", [[{"a": 1}, {}], [{"a": 1}, {"_id": "x"}], [{"_received_at": "t"}, {"a": 1}],
                                    [{"a": 1}, {"big": "x" * 2000}]])
def test_what_splicing_does_not_cover_is_left_to_the_general_path(events):
    assert serialize_spliced(events, "_id", "_received_at", "t", lambda count: ["0" * 26] * count, 2000) is None
