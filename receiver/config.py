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
# Above the keep-alive of the proxies in front (ingress-nginx upstream 60 s, AWS ALB 60 s): the
# proxy must be the one to close an idle connection, or it may send a request on a connection
# the receiver is closing, and answer 502 (it does not retry a POST it already sent).
DEFAULT_IDLE_TIMEOUT_SECONDS = 75.0
# Headers within this long of a request's first byte, and the body at >= 1 KiB/s after it (slowloris).
DEFAULT_READ_TIMEOUT_SECONDS = 20.0


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
    idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS
    read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS
    # /healthz, /readyz and /metrics on a listener of their own (None: only on the main port).
    probe_port: int | None = None
    # Honour ?sync=1 / X-Spoolship-Sync (fsync before the 201); off: any client could force fsyncs.
    allow_sync: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "spool_dir", Path(self.spool_dir))
        object.__setattr__(self, "fsync", FsyncPolicy(self.fsync))
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        if self.workers < 1 or self.threads < 1:
            raise ValueError("workers and threads must be at least 1")
        if self.idle_timeout_seconds <= 0 or self.read_timeout_seconds <= 0:
            raise ValueError("--idle-timeout and --read-timeout must be positive")
        if self.probe_port is not None and self.probe_port != 0 and self.probe_port == self.port:
            raise ValueError("--probe-port must differ from --port")
        if self.stamp and self.id_field == self.received_at_field:
            raise ValueError("id and received-at fields must differ")
