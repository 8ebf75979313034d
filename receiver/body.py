"""Turning a request body into a list of events, within limits, or a clear 4xx.

Accepted: one JSON object, a JSON array of objects, or NDJSON (one object per
line), as ``application/json``, ``application/x-ndjson`` or ``text/plain`` (what
``navigator.sendBeacon`` sends for a string), optionally ``Content-Encoding: gzip``.
Inflation is capped: a gzip bomb costs at most ``max_inflated_bytes`` of memory.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import orjson

from .errors import BadRequest, TooLarge, Unsupported, quote_client_value

__all__ = ["BodyLimits", "decode_body", "parse_events"]

JSON = "application/json"
NDJSON = "application/x-ndjson"
TEXT = "text/plain"
_KNOWN_TYPES = {JSON, NDJSON, TEXT, "application/ndjson", "application/jsonlines", "application/json-seq"}
_NDJSON_ALIASES = {NDJSON, "application/ndjson", "application/jsonlines"}


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


def decode_body(raw: bytes, content_encoding: str | None, limits: BodyLimits) -> bytes:
    """Undo ``Content-Encoding`` (identity or gzip), never inflating past the cap."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("identity", ""):
        return raw
    if encoding not in ("gzip", "x-gzip"):
        raise Unsupported(f"Content-Encoding {quote_client_value(encoding)} is not accepted: use gzip or none")
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(raw, limits.max_inflated_bytes + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid gzip: {exc}") from None
    if len(out) > limits.max_inflated_bytes or inflater.unconsumed_tail:
        raise TooLarge(f"inflated body exceeds {limits.max_inflated_bytes} bytes")
    if not inflater.eof:
        raise BadRequest("gzip body is truncated")
    return out


def parse_events(body: bytes, kind: str, limits: BodyLimits) -> list[dict]:
    """Parse the body into a non-empty list of JSON objects."""
    if not body.strip():
        raise BadRequest("body is empty: send a JSON object, an array of objects, or NDJSON")
    if kind in _NDJSON_ALIASES:
        events = _parse_ndjson(body, limits)
    else:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if kind == TEXT and b"\n" in body.strip():
                events = _parse_ndjson(body, limits)  # sendBeacon with an NDJSON string
            else:
                raise BadRequest(f"body is not valid JSON: {exc}") from None
        else:
            events = doc if isinstance(doc, list) else [doc]
    if not events:
        raise BadRequest("no events: the array is empty")
    if len(events) > limits.max_events:
        raise TooLarge(f"{len(events)} events in one request; at most {limits.max_events}")
    errors = [
        {"index": i, "message": f"event must be a JSON object, not {_json_type(e)}"}
        for i, e in enumerate(events)
        if not isinstance(e, dict)
    ]
    if errors:
        raise BadRequest("every event must be a JSON object", errors=errors[:100])
    _check_depth(events, limits.max_depth)
    return events


def _parse_ndjson(body: bytes, limits: BodyLimits) -> list:
    events, errors = [], []
    for number, line in enumerate(body.splitlines()):
        if not line.strip():
            continue
        if len(events) >= limits.max_events:
            raise TooLarge(f"more than {limits.max_events} events in one request")
        try:
            events.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            errors.append({"index": len(events) + len(errors), "line": number + 1, "message": str(exc)})
    if errors:
        raise BadRequest("NDJSON body has lines that are not valid JSON", errors=errors[:100])
    return events


def _check_depth(events: list[dict], max_depth: int) -> None:
    for index, event in enumerate(events):
        if _depth_exceeds(event, max_depth):
            raise BadRequest(f"event nesting is deeper than {max_depth}", errors=[{"index": index}])


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
