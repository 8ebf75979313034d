"""Tailer configuration: built once by the CLI, passed down frozen."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from spooler.fsutil import where_is

from .credentials import DEFAULT_SESSION_NAME, RoleSettings
from .deadline import DEFAULT_CALL_DEADLINE_SECONDS
from .firehose_packing import FIREHOSE_MAX_BATCH_BYTES, FIREHOSE_MAX_RECORD_BYTES
from .packing import MAX_BATCH_BYTES, MAX_RECORD_BYTES
from .partition import parse_partition_key

__all__ = ["DESTINATION_KINDS", "TailerConfig", "check_delivery_stream_name", "check_stream_name"]

# What a route's spool is shipped to: a Kinesis data stream, or a Firehose delivery stream.
KINESIS = "kinesis"
FIREHOSE = "firehose"
DESTINATION_KINDS = (KINESIS, FIREHOSE)

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
# A sealed segment that is empty or ends without a newline may still be copied in: taken as it is only
# once its file has not changed for this long (tailer/identity.py).
DEFAULT_QUIET_SECONDS = 5.0
# A sealed segment no spool writer was seen writing (copied in under its final name) is deleted only once
# its mtime and ctime are this old and no process holds it open for writing (tailer/identity.py): a producer
# that pauses at a line end must not have its next lines go into an unlinked inode.
DEFAULT_COPY_IN_GRACE_SECONDS = 30.0
# A shard takes 1 MiB/s; bigger calls only cost memory while in flight.
DEFAULT_MAX_BATCH_BYTES = 1024 * 1024


@dataclass(frozen=True)
class TailerConfig:
    """One shipping loop: a spool (a route's) and its destination. ``stream`` names the Kinesis
    stream, or with ``destination="firehose"`` the delivery stream."""

    spool_dir: Path
    stream: str
    destination: str = KINESIS
    route: str = "default"  # the metrics' and logs' label for this loop
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
    quiet_seconds: float = DEFAULT_QUIET_SECONDS
    copy_in_grace_seconds: float = DEFAULT_COPY_IN_GRACE_SECONDS
    # Longest a PutRecords / PutRecordBatch call may take, answer included (tailer/deadline.py).
    call_deadline_seconds: float = DEFAULT_CALL_DEADLINE_SECONDS
    # Sign with this role's credentials (AssumeRole, refreshed; tailer/credentials.py).
    role_arn: str | None = None
    external_id: str | None = None
    role_session_name: str = DEFAULT_SESSION_NAME
    sts_endpoint_url: str | None = None
    # Firehose: lines packed per record up to this size (Firehose bills each record rounded up to 5 KB).
    firehose_record_bytes: int = FIREHOSE_MAX_RECORD_BYTES

    def __post_init__(self) -> None:
        if self.destination not in DESTINATION_KINDS:
            raise ValueError(f"destination {self.destination!r}: one of {', '.join(DESTINATION_KINDS)}")
        if self.destination == FIREHOSE:
            check_delivery_stream_name(self.stream)
            self._check_firehose()
        else:
            check_stream_name(self.stream)
        self.role  # noqa: B018 (validates the role settings)
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
        if self.permanent_retry_seconds <= 0 or self.max_backoff_seconds <= 0 or self.call_deadline_seconds <= 0:
            raise ValueError("--permanent-retry, --max-backoff and --call-deadline must be positive")
        if self.archive_dir is not None and where_is(self.archive_dir, self.spool_dir) == "same":
            # Pruning would take the spool's own sealed segments for archives, unshipped ones included (a
            # hostile review lost 4,500 of 7,750 acknowledged events this way), and without gzip an archived
            # segment's final path is the segment itself.
            raise ValueError(f"--archive-dir {self.archive_dir} is the spool itself: give the archive a "
                             f"directory of its own (e.g. {self.spool_dir / 'archive'})")
        if self.archive_dir is not None and self.archive_max_bytes is None and self.archive_is_in_spool():
            # It counts toward the receivers' --max-spool-bytes: unbounded, it would end by filling the
            # cap with archives and refusing every event.
            raise ValueError(f"--archive-dir {self.archive_dir} is inside the spool: it counts toward "
                             "--max-spool-bytes, so it needs --archive-max-bytes (well under that cap)")

    def archive_is_in_spool(self) -> bool:
        return self.archive_dir is not None and where_is(self.archive_dir, self.spool_dir) is not None

    def _check_firehose(self) -> None:
        if self.aggregate or self.partition_key != "random":
            raise ValueError("Firehose has no partition keys and takes no KPL aggregates: lines are packed "
                             "many to a record instead (leave --aggregate and --partition-key unset)")
        if not 1024 <= self.firehose_record_bytes <= FIREHOSE_MAX_RECORD_BYTES:
            raise ValueError(f"Firehose record bytes must be between 1024 and {FIREHOSE_MAX_RECORD_BYTES}")
        if self.max_batch_bytes > FIREHOSE_MAX_BATCH_BYTES:
            raise ValueError(f"--max-batch-bytes {self.max_batch_bytes} is over Firehose's "
                             f"{FIREHOSE_MAX_BATCH_BYTES} per PutRecordBatch call")

    @property
    def role(self) -> RoleSettings | None:
        if self.role_arn is None:
            if self.external_id is not None or self.sts_endpoint_url is not None:
                raise ValueError("--external-id and --sts-endpoint-url need --role-arn")
            return None
        return RoleSettings(self.role_arn, self.external_id, self.role_session_name, self.sts_endpoint_url)


_STREAM_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,128}")


def check_stream_name(name: str) -> str:
    """Kinesis's own rule for stream names; refused at start-up rather than by every call."""
    if not _STREAM_NAME.fullmatch(name):
        raise ValueError(f"--stream {name!r} is not a Kinesis stream name: 1 to 128 characters "
                         "from a-z, A-Z, 0-9, '_', '.' and '-'")
    return name


def check_delivery_stream_name(name: str) -> str:
    """Firehose's rule for delivery stream names (1 to 64 of the same characters)."""
    if not _STREAM_NAME.fullmatch(name) or len(name) > 64:
        raise ValueError(f"--delivery-stream {name!r} is not a Firehose delivery stream name: 1 to 64 "
                         "characters from a-z, A-Z, 0-9, '_', '.' and '-'")
    return name
