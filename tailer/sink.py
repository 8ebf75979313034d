"""What the tailer ships through: a small Sink protocol (Litestream's ReplicaClient idea).

``KinesisSink`` implements it for real; unit tests use an in-memory sink. A sink
raises a :mod:`tailer.errors` ShipError for a failed call and reports records
that failed one by one in :class:`PutResult`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["PutResult", "Record", "Sink"]

# (data, partition key, explicit hash key or None): a tuple, because the hot path makes millions.
Record = tuple[bytes, str, "str | None"]


@dataclass
class PutResult:
    """Indexes (into the records sent) that failed, with their error code and message."""

    failed: list[tuple[int, str, str]] = field(default_factory=list)


class Sink(Protocol):
    def put_records(self, records: Sequence[Record]) -> PutResult:
        """Send up to 500 records in one call; raise ShipError if the whole call failed."""
        ...

    def close(self) -> None: ...
