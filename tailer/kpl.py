"""KPL aggregated records: many lines in one Kinesis record, readable by the KCL.

Format (the Kinesis Producer Library's): the 4 magic bytes ``F3 89 9A C2``, a
protobuf ``AggregatedRecord``, then the MD5 digest of that protobuf::

    message AggregatedRecord {
      repeated string partition_key_table = 1;
      repeated string explicit_hash_key_table = 2;
      repeated Record records = 3;
    }
    message Record {
      required uint64 partition_key_index = 1;
      optional uint64 explicit_hash_key_index = 2;
      required bytes data = 3;
    }

Hand-encoded (a handful of varints) because the generic protobuf runtime would
cost more per line than everything else the tailer does. Tests check the
output with the ``aws-kinesis-agg`` deaggregator, an implementation we did not write.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Iterator
from itertools import accumulate, chain
from operator import add, index

from .lines import split_lines
from .speedups import compiled

__all__ = ["KPL_MAGIC", "Aggregate", "deaggregate", "encode_lines", "is_aggregated"]

KPL_MAGIC = b"\xf3\x89\x9a\xc2"
_DIGEST_BYTES = 16
_OVERHEAD = len(KPL_MAGIC) + _DIGEST_BYTES
_PARTS_DIGESTED_ONE_BY_ONE = 16


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_VARINT_CACHE = [_varint(i) for i in range(1 << 14)]


def varint(value: int) -> bytes:
    return _VARINT_CACHE[value] if value < 16384 else _varint(value)


class Aggregate:
    """One aggregated record being filled. Not thread-safe.

    ``add`` returns False (and adds nothing) when the line would not fit in
    ``max_bytes``: the whole Kinesis record — magic, protobuf, digest — plus the
    UTF-8 bytes of the partition key it is sent under (Kinesis counts the key's
    bytes toward the 1 MiB record limit). The first line is always taken; the
    caller checks that one against the record limit itself.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._keys: dict[str, int] = {}
        self._key_parts: list[bytes] = []
        self._parts: list[bytes] = []
        self.size = _OVERHEAD
        self.count = 0
        self.first_key: str | None = None
        self.first_key_bytes = 0

    def add(self, data: bytes, key: str) -> bool:
        index = self._keys.get(key)
        new_key = encoded = b""
        if index is None:
            encoded = key.encode()
            new_key = b"\x0a" + varint(len(encoded)) + encoded
            index = len(self._keys)
        n = len(data)
        inner = b"\x08" + varint(index) + b"\x1a" + varint(n)
        inner_len = len(inner) + n
        grow = 1 + len(varint(inner_len)) + inner_len + len(new_key)
        if self.count and self.size + grow + self.first_key_bytes > self.max_bytes:
            return False
        if new_key:
            self._keys[key] = index
            self._key_parts.append(new_key)
            if self.first_key is None:
                self.first_key = key
                self.first_key_bytes = len(encoded)
        self._parts.append(b"\x1a" + varint(inner_len) + inner)
        self._parts.append(data)
        self.size += grow
        self.count += 1
        return True

    @property
    def record_bytes(self) -> int:
        """What Kinesis counts toward its record limit: the record plus its partition key."""
        return self.size + self.first_key_bytes

    def room_for(self, key: str) -> int:
        """Bytes still free for records under ``key`` (already in the key table)."""
        key_bytes = self.first_key_bytes if self.first_key is not None else len(key.encode())
        return self.max_bytes - key_bytes - self.size

    def extend_records(self, records: bytes, count: int) -> None:
        """Append ``count`` sub-records under key index 0, already encoded by :func:`encode_lines`."""
        self._parts.append(records)
        self.size += len(records)
        self.count += count

    def to_bytes(self) -> bytes:
        """Magic, protobuf, digest. Lines encoded in bulk (:meth:`extend_records`) are a few large parts:
        digested one by one and copied once, into the record. A part per line (per-line keys) is joined
        first, since a digest call per part would cost more than the copy it saves."""
        parts = self._key_parts + self._parts
        if len(parts) > _PARTS_DIGESTED_ONE_BY_ONE:
            parts = [b"".join(parts)]
        digest = hashlib.md5(usedforsecurity=False)
        for part in parts:
            digest.update(part)
        return b"".join((KPL_MAGIC, *parts, digest.digest()))


def _first_key_header(n: int) -> bytes:
    inner = b"\x08\x00\x1a" + varint(n)
    return b"\x1a" + varint(len(inner) + n) + inner


class _HeaderCache(dict):
    """Line length -> its header under key index 0, made on first use (lengths repeat)."""

    def __missing__(self, n: int) -> bytes:
        header = self[n] = _first_key_header(n)
        return header


_FIRST_KEY_HEADERS = _HeaderCache()


def _encode_lines(data: bytes, start: int, room: int) -> tuple[bytes, int, int]:
    """The lines of ``data[start:]`` (each ending in a newline) as sub-records under key index 0, as
    many as fit in ``room`` bytes: (their bytes, where the first line not taken starts, how many).

    A line without its newline is never taken. This is the definition of what the compiled
    ``tailer._speedups.kpl_records`` does (tests/unit/test_kpl_records.py holds the two to each
    other); :data:`encode_lines` is the compiled one where it was built. In C loops, not a Python
    step per line: a sub-record is longer than its line, so the lines that fit lie within
    ``room`` bytes of ``start``, and only those are split.
    """
    if not isinstance(data, bytes):  # as the C: immutable bytes only
        raise TypeError(f"kpl_records: data must be bytes, not {type(data).__name__}")
    start, room = index(start), index(room)
    if not 0 <= start <= len(data):
        raise ValueError("kpl_records: start is outside the data")
    cut = data.rfind(b"\n", start, start + max(room, 0)) + 1  # the window ends at a newline: one C split
    lines = split_lines(data[start:cut]) if cut > start else []
    lengths = list(map(len, lines))
    headers = list(map(_FIRST_KEY_HEADERS.__getitem__, lengths))
    count = bisect_right(list(accumulate(map(add, map(len, headers), lengths))), room)
    records = b"".join(chain.from_iterable(zip(headers[:count], lines[:count], strict=True)))
    return records, start + sum(lengths[:count]), count


encode_lines = compiled.kpl_records if compiled is not None else _encode_lines


def is_aggregated(data: bytes) -> bool:
    return (
        len(data) > _OVERHEAD
        and data.startswith(KPL_MAGIC)
        and hashlib.md5(data[4:-16], usedforsecurity=False).digest() == data[-16:]
    )


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def deaggregate(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Yield (partition key, data) of each sub-record; a plain record yields itself with key ''."""
    if not is_aggregated(data):
        yield "", data
        return
    body = data[4:-16]
    keys: list[str] = []
    records: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(body):
        tag, pos = _read_varint(body, pos)
        length, pos = _read_varint(body, pos)
        chunk = body[pos:pos + length]
        pos += length
        if tag == 0x0A:
            keys.append(chunk.decode())
        elif tag == 0x1A:
            records.append(_parse_record(chunk))
    for key_index, record_data in records:
        yield keys[key_index] if key_index < len(keys) else "", record_data


def _parse_record(buf: bytes) -> tuple[int, bytes]:
    pos, key_index, data = 0, 0, b""
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        wire = tag & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            if tag >> 3 == 1:
                key_index = value
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            if tag >> 3 == 3:
                data = buf[pos:pos + length]
            pos += length
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
    return key_index, data
