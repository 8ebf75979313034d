"""Proving a PutRecords answer all-stored from its bytes, without making an object per entry.

Nearly every answer of a healthy stream says that every record is stored. Reading one
through orjson makes 500 dicts and 1,000 strings a call only to learn that each entry
holds a SequenceNumber of digits and a ShardId; in the running tailer that was the
delivery threads' largest single cost (an experiment that skipped the reading altogether
spent 17 % less CPU on the file: docs/performance.md, round five). :func:`stored_count`
proves the same thing in a few passes over the bytes (``translate``, ``count``,
``startswith``, one comparison) for an answer in the compact shape Kinesis and kinesalite
write — either order of an entry's two keys, with or without ``EncryptionType`` — and
says nothing about any other answer (an error, whitespace, another shape, a flaw
anywhere), which :class:`tailer.kinesis.KinesisSink` then reads as before: orjson, and
entry by entry when needed. tests/unit/test_put_records_answer.py holds the two readings
to the same result under hypothesis, for answers built as JSON and for their bytes
mutated one at a time.

Why the passes prove it. Write ``skel(x)`` for ``x`` with its ASCII digits deleted. The
canonical answer of ``n`` entries is a row of digit-free *connectors* — the head, the
first entry's opening, then for each entry the part between its two values (``mid``) and
between two entries (``sep``), then the tail — with digits allowed only in the gaps
between them: the FailedRecordCount, each SequenceNumber, and each ShardId after its
``shardId-``. So ``skel`` of a canonical answer is a fixed template, and an answer is
canonical if (1) it starts with the head and the first opening, with the count ``0`` between
them, and ends with the tail; (2) ``skel(answer)`` is the template; and (3) ``mid`` occurs
in it ``n`` times and ``sep`` ``n - 1`` times (non-overlapping counts). (3) is what rules
out a digit put inside a connector (``"Shard4Id"``, ``"12"5,``): an occurrence of a
digit-free string in the answer is one in ``skel`` of it too, distinct ones stay
distinct, and in the template ``mid`` and ``sep`` occur exactly ``n`` and ``n - 1`` times
(:func:`check_connectors` shows it), so equal counts mean every connector is whole and
whatever lies between two of them is digits only. Then each entry is
``{"SequenceNumber":"<digits>","ShardId":"shardId-<digits>"}`` (or the other order): a
stored record once the SequenceNumber is 1 to 128 digits — no ``"SequenceNumber":""``,
and no run of 129 digits anywhere (the gaps are separated by connectors).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import orjson

from .kinesis_errors import MAX_SEQUENCE_DIGITS
from .speedups import compiled

__all__ = ["StoredShards", "check_connectors", "proven_stored", "stored_count"]

_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_TOO_LONG = b"0" * (MAX_SEQUENCE_DIGITS + 1)
_EMPTY_SEQUENCE = b'"SequenceNumber":""'
_COUNT_GAP = b"0"  # the only FailedRecordCount proven here

# The digit-free text around the FailedRecordCount, as (before it, after it up to the first entry).
_HEADS = tuple((before, b',"Records":[') for before in (
    b'{"FailedRecordCount":',
    b'{"EncryptionType":"KMS","FailedRecordCount":',
    b'{"EncryptionType":"NONE","FailedRecordCount":',
))
# An entry's two orders as (first entry's opening, between its two values, between two entries):
# AWS's documented order, and kinesalite's.
_ORDERS = (
    (b'{"SequenceNumber":"', b'","ShardId":"shardId-', b'"},{"SequenceNumber":"'),
    (b'{"ShardId":"shardId-', b'","SequenceNumber":"', b'"},{"ShardId":"shardId-'),
)
_TAILS = (b'"}]}', b'"}],"EncryptionType":"KMS"}', b'"}],"EncryptionType":"NONE"}')


def _template(head: tuple[bytes, bytes], order: tuple[bytes, bytes, bytes], tail: bytes, n: int) -> bytes:
    """``skel`` of every canonical answer of ``n`` entries in this shape (n >= 1)."""
    first, mid, sep = order
    return b"".join((head[0], head[1], first, (mid + sep) * (n - 1), mid, tail))


def stored_count(content: bytes, n: int) -> bool:
    """True if ``content`` is, byte for byte, an answer of ``n`` entries that are all stored records
    (see the module docstring); False says nothing: read the answer another way. The template is
    built only for an answer at least as long as it, so a huge ``n`` costs nothing."""
    if n < 1:
        return False
    for head in _HEADS:
        if content.startswith(head[0]):
            break
    else:
        return False
    after_count = len(head[0]) + len(_COUNT_GAP)
    if not content.startswith(_COUNT_GAP + head[1], len(head[0])):
        return False
    for order in _ORDERS:
        if content.startswith(order[0], after_count + len(head[1])):
            break
    else:
        return False
    for tail in _TAILS:
        if content.endswith(tail):
            break
    else:
        return False
    first, mid, sep = order
    # Not shorter than the template plus the count and a digit a SequenceNumber (so a huge n builds nothing).
    if len(content) < len(head[0]) + len(head[1]) + len(first) + (len(mid) + len(sep)) * (n - 1) + len(mid) \
            + len(tail) + 1 + n:
        return False
    return (content.translate(None, b"0123456789") == _template(head, order, tail, n)
            and content.count(mid) == n and content.count(sep) == n - 1
            and _EMPTY_SEQUENCE not in content
            and _TOO_LONG not in content.translate(_TO_ZERO))


# What KinesisSink reads answers with: the same proof in one C pass (tailer/_speedups.c) where it is built.
proven_stored = compiled.stored_answer if compiled is not None else stored_count


class StoredShards(Sequence):
    """The ShardId of each entry of an answer :func:`stored_count` proved, read only if asked for
    (the placement check of per-shard aggregates asks; plain records never do)."""

    __slots__ = ("_content", "_count", "_shards")

    def __init__(self, content: bytes, count: int) -> None:
        self._content = content
        self._count = count
        self._shards: list[str] | None = None

    def _read(self) -> list[str]:
        if self._shards is None:
            self._shards = [entry["ShardId"] for entry in orjson.loads(self._content)["Records"]]
        return self._shards

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        return self._read()[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StoredShards | list):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"StoredShards({self._read()!r})"


def check_connectors(n: int = 5) -> None:
    """Raise AssertionError unless, in every template of ``n`` entries, ``mid`` and ``sep`` occur exactly
    where the connectors put them (counting overlapping occurrences too): what the proof above rests on.
    A window as long as ``mid`` or ``sep`` touches at most three neighbouring connectors (no two
    neighbours in the middle are shorter together than either); one and two entries make runs of
    three of their own, and from three entries on every run of three is in the template, more
    entries only repeat them (tests/unit/test_put_records_answer.py runs n = 1 to 5; a hostile review
    ran every n up to 40, and 100, 499 to 501 and 1,000)."""
    for head in _HEADS:
        for order in _ORDERS:
            for tail in _TAILS:
                template = _template(head, order, tail, n)
                for connector, expected in ((order[1], n), (order[2], n - 1)):
                    found = sum(1 for i in range(len(template)) if template.startswith(connector, i))
                    assert found == expected, (template, connector, found)
                for part in (*head, *order, tail):
                    assert not any(chr(b).isdigit() for b in part), part
