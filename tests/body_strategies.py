"""Hypothesis strategies for request bodies: events as clients render them, structured bombs, encodings, corruptions.

Used by tests/integration/test_receiver_fuzz.py; what the receiver must do with
each is decided by tests/body_oracle.py.
"""

from __future__ import annotations

import gzip
import json

from hypothesis import strategies as st

__all__ = ["bomb_bodies", "corrupted", "encoded", "event_bodies", "gz", "structured_requests"]

keys = st.text(max_size=8) | st.sampled_from(["_id", "_received_at", "a", "", "é", "😀"])
leaves = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.integers(-(10**30), 10**30)
          | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
          | st.sampled_from(["\u2028", "\x00\x1f\x7f", '"\\/', "😀" * 3]))
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                      max_leaves=16)
events = st.dictionaries(keys, values, max_size=6)

NDJSON_TYPES = ["application/x-ndjson", "application/ndjson", "application/jsonlines"]
CORRUPTIONS = [b"\xff", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80",
               b"\\ud800", b"\\udc00", b"\\ud83d", b"\\ud83dx", b"\\ude00\\ud83d", b'"', b"\\", b"\n", b"\x00"]
BOMB_UNITS = [b"{}", b"[]", b"[[]]", b'{"":0}', b"0", b"1.5", b"1e5", b'"a"', "\"é\"".encode(), b'"\\u00e9"',
              b"9" * 30, b"9" * 400, b"1e400", b"true", b'"\\ud800"', b'"\xff"', b'{"a":[1,{"b":null}]}']


def render(value: object, style: str, indent: int) -> bytes:
    if style == "compact":
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    if style == "ascii":
        return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode()
    if style == "pretty":
        return json.dumps(value, ensure_ascii=False, indent=indent).encode()
    return json.dumps(value, ensure_ascii=False, separators=(" , ", " : ")).encode()


@st.composite
def event_bodies(draw) -> tuple[bytes, str]:
    """Events rendered as a client might send them: (body, content type)."""
    batch = draw(st.lists(events, min_size=0, max_size=8))
    style = draw(st.sampled_from(["compact", "ascii", "pretty", "spaced"]))
    indent = draw(st.integers(0, 3))
    form = draw(st.sampled_from(["object", "array", "ndjson", "text"]))
    if form == "object" and len(batch) == 1:
        return render(batch[0], style, indent), draw(st.sampled_from(["application/json", "text/plain"]))
    if form in ("ndjson", "text") and batch:
        separator = draw(st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\n \t\n"]))
        lines = [render(e, "compact" if style == "pretty" else style, 0) for e in batch]
        body = separator.join(lines) + draw(st.sampled_from([b"", b"\n", b"\r\n"]))
        return body, draw(st.sampled_from(NDJSON_TYPES)) if form == "ndjson" else "text/plain;charset=UTF-8"
    return render(batch, style, indent), draw(st.sampled_from(["application/json", "application/json; charset=utf-8"]))


@st.composite
def bomb_bodies(draw, scale: int) -> tuple[bytes, str]:
    """A structure repeated or nested up to about 1.5x ``scale`` bytes: (body, content type)."""
    shape = draw(st.sampled_from(["wide events", "wide in event", "many keys", "long string", "deep",
                                  "many lines", "huge number", "many long events"]))
    size = max(2, int(scale * draw(st.floats(0.001, 1.5))))
    unit = draw(st.sampled_from(BOMB_UNITS))
    json_type = "application/json"
    if shape == "wide events":
        count = max(1, size // (len(unit) + 1))
        return b"[" + (unit + b",") * (count - 1) + unit + b"]", json_type
    if shape == "wide in event":
        count = max(1, size // (len(unit) + 1))
        return b'{"a":[' + (unit + b",") * (count - 1) + unit + b"]}", json_type
    if shape == "many keys":
        count = max(1, size // (len(unit) + 10))
        return b"{" + b",".join(b'"k%d":%s' % (i, unit) for i in range(count)) + b"}", json_type
    if shape == "long string":
        char = draw(st.sampled_from([b"x", "é".encode(), "😀".encode(), b"\\u00e9", b"\\n"]))
        return b'{"s":"' + char * max(1, size // len(char)) + b'"}', json_type
    if shape == "deep":
        depth = min(size, draw(st.integers(1, 5000)))
        opener, closer = draw(st.sampled_from([(b'{"a":', b"}"), (b"[", b"]"), (b'{"a":[', b"]}")]))
        return opener * depth + b"{}" + closer * depth, json_type
    if shape == "many lines":
        line = draw(st.sampled_from([b"{}", b"", b"[]", b'{"a":1}', b" ", b"nope"]))
        return (line + b"\n") * max(1, size // (len(line) + 1)), draw(st.sampled_from(NDJSON_TYPES))
    if shape == "huge number":
        return b'{"n":' + draw(st.sampled_from([b"-", b""])) + b"9" * size + b"}", json_type
    count = max(1, draw(st.integers(1, 60)))
    pad = max(0, size // count - 20)
    return b"[" + b",".join(b'{"i":%d,"p":"%s"}' % (i, b"x" * pad) for i in range(count)) + b"]", json_type


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


@st.composite
def encoded(draw, body: bytes) -> tuple[bytes, str | None]:
    """The body plain or gzip: one member, many (cut anywhere, empty ones too), nested, with garbage, truncated."""
    how = draw(st.sampled_from(["plain", "plain", "gzip", "members", "gzip in gzip", "trailing", "truncated"]))
    if how == "plain":
        return body, draw(st.sampled_from([None, "identity"]))
    if how == "gzip":
        return gz(body), draw(st.sampled_from(["gzip", "x-gzip", "GZIP"]))
    if how == "members":
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=8)))
        edges = [0, *cuts, len(body)]
        return b"".join(gz(body[a:b]) for a, b in zip(edges, edges[1:], strict=False)), "gzip"
    if how == "gzip in gzip":
        return gz(gz(body)), "gzip"
    if how == "trailing":
        return gz(body) + draw(st.sampled_from([b"\x00", b"\x00" * 8, b"garbage", b"\x1f\x8b", b"\n"])), "gzip"
    whole = gz(body)
    return whole[: draw(st.integers(0, len(whole) - 1))], "gzip"


@st.composite
def corrupted(draw, body: bytes) -> bytes:
    if not draw(st.booleans()):
        return body
    at = draw(st.integers(0, len(body)))
    how = draw(st.sampled_from(["insert", "replace", "truncate"]))
    if how == "truncate":
        return body[:at]
    bad = draw(st.sampled_from(CORRUPTIONS))
    return body[:at] + bad + body[at + (len(bad) if how == "replace" else 0):]


@st.composite
def structured_requests(draw, scale: int) -> tuple[bytes, str, str | None]:
    body, content_type = draw(event_bodies() if draw(st.integers(0, 3)) else bomb_bodies(scale))
    body = draw(corrupted(body))
    data, encoding = draw(encoded(body))
    return data, content_type, encoding
