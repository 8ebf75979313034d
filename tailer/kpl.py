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
from collections.abc import Iterator
from itertools import chain

__all__ = ["KPL_MAGIC", "Aggregate", "deaggregate", "headers_for", "is_aggregated"]

KPL_MAGIC = b"\xf3\x89\x9a\xc2"
_DIGEST_BYTES = 16
_OVERHEAD = len(KPL_MAGIC) + _DIGEST_BYTES


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

    def extend_encoded(self, headers: list[bytes], lines: list[bytes], grow: int) -> None:
        """Append lines whose record headers (for key index 0) were built in bulk by ``headers_for``."""
        self._parts.extend(chain.from_iterable(zip(headers, lines, strict=True)))
        self.size += grow
        self.count += len(lines)

    def to_bytes(self) -> bytes:
        """Magic, protobuf, digest: the protobuf is copied twice (joined, then framed), not four times."""
        body = b"".join(chain(self._key_parts, self._parts))
        return b"".join((KPL_MAGIC, body, hashlib.md5(body, usedforsecurity=False).digest()))


def _first_key_header(n: int) -> bytes:
    inner = b"\x08\x00\x1a" + varint(n)
    return b"\x1a" + varint(len(inner) + n) + inner


class _HeaderCache(dict):
    """Line length -> its header under key index 0, made on first use (lengths repeat)."""

    def __missing__(self, n: int) -> bytes:
        header = self[n] = _first_key_header(n)
        return header


_FIRST_KEY_HEADERS = _HeaderCache()


def headers_for(lengths: list[int]) -> list[bytes]:
    """The protobuf headers in front of lines of these lengths, under key index 0 (one C loop)."""
    return list(map(_FIRST_KEY_HEADERS.__getitem__, lengths))


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
