"""How full the spool is: every byte kept under the spool directory, and free disk.

What counts toward ``--max-spool-bytes``: the segments (every writer's), and
every file in the spool's subdirectories — ``dead-letter/`` and an archive
kept inside the spool. A spool whose dead letters or archive grow without
bound must still be refused before the disk fills up.

A writer cannot afford a directory scan per append, so :class:`CapacityGuard`
keeps the last scan plus the bytes this writer appended since. Segments are
measured on every scan; the subdirectories (which only the tailer writes, and
slowly) at most every ``SUBDIR_SCAN_INTERVAL_SECONDS``. Several writers (one per
receiver worker) each scan; together they can overshoot the cap by at most what
they append within one scan interval — the cap stays a hard bound on disk use,
and appends resume as soon as a scan sees space freed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from .naming import parse_segment_name

__all__ = ["CapacityGuard", "SpoolUsage", "measure_usage"]

# The tailer adds dead letters and archives far more slowly than writers append.
SUBDIR_SCAN_INTERVAL_SECONDS = 2.0


@dataclass(frozen=True)
class SpoolUsage:
    """One measurement of the spool directory and its file system."""

    segment_bytes: int
    other_bytes: int  # files in subdirectories: dead letters, an archive inside the spool
    free_bytes: int

    @property
    def spool_bytes(self) -> int:
        return self.segment_bytes + self.other_bytes


def _tree_bytes(path: str) -> int:
    """Bytes of every regular file under ``path`` (symlinks not followed, unreadable parts skipped)."""
    total = 0
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        total += _tree_bytes(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue  # removed while we looked
    except (FileNotFoundError, PermissionError):
        return total
    return total


def measure_usage(spool_dir: Path, *, other_bytes: int | None = None) -> SpoolUsage:
    """Sum the segments and the subdirectories' files; read the disk's free space.

    With ``other_bytes`` (a recent count of the subdirectories) only the segments are scanned.
    """
    segments = 0
    others = 0
    with os.scandir(spool_dir) as entries:
        for entry in entries:
            try:
                if parse_segment_name(entry.name) is not None:
                    segments += entry.stat().st_size
                elif other_bytes is None and entry.is_dir(follow_symlinks=False):
                    others += _tree_bytes(entry.path)
            except FileNotFoundError:
                continue  # shipped and deleted while we looked
    stats = os.statvfs(spool_dir)
    return SpoolUsage(segment_bytes=segments, other_bytes=others if other_bytes is None else other_bytes,
                      free_bytes=stats.f_bavail * stats.f_frsize)


class CapacityGuard:
    """Decides whether an append of ``n`` bytes fits. Not thread-safe: the writer locks."""

    def __init__(self, spool_dir: Path, max_spool_bytes: int, min_free_bytes: int) -> None:
        self._spool_dir = spool_dir
        self.max_spool_bytes = max_spool_bytes
        self.min_free_bytes = min_free_bytes
        self._usage = measure_usage(spool_dir)
        self._scanned_at = self._subdirs_scanned_at = time.monotonic()
        self._appended_since_scan = 0

    @property
    def spool_bytes(self) -> int:
        return self._usage.spool_bytes + self._appended_since_scan

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

    def measure(self) -> SpoolUsage:
        """A fresh measurement (the subdirectories only when their count is stale). No lock needed."""
        now = time.monotonic()
        if now - self._subdirs_scanned_at >= SUBDIR_SCAN_INTERVAL_SECONDS:
            usage = measure_usage(self._spool_dir)
            self._subdirs_scanned_at = now
            return usage
        return measure_usage(self._spool_dir, other_bytes=self._usage.other_bytes)

    def update(self, usage: SpoolUsage, appended_during_scan: int) -> None:
        """Take a fresh scan; appends made while it ran may be counted twice (safe side)."""
        self._usage = usage
        self._appended_since_scan = appended_during_scan
        self._scanned_at = time.monotonic()

    def rescan(self) -> None:
        self.update(self.measure(), 0)
