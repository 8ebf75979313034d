"""What the tailer ships through: a small Sink protocol (Litestream's ReplicaClient idea).

``KinesisSink`` implements it for Kinesis data streams; a Firehose sink can
implement it the same way; unit tests use an in-memory sink. The protocol is
service-agnostic: the sink maps its service's answers and its client's
exceptions to :mod:`tailer.errors` (in one place), and
:class:`tailer.delivery.Delivery` owns the policy — what is retried, how fast,
and what is dead-lettered.
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
    """The answer to a call that went through, record by record.

    - ``failed``: (index, code, message) of records to send again (throttled,
      internal failure, anything not known to be the record's fault);
    - ``rejected``: records the service itself named as invalid: dead-lettered;
    - ``placed``: where each record sent landed (for Kinesis, its ShardId; ``None``
      for a record that failed), when the service says so — used to check that
      aggregated records landed on the shard that owns their keys.
    """

    failed: list[tuple[int, str, str]] = field(default_factory=list)
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    placed: Sequence[str | None] | None = None


class Sink(Protocol):
    def put_records(self, records: Sequence[Record]) -> PutResult:
        """Send up to 500 records in one call.

        Raises only :class:`tailer.errors.ShipError` subclasses: every exception
        of the client underneath is translated by the sink.
        """
        ...

    def close(self) -> None: ...
