"""Receiver configuration: built once by the CLI, passed down frozen."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spooler import FsyncPolicy
from spooler.config import (
    DEFAULT_FSYNC_INTERVAL_SECONDS,
    DEFAULT_MAX_SPOOL_BYTES,
    DEFAULT_MIN_FREE_BYTES,
    DEFAULT_SEGMENT_AGE_SECONDS,
    DEFAULT_SEGMENT_BYTES,
)

__all__ = ["ReceiverConfig"]

DEFAULT_PORT = 8080
DEFAULT_THREADS = 8
DEFAULT_MAX_BODY_BYTES = 5 * 1024**2
DEFAULT_MAX_INFLATED_BYTES = 10 * 1024**2
# Kinesis takes 1 MiB per record including the partition key; leave room for stamps and key.
DEFAULT_MAX_EVENT_BYTES = 1_000_000
DEFAULT_MAX_EVENTS = 10_000
DEFAULT_MAX_DEPTH = 32
DEFAULT_SHUTDOWN_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class ReceiverConfig:
    spool_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    threads: int = DEFAULT_THREADS
    schema_file: Path | None = None
    api_key_file: Path | None = None
    cors_origins: tuple[str, ...] = ()
    stamp: bool = True
    id_field: str = "_id"
    received_at_field: str = "_received_at"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_events: int = DEFAULT_MAX_EVENTS
    max_depth: int = DEFAULT_MAX_DEPTH
    segment_bytes: int = DEFAULT_SEGMENT_BYTES
    segment_age_seconds: float = DEFAULT_SEGMENT_AGE_SECONDS
    max_spool_bytes: int = DEFAULT_MAX_SPOOL_BYTES
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    fsync: FsyncPolicy = FsyncPolicy.INTERVAL
    fsync_interval_seconds: float = DEFAULT_FSYNC_INTERVAL_SECONDS
    # After SIGTERM: keep serving (unready) this long so load balancers notice, then drain.
    shutdown_delay_seconds: float = 0.0
    shutdown_timeout_seconds: float = DEFAULT_SHUTDOWN_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "spool_dir", Path(self.spool_dir))
        object.__setattr__(self, "fsync", FsyncPolicy(self.fsync))
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        if self.workers < 1 or self.threads < 1:
            raise ValueError("workers and threads must be at least 1")
        if self.stamp and self.id_field == self.received_at_field:
            raise ValueError("id and received-at fields must differ")
