"""Writer configuration and its defaults, kept together as named constants."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = [
    "DEFAULT_FSYNC_INTERVAL_SECONDS",
    "DEFAULT_MAX_SPOOL_BYTES",
    "DEFAULT_MIN_FREE_BYTES",
    "DEFAULT_SEGMENT_AGE_SECONDS",
    "DEFAULT_SEGMENT_BYTES",
    "FsyncPolicy",
    "WriterConfig",
]

DEFAULT_SEGMENT_BYTES = 16 * 1024**2
DEFAULT_SEGMENT_AGE_SECONDS = 60.0
DEFAULT_MAX_SPOOL_BYTES = 1024**3
DEFAULT_MIN_FREE_BYTES = 256 * 1024**2
DEFAULT_FSYNC_INTERVAL_SECONDS = 1.0
# How often the writer re-measures the spool (all writers' segments) and the disk.
CAPACITY_SCAN_INTERVAL_SECONDS = 0.25
# While refusing, an append may re-measure at most this often to notice freed space at once.
CAPACITY_RECHECK_SECONDS = 0.05
# How often a writer looks for hidden `.creating-…` files left by dead writers.
STALE_SCAN_INTERVAL_SECONDS = 60.0
# While a write error keeps readiness off, a writer tries this often whether the disk recovered.
RECOVERY_PROBE_SECONDS = 1.0
# What a refused client is told to wait before trying again.
RETRY_AFTER_SECONDS = 1.0
# Readiness turns off this close to the cap (1% of it, at least 64 KiB, at most a quarter),
# so that every writer of a spool agrees and a load balancer moves traffic before appends fail.
READY_HEADROOM_FRACTION = 0.01
READY_HEADROOM_MIN_BYTES = 64 * 1024


class FsyncPolicy(StrEnum):
    """When appended bytes are forced to the disk (see docs/spool-format.md)."""

    NEVER = "never"
    INTERVAL = "interval"
    ALWAYS = "always"


@dataclass(frozen=True)
class WriterConfig:
    """Everything a :class:`~spooler.writer.SpoolWriter` needs; built once by the CLI."""

    spool_dir: Path
    writer_id: str
    segment_bytes: int = DEFAULT_SEGMENT_BYTES
    segment_age_seconds: float = DEFAULT_SEGMENT_AGE_SECONDS
    max_spool_bytes: int = DEFAULT_MAX_SPOOL_BYTES
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    fsync: FsyncPolicy = FsyncPolicy.INTERVAL
    fsync_interval_seconds: float = DEFAULT_FSYNC_INTERVAL_SECONDS

    def __post_init__(self) -> None:
        if self.segment_bytes <= 0:
            raise ValueError("segment_bytes must be positive")
        if self.segment_age_seconds <= 0:
            raise ValueError("segment_age_seconds must be positive")
        if self.fsync_interval_seconds <= 0:
            raise ValueError("fsync_interval_seconds must be positive")
        object.__setattr__(self, "spool_dir", Path(self.spool_dir))
        object.__setattr__(self, "fsync", FsyncPolicy(self.fsync))
