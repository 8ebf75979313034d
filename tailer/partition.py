"""Partition keys: ``random`` (default), ``field:<dotted.path>``, or ``hash``.

- ``random`` spreads records evenly over shards: a random start then a counter
  (Kinesis MD5-hashes keys, so consecutive keys land uniformly), cheaper than
  fresh randomness per line.
- ``field:a.b`` keeps per-key ordering: the value at that path in the event
  (strings as they are, other values as compact JSON); events without it (or
  with an empty one) get a random key and are counted. Kinesis limits a key to
  256 *UTF-16 code units* (what AWS calls characters, and what kinesalite
  checks): longer keys are cut to that, never inside a surrogate pair, so
  an emoji counts twice and is never split.
- ``hash`` is deterministic from the line: the same event always goes to the
  same shard, which makes replays and dedupe-by-shard predictable.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import orjson

__all__ = ["MAX_KEY_UNITS", "KeyFunction", "make_key_function", "parse_partition_key", "truncate_key"]

MAX_KEY_UNITS = 256  # UTF-16 code units
_BMP_END = 0xFFFF
KeyFunction = Callable[[bytes], str]


def truncate_key(text: str, max_units: int = MAX_KEY_UNITS) -> str:
    """The longest prefix of ``text`` of at most ``max_units`` UTF-16 code units, whole characters only."""
    if len(text) * 2 <= max_units:  # fast path: even all-astral text fits
        return text
    units = 0
    for i, char in enumerate(text):
        units += 2 if ord(char) > _BMP_END else 1
        if units > max_units:
            return text[:i]
    return text


def parse_partition_key(spec: str) -> tuple[str, tuple[str, ...]]:
    """Validate ``--partition-key``; returns (kind, path)."""
    if spec in ("random", "hash"):
        return spec, ()
    if spec.startswith("field:") and spec[6:] and all(spec[6:].split(".")):
        return "field", tuple(spec[6:].split("."))
    raise ValueError(f"--partition-key must be random, hash or field:<dotted.path>, not {spec!r}")


class RandomKeys:
    """Thread-unsafe by design: one per packer. Keys are ``hex()`` of the counter (``0x…``): ASCII,
    one byte per character, JSON-safe; ``hex`` is the cheapest int-to-text conversion Python has."""

    def __init__(self) -> None:
        self.next = int.from_bytes(os.urandom(6), "big")

    def __call__(self, _line: bytes = b"") -> str:
        value = self.next
        self.next = value + 1
        return hex(value)

    def many(self, count: int) -> list[str]:
        """The next ``count`` keys at once (what ``count`` calls would return), in C loops."""
        start = self.next
        self.next = start + count
        return list(map(hex, range(start, start + count)))


def _hash_key(line: bytes) -> str:
    return hashlib.blake2b(line, digest_size=12).hexdigest()


class FieldKeys:
    def __init__(self, path: tuple[str, ...]) -> None:
        self._path = path
        self._fallback = RandomKeys()
        self.missing = 0

    def __call__(self, line: bytes) -> str:
        try:
            value = orjson.loads(line)
            for part in self._path:
                value = value[part]
        except (orjson.JSONDecodeError, KeyError, TypeError, IndexError):
            self.missing += 1
            return self._fallback()
        if value is None:
            self.missing += 1
            return self._fallback()
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        if not text:
            self.missing += 1
            return self._fallback()
        return truncate_key(text)


def make_key_function(spec: str) -> KeyFunction:
    kind, path = parse_partition_key(spec)
    if kind == "random":
        return RandomKeys()
    if kind == "hash":
        return _hash_key
    return FieldKeys(path)
