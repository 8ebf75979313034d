"""Turning a request body into a list of events, within limits, or a clear 4xx.

Accepted: one JSON object, a JSON array of objects, or NDJSON (one object per
line), as ``application/json``, ``application/x-ndjson`` or ``text/plain`` (what
``navigator.sendBeacon`` sends for a string), optionally ``Content-Encoding: gzip``.

A body is taken whole or not at all. Gzip is inflated member after member (RFC
1952 allows several; ``cat a.gz b.gz`` and some compressors make them) within
one cap for all of them, ``max_inflated_bytes``; anything after a member that
is not another complete member is a 400. What gzip wraps stays bytes: gzip
inside gzip is not JSON (400), never inflated again.

Memory is bounded before it is spent: :func:`read_events` counts, while the body
inflates, what its parse will cost (:mod:`receiver.cost`) and asks the worker's
:class:`~receiver.budget.Hold` for it, so a bomb is refused (413) after
inflating only as much as shows it to be one, and never parsed.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain, islice

import orjson

from .budget import Hold
from .cost import ParseCost, decoding_bytes
from .errors import BadRequest, TooLarge, Unsupported, quote_client_value

__all__ = ["BodyLimits", "declared_body_bytes", "decode_body", "media_type", "parse_events", "read_events"]

JSON = "application/json"
NDJSON = "application/x-ndjson"
TEXT = "text/plain"
_KNOWN_TYPES = {JSON, NDJSON, TEXT, "application/ndjson", "application/jsonlines", "application/json-seq"}
_NDJSON_ALIASES = {NDJSON, "application/ndjson", "application/jsonlines"}
MAX_REPORTED_ERRORS = 100  # per response: the errors list costs memory per entry
_ONLY_DICTS = {dict}
# A body the parse cost did not count (receiver/cost.py: under SCAN_FROM_BYTES, or gzip in small pieces) has
# its brackets counted here when it is at most this long: cheaper than walking its values for the depth.
_COUNT_UNSCANNED_MAX_BYTES = 64 * 1024
_NON_BLANK = re.compile(rb"[^ \t\n\r\x0b\x0c]")  # what bytes.strip() keeps


@dataclass(frozen=True)
class BodyLimits:
    max_inflated_bytes: int
    max_event_bytes: int
    max_events: int
    max_depth: int


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, lowercased; refuses non-UTF-8 charsets."""
    if not content_type:
        raise Unsupported(f"Content-Type is required: one of {JSON}, {NDJSON}, {TEXT}")
    kind, _, params = content_type.partition(";")
    kind = kind.strip().lower()
    if kind not in _KNOWN_TYPES or kind == "application/json-seq":
        raise Unsupported(f"Content-Type {quote_client_value(kind)} is not accepted: use {JSON}, {NDJSON} or {TEXT}")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise Unsupported(f"charset {quote_client_value(value.strip())} is not accepted: send UTF-8")
    return kind


def declared_body_bytes(content_length: str | None, max_body_bytes: int) -> int:
    """The body size a request announces, to hold before reading it; 0 if absent or refused anyway."""
    try:
        size = int(content_length or 0)
    except ValueError:
        return 0  # the reader refuses it
    return size if 0 < size <= max_body_bytes else 0


def read_events(raw: bytes, content_encoding: str | None, kind: str, limits: BodyLimits,
                hold: Hold) -> tuple[list[dict], ParseCost]:
    """Decode and parse a body, holding the memory its parse will need before spending it.

    Takes the only reference to ``raw`` (pass it straight from the read), so that
    the raw body is freed once inflated and the inflated one once parsed.
    """
    cost = ParseCost()
    gzipped = _is_gzip(content_encoding)
    raw_bytes = len(raw) if gzipped else 0

    def counted(piece: bytes) -> None:
        cost.add(piece)
        hold.need(decoding_bytes(raw_bytes, cost))

    if gzipped:
        body = _inflate(raw, limits, counted)
    else:
        counted(raw)
        body = raw
    del raw
    events = parse_events(body, kind, limits, containers=cost.containers if not cost.unscanned else None)
    return events, cost


def decode_body(raw: bytes, content_encoding: str | None, limits: BodyLimits,
                on_piece: Callable[[bytes], None] | None = None) -> bytes | bytearray:
    """Undo ``Content-Encoding`` (identity or gzip), never inflating past the cap."""
    if not _is_gzip(content_encoding):
        return raw
    return _inflate(raw, limits, on_piece or _ignore)


def _is_gzip(content_encoding: str | None) -> bool:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("identity", ""):
        return False
    if encoding not in ("gzip", "x-gzip"):
        raise Unsupported(f"Content-Encoding {quote_client_value(encoding)} is not accepted: use gzip or none")
    return True


def _ignore(_piece: bytes) -> None:
    return None


# Input is fed to zlib in slices so that what follows a member (copied by zlib as
# ``unused_data``) is at most a slice; output comes in pieces so that a bomb is
# counted, and refused, as it inflates.
_FEED_BYTES = 16 * 1024
_PIECE_BYTES = 256 * 1024


def _inflate(raw: bytes, limits: BodyLimits, on_piece: Callable[[bytes], None]) -> bytearray:
    """Every gzip member of ``raw`` in order, together at most ``max_inflated_bytes``."""
    cap = limits.max_inflated_bytes
    out = bytearray()
    members = 0
    view = memoryview(raw)
    size, fed = len(view), 0
    pending: bytes | memoryview = b""
    inflater = zlib.decompressobj(wbits=31)
    try:
        while True:
            if not pending and fed < size:
                pending = view[fed:fed + _FEED_BYTES]
                fed += len(pending)
            try:
                piece = inflater.decompress(pending, min(_PIECE_BYTES, cap + 1 - len(out)))
            except zlib.error as exc:
                where = f" after member {members}" if members else ""
                raise BadRequest(f"body is not valid gzip{where}: {exc}") from None
            pending = inflater.unconsumed_tail
            if piece:
                if len(out) + len(piece) > cap:
                    raise TooLarge(f"inflated body exceeds {cap} bytes (--max-inflated-bytes)")
                out += piece
                on_piece(piece)
            if inflater.eof:
                members += 1
                pending = inflater.unused_data
                if not pending and fed >= size:
                    return out
                if members >= limits.max_events:
                    raise TooLarge(f"more than {limits.max_events} gzip members; at most one per event "
                                   "(--max-events)")
                inflater = zlib.decompressobj(wbits=31)
            elif not piece and not pending and fed >= size:
                raise BadRequest("gzip body is truncated" if members == 0 else
                                 f"gzip member {members + 1} is truncated")
    finally:
        view.release()  # the caller may free raw now


def parse_events(body: bytes | bytearray, kind: str, limits: BodyLimits, *, containers: int | None = None) -> list[dict]:
    """Parse the body into a non-empty list of JSON objects.

    ``containers``: the body's ``{`` and ``[`` bytes, if counted (:class:`~receiver.cost.ParseCost`).
    Every event takes one, so an event can nest at most ``containers - events + 1`` deep (a
    bracket inside a string only raises the count): within ``max_depth``, nothing is looked at.
    """
    if not body or body.isspace():
        raise BadRequest("body is empty: send a JSON object, an array of objects, or NDJSON")
    if kind in _NDJSON_ALIASES:
        events = _parse_ndjson(body, limits)
    else:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if kind == TEXT and b"\n" in body:
                events = _parse_ndjson(body, limits)  # sendBeacon with an NDJSON string
            else:
                raise BadRequest(f"body is not valid JSON: {exc}") from None
        else:
            events = doc if isinstance(doc, list) else [doc]
    if not events:
        raise BadRequest("no events: the array is empty")
    if len(events) > limits.max_events:
        raise TooLarge(f"{len(events)} events in one request; at most {limits.max_events} (--max-events)")
    if set(map(type, events)) != _ONLY_DICTS:  # at C speed; the errors only when there are some
        not_objects = (i for i, e in enumerate(events) if not isinstance(e, dict))
        errors = [{"index": i, "message": f"event must be a JSON object, not {_json_type(events[i])}"}
                  for i in islice(not_objects, MAX_REPORTED_ERRORS)]
        raise BadRequest("every event must be a JSON object", errors=errors)
    if containers is None and len(body) <= _COUNT_UNSCANNED_MAX_BYTES:
        containers = body.count(b"{") + body.count(b"[")  # a beacon's few bytes: two C loops, not a walk
    if containers is None or containers - len(events) + 1 > limits.max_depth:
        _check_depth(events, limits.max_depth)
    return events


def _parse_ndjson(body: bytes | bytearray, limits: BodyLimits) -> list:
    """Lines end in \\n (or \\r\\n); blank lines are skipped. Lines are parsed in place, never copied."""
    events, errors = [], []
    view = memoryview(body)
    start, size, number = 0, len(body), 0
    while start < size:
        end = body.find(b"\n", start)
        if end < 0:
            end = size
        line = view[start:end]
        number += 1
        start = end + 1
        if _NON_BLANK.search(line) is None:
            continue
        if len(events) >= limits.max_events:
            raise TooLarge(f"more than {limits.max_events} events in one request (--max-events)")
        try:
            events.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            errors.append({"index": len(events) + len(errors), "line": number, "message": str(exc)})
            if len(errors) >= MAX_REPORTED_ERRORS:
                break  # enough to show what is wrong; the rest is not parsed
    if errors:
        raise BadRequest("NDJSON body has lines that are not valid JSON", errors=errors)
    return events


def _check_depth(events: list[dict], max_depth: int) -> None:
    if _nesting_within(events, max_depth):
        return
    for index, event in enumerate(events):  # which one: the first too deep
        if _depth_exceeds(event, max_depth):
            raise BadRequest(f"event nesting is deeper than {max_depth}", errors=[{"index": index}])


def _nesting_within(events: list[dict], max_depth: int) -> bool:
    """No container nested deeper than ``max_depth`` (an event is at depth 1), looked at a level at a time.

    The same answer as :func:`_depth_exceeds` over every event, in a fraction of its time: a level's
    values are gathered and typed by C loops (``chain``, ``map``), so flat events cost one pass over
    their values and no Python call per value; only the containers found go on to the next level.
    """
    level: list = events
    for depth in range(1, max_depth + 1):
        types = set(map(type, _values_of(level, depth)))
        if dict not in types and list not in types:
            return True
        if depth < max_depth:
            level = [value for value in _values_of(level, depth) if type(value) is dict or type(value) is list]
    return False


def _values_of(level: list, depth: int):
    """Every value held by the containers of one level (the events themselves at depth 1: all dicts)."""
    if depth == 1:
        return level[0].values() if len(level) == 1 else chain.from_iterable(map(dict.values, level))
    return chain.from_iterable(container.values() if type(container) is dict else container for container in level)


def _depth_exceeds(value: object, budget: int) -> bool:
    if budget <= 0:
        return True
    if isinstance(value, dict):
        values = value.values()
    elif isinstance(value, list):
        values = value
    else:
        return False
    return any(isinstance(v, dict | list) and _depth_exceeds(v, budget - 1) for v in values)


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else type(value).__name__
