"""An independent expectation of what the receiver must do with a body: store exactly these events, or refuse.

Written from docs/http-api.md with the standard library only (zlib, json) and no
code shared with the receiver, so the fuzz tests compare two implementations:
what this says the spool must hold after a 201 (byte for byte: Python's compact
``json.dumps(ensure_ascii=False)`` writes the same bytes as orjson for every
string, int, bool, null, object and array; events with floats are compared as
values, since the two print exponents differently), and when a body must be
refused. It does not model the parse-memory budget (an estimate), so "valid
here" means "may get a 201"; only small valid bodies must get one.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass

__all__ = ["OracleLimits", "Refused", "SpoolExpectation", "expect", "is_small"]

ID_PATTERN = re.compile(r"[0-9A-V]{26}")
RECEIVED_AT_PATTERN = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
PLACEHOLDER_ID = "0" * 26
PLACEHOLDER_AT = "2026-11-26T07:45:42.123Z"
BLANK = b" \t\n\r\x0b\x0c"  # what bytes.strip() strips: a line of only these is blank
JSON_TYPES = {"application/json"}
NDJSON_TYPES = {"application/x-ndjson", "application/ndjson", "application/jsonlines"}
TEXT_TYPES = {"text/plain"}
SMALL_BODY_BYTES = 4096  # a valid body this small must get a 201: no estimate can refuse it


class Refused(Exception):
    """The body must not get a 201 (and nothing of it may be written)."""


@dataclass(frozen=True)
class OracleLimits:
    max_body_bytes: int
    max_inflated_bytes: int
    max_events: int
    max_depth: int
    max_event_bytes: int
    stamp: bool = True


@dataclass
class SpoolExpectation:
    events: list[dict]
    inflated_bytes: int
    ambiguous: bool  # an event's stored size is within the float-printing slack of the limit

    def check(self, lines: list[bytes], stamp: bool = True) -> None:
        """The lines a 201 added must be these events, stamped, in order."""
        assert len(lines) == len(self.events), f"{len(lines)} lines stored for {len(self.events)} events"
        for event, line in zip(self.events, lines, strict=True):
            assert line.endswith(b"\n") and line.count(b"\n") == 1, line[:200]
            stored = _loads(line[:-1].decode("utf-8"))
            expected = dict(event)
            if stamp:
                if "_id" not in event:
                    assert ID_PATTERN.fullmatch(stored.get("_id", "")), stored.get("_id")
                    expected["_id"] = stored["_id"]
                assert RECEIVED_AT_PATTERN.fullmatch(stored.get("_received_at", "")), stored.get("_received_at")
                expected["_received_at"] = stored["_received_at"]
            if _has_float(expected):
                assert _dumps(stored) == _dumps(expected), (stored, expected)
            else:
                assert line == _dumps(expected) + b"\n", (line[:300], _dumps(expected)[:300])


def is_small(expectation: SpoolExpectation) -> bool:
    return expectation.inflated_bytes <= SMALL_BODY_BYTES and not expectation.ambiguous


def expect(body: bytes, content_type: str, encoding: str | None, limits: OracleLimits, *,
           small_only: bool = False) -> SpoolExpectation | None:
    """The events a 201 must store for this request, or :class:`Refused`.

    With ``small_only``, None for a body that inflates past what :func:`is_small` allows (not worth parsing).
    """
    if len(body) > limits.max_body_bytes:
        raise Refused("body too large")
    kind = content_type.split(";")[0].strip().lower()
    if kind not in JSON_TYPES | NDJSON_TYPES | TEXT_TYPES:
        raise Refused("content type")
    text = _decode(body, encoding, limits)
    if small_only and len(text) > SMALL_BODY_BYTES:
        return None
    if not text.strip(BLANK):
        raise Refused("empty")
    if kind in NDJSON_TYPES:
        events = _ndjson(text)
    else:
        try:
            doc = _loads_bytes(text)
        except Refused:
            if kind in TEXT_TYPES and b"\n" in text:
                events = _ndjson(text)
            else:
                raise
        else:
            events = doc if isinstance(doc, list) else [doc]
    if not events or len(events) > limits.max_events:
        raise Refused("event count")
    if not all(isinstance(e, dict) for e in events):
        raise Refused("not objects")
    if any(_depth(e) > limits.max_depth for e in events):
        raise Refused("too deep")
    ambiguous = False
    for event in events:
        size, slack = _stored_size(event, limits.stamp)
        if size - slack > limits.max_event_bytes:
            raise Refused("event too large")
        ambiguous |= size + slack > limits.max_event_bytes
    return SpoolExpectation(events, len(text), ambiguous)


def _decode(body: bytes, encoding: str | None, limits: OracleLimits) -> bytes:
    name = (encoding or "identity").strip().lower()
    if name in ("identity", ""):
        return body
    if name not in ("gzip", "x-gzip"):
        raise Refused("encoding")
    out, rest, members = b"", body, 0
    if not rest:
        raise Refused("empty gzip")
    while rest:
        inflater = zlib.decompressobj(wbits=31)
        try:
            out += inflater.decompress(rest, limits.max_inflated_bytes + 1 - len(out))
        except zlib.error:
            raise Refused("not gzip") from None
        if len(out) > limits.max_inflated_bytes or inflater.unconsumed_tail:
            raise Refused("inflates too far")
        if not inflater.eof:
            raise Refused("truncated gzip")
        members += 1
        rest = inflater.unused_data
    if members > limits.max_events:
        raise Refused("too many members")
    return out


def _ndjson(text: bytes) -> list:
    return [_loads_bytes(line) for line in text.split(b"\n") if line.strip(BLANK)]


def _loads_bytes(data: bytes) -> object:
    try:
        decoded = data.decode("utf-8")  # strict: no invalid sequences, no encoded surrogates
    except UnicodeDecodeError:
        raise Refused("not UTF-8") from None
    return _loads(decoded)


def _reject_constant(name: str) -> object:
    raise Refused(f"{name} is not JSON")


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Refused("number out of range")
    return value


def _integer(text: str) -> int | float:
    value = int(text)
    if -(2**63) <= value < 2**64:  # what orjson keeps as an integer; beyond, a double
        return value
    return _number(text)


def _object(pairs: list[tuple[str, object]]) -> dict:
    for key, _ in pairs:
        _check_text(key)
    return dict(pairs)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused("lone surrogate") from None


def _loads(text: str) -> object:
    try:
        doc = json.loads(text, parse_constant=_reject_constant, parse_float=_number, parse_int=_integer,
                         object_pairs_hook=_object)
    except (json.JSONDecodeError, RecursionError):
        raise Refused("not JSON") from None
    _check_strings(doc)
    return doc


def _check_strings(value: object) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _depth(value: object) -> int:
    """An event (an object) is depth 1; each object or array inside it adds one."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _has_float(value: object) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _floats(value: object) -> int:
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            count += 1
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def _stored_size(event: dict, stamp: bool) -> tuple[int, int]:
    """The stored size of an event with its stamps, and how far off it may be (floats print differently)."""
    stamped = dict(event)
    if stamp:
        stamped.setdefault("_id", PLACEHOLDER_ID)
        stamped["_received_at"] = PLACEHOLDER_AT
    return len(_dumps(stamped)), 4 * _floats(stamped)


def _dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
