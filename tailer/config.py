"""Tailer configuration: built once by the CLI, passed down frozen."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .packing import MAX_BATCH_BYTES, MAX_RECORD_BYTES
from .partition import parse_partition_key

__all__ = ["TailerConfig", "check_stream_name"]

DEFAULT_CONCURRENCY = 4
DEFAULT_LINGER_SECONDS = 0.25
DEFAULT_POLL_INTERVAL_SECONDS = 2.0
DEFAULT_CHECKPOINT_INTERVAL_SECONDS = 1.0
DEFAULT_DRAIN_TIMEOUT_SECONDS = 60.0
DEFAULT_MAX_BACKOFF_SECONDS = 10.0
# How often a call the stream refuses for good (missing, denied, a proxy's 404) is tried again.
DEFAULT_PERMANENT_RETRY_SECONDS = 30.0
# The KPL's default: small enough to spread over shards, big enough for ~250 lines of 200 bytes.
DEFAULT_AGGREGATE_MAX_BYTES = 51_200
DEFAULT_READ_BYTES = 2 * 1024 * 1024
# A shard takes 1 MiB/s; bigger calls only cost memory while in flight.
DEFAULT_MAX_BATCH_BYTES = 1024 * 1024


@dataclass(frozen=True)
class TailerConfig:
    spool_dir: Path
    stream: str
    endpoint_url: str | None = None
    region: str | None = None
    aggregate: bool = False
    aggregate_max_bytes: int = DEFAULT_AGGREGATE_MAX_BYTES
    partition_key: str = "random"
    concurrency: int = DEFAULT_CONCURRENCY
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    linger_seconds: float = DEFAULT_LINGER_SECONDS
    poll_interval_seconds: float = DEFAULT_POLL_INTERVAL_SECONDS
    polling: bool = False
    checkpoint_interval_seconds: float = DEFAULT_CHECKPOINT_INTERVAL_SECONDS
    archive_dir: Path | None = None
    archive_max_bytes: int | None = None
    archive_max_age_seconds: float | None = None
    archive_gzip: bool = True
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    drain_timeout_seconds: float = DEFAULT_DRAIN_TIMEOUT_SECONDS
    max_backoff_seconds: float = DEFAULT_MAX_BACKOFF_SECONDS
    permanent_retry_seconds: float = DEFAULT_PERMANENT_RETRY_SECONDS
    # Exit 0 once every segment is sealed, shipped, checkpointed and deleted (the scale-down rescue).
    exit_when_empty: bool = False
    read_bytes: int = DEFAULT_READ_BYTES

    def __post_init__(self) -> None:
        check_stream_name(self.stream)
        object.__setattr__(self, "spool_dir", Path(self.spool_dir))
        if self.archive_dir is not None:
            object.__setattr__(self, "archive_dir", Path(self.archive_dir))
        parse_partition_key(self.partition_key)
        if self.concurrency < 1:
            raise ValueError("--concurrency must be at least 1")
        if not 1024 <= self.aggregate_max_bytes <= MAX_RECORD_BYTES - 256:
            raise ValueError(f"--aggregate-max-bytes must be between 1024 and {MAX_RECORD_BYTES - 256}")
        if not MAX_RECORD_BYTES <= self.max_batch_bytes <= MAX_BATCH_BYTES:
            raise ValueError(f"--max-batch-bytes must be between {MAX_RECORD_BYTES} and {MAX_BATCH_BYTES}")
        if self.read_bytes <= MAX_RECORD_BYTES:
            raise ValueError("read_bytes must exceed the 1 MiB record limit")
        if self.permanent_retry_seconds <= 0 or self.max_backoff_seconds <= 0:
            raise ValueError("--permanent-retry and --max-backoff must be positive")
        if self.archive_dir is not None and self.archive_max_bytes is None and self.archive_is_in_spool():
            # It counts toward the receivers' --max-spool-bytes: unbounded, it would end by filling the
            # cap with archives and refusing every event.
            raise ValueError(f"--archive-dir {self.archive_dir} is inside the spool: it counts toward "
                             "--max-spool-bytes, so it needs --archive-max-bytes (well under that cap)")

    def archive_is_in_spool(self) -> bool:
        if self.archive_dir is None:
            return False
        spool, archive = self.spool_dir.resolve(), self.archive_dir.resolve()
        return archive == spool or spool in archive.parents


_STREAM_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,128}")


def check_stream_name(name: str) -> str:
    """Kinesis's own rule for stream names; refused at start-up rather than by every call."""
    if not _STREAM_NAME.fullmatch(name):
        raise ValueError(f"--stream {name!r} is not a Kinesis stream name: 1 to 128 characters "
                         "from a-z, A-Z, 0-9, '_', '.' and '-'")
    return name
