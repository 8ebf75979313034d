"""How full the spool is: bytes of all segments (every writer's) and free disk.

A writer cannot afford a directory scan per append, so :class:`CapacityGuard`
keeps the last scan plus the bytes this writer appended since. Several writers
(one per receiver worker) each scan; together they can overshoot the cap by at
most what they append within one scan interval — the cap stays a hard bound
on memory-free disk use, and appends resume as soon as a scan sees space freed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from .naming import parse_segment_name

__all__ = ["CapacityGuard", "SpoolUsage", "measure_usage"]


@dataclass(frozen=True)
class SpoolUsage:
    """One measurement of the spool directory and its file system."""

    segment_bytes: int
    free_bytes: int


def measure_usage(spool_dir: Path) -> SpoolUsage:
    """Sum the sizes of every segment file and read the disk's free space."""
    total = 0
    with os.scandir(spool_dir) as entries:
        for entry in entries:
            if parse_segment_name(entry.name) is None:
                continue
            try:
                total += entry.stat().st_size
            except FileNotFoundError:
                continue  # shipped and deleted while we looked
    stats = os.statvfs(spool_dir)
    return SpoolUsage(segment_bytes=total, free_bytes=stats.f_bavail * stats.f_frsize)


class CapacityGuard:
    """Decides whether an append of ``n`` bytes fits. Not thread-safe: the writer locks."""

    def __init__(self, spool_dir: Path, max_spool_bytes: int, min_free_bytes: int) -> None:
        self._spool_dir = spool_dir
        self.max_spool_bytes = max_spool_bytes
        self.min_free_bytes = min_free_bytes
        self._usage = measure_usage(spool_dir)
        self._scanned_at = time.monotonic()
        self._appended_since_scan = 0

    @property
    def spool_bytes(self) -> int:
        return self._usage.segment_bytes + self._appended_since_scan

    @property
    def free_bytes(self) -> int:
        return self._usage.free_bytes - self._appended_since_scan

    @property
    def scanned_at(self) -> float:
        return self._scanned_at

    def refusal(self, nbytes: int) -> str | None:
        """Why an append of ``nbytes`` must be refused, or ``None`` if it fits."""
        if self.spool_bytes + nbytes > self.max_spool_bytes:
            return f"spool holds {self.spool_bytes} bytes; cap is {self.max_spool_bytes}"
        if self.free_bytes - nbytes < self.min_free_bytes:
            return f"disk has {self.free_bytes} bytes free; floor is {self.min_free_bytes}"
        return None

    def room(self) -> int:
        """Bytes that fit before the cap or the free-disk floor is reached (may be <= 0)."""
        return min(self.max_spool_bytes - self.spool_bytes, self.free_bytes - self.min_free_bytes)

    def record_append(self, nbytes: int) -> None:
        self._appended_since_scan += nbytes

    def update(self, usage: SpoolUsage, appended_during_scan: int) -> None:
        """Take a fresh scan; appends made while it ran may be counted twice (safe side)."""
        self._usage = usage
        self._appended_since_scan = appended_during_scan
        self._scanned_at = time.monotonic()

    def rescan(self) -> None:
        self.update(measure_usage(self._spool_dir), 0)
