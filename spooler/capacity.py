"""How full the spool is: every byte kept under the spool directory, and free disk.

What counts toward ``--max-spool-bytes``: the segments (every writer's), and
every file in the spool's subdirectories — ``dead-letter/`` and an archive
kept inside the spool. A spool whose dead letters or archive grow without
bound must still be refused before the disk fills up.

A writer cannot afford a directory scan per append, so :class:`CapacityGuard`
keeps the last scan plus the bytes this writer appended since. Each scan lists
the segments first, then counts the subdirectories with
:class:`~spooler.tree_usage.TreeUsage` (one ``stat`` per directory when nothing
changed there, so 200,000 dead letters cost nothing while they sit still). A
subdirectory that changed is read again at most every
``SUBDIR_REREAD_SECONDS`` — except when a segment left the spool since the
last scan: then at once, so that bytes the tailer moved from a segment into an
archive inside the spool are counted by the same scan that stops counting the
segment (the segments are listed first: a move between the two readings is
counted twice, never not at all). The append path's re-measurement (while
refusing) never reads a subdirectory again: when that is needed, it leaves the
refusal to the next background scan. Several writers (one per receiver worker)
each scan; together they can overshoot the cap by at most what they append
within one scan interval, plus the dead letters the tailer writes within
``SUBDIR_REREAD_SECONDS`` — the cap stays a hard bound on disk use, and appends
resume as soon as a scan sees space freed.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .naming import parse_segment_name
from .tree_usage import TreeUsage

__all__ = ["CapacityGuard", "SpoolUsage", "measure_usage"]

# The tailer adds dead letters far more slowly than writers append; a busy subdirectory is read
# again (one readdir of all its entries) at most this often, unless a segment left the spool.
SUBDIR_REREAD_SECONDS = 2.0


@dataclass(frozen=True)
class SpoolUsage:
    """One measurement of the spool directory and its file system."""

    segment_bytes: int
    other_bytes: int  # files in subdirectories: dead letters, an archive inside the spool
    free_bytes: int

    @property
    def spool_bytes(self) -> int:
        return self.segment_bytes + self.other_bytes


def _scan_top(spool_dir: Path) -> tuple[int, set[str], list[str]]:
    """The segments' bytes and ids, and the subdirectories' names."""
    segment_bytes = 0
    segment_ids: set[str] = set()
    subdirs = []
    with os.scandir(spool_dir) as entries:
        for entry in entries:
            try:
                name = parse_segment_name(entry.name)
                if name is not None:
                    segment_bytes += entry.stat().st_size
                    segment_ids.add(name.segment_id)
                elif entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.name)
            except FileNotFoundError:
                continue  # shipped and deleted while we looked
    return segment_bytes, segment_ids, subdirs


def _free_bytes(spool_dir: Path) -> int:
    stats = os.statvfs(spool_dir)
    return stats.f_bavail * stats.f_frsize


def measure_usage(spool_dir: Path) -> SpoolUsage:
    """One full measurement (every file stat'ed), for tools; writers keep a :class:`CapacityGuard`."""
    segment_bytes, _, subdirs = _scan_top(spool_dir)
    others = sum(TreeUsage(Path(spool_dir) / name).measure() for name in subdirs)
    return SpoolUsage(segment_bytes=segment_bytes, other_bytes=others, free_bytes=_free_bytes(spool_dir))


class CapacityGuard:
    """Decides whether an append of ``n`` bytes fits.

    Not thread-safe but for :meth:`measure`: the writer's lock guards the rest; a
    measurement runs without it (it may be slow) and one at a time.
    """

    def __init__(self, spool_dir: Path, max_spool_bytes: int, min_free_bytes: int) -> None:
        self._spool_dir = Path(spool_dir)
        self.max_spool_bytes = max_spool_bytes
        self.min_free_bytes = min_free_bytes
        self._measuring = threading.Lock()
        self._subdirs: dict[str, TreeUsage] = {}
        self._segment_ids: set[str] | None = None
        self._usage = self._measure_locked(quick=False)
        self._scanned_at = time.monotonic()
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
        """A fresh measurement (the housekeeper's, without the writer's lock: it may be slow)."""
        with self._measuring:
            usage = self._measure_locked(quick=False)
        assert usage is not None
        return usage

    def _measure_locked(self, *, quick: bool) -> SpoolUsage | None:
        """``quick``: never read a changed subdirectory again; ``None`` if that would credit bytes
        that may have moved into it (a segment left and a subdirectory changed)."""
        segment_bytes, segment_ids, subdirs = _scan_top(self._spool_dir)
        segment_left = self._segment_ids is not None and not self._segment_ids <= segment_ids
        reread_after = math.inf if quick else 0.0 if segment_left else SUBDIR_REREAD_SECONDS
        counters = {name: self._subdirs.get(name) or TreeUsage(self._spool_dir / name) for name in subdirs}
        others = sum(counter.measure(reread_after_seconds=reread_after) for counter in counters.values())
        if quick and segment_left and any(counter.behind for counter in counters.values()):
            return None
        self._subdirs, self._segment_ids = counters, segment_ids
        return SpoolUsage(segment_bytes=segment_bytes, other_bytes=others, free_bytes=_free_bytes(self._spool_dir))

    def update(self, usage: SpoolUsage, appended_during_scan: int) -> None:
        """Take a fresh scan; appends made while it ran may be counted twice (safe side)."""
        self._usage = usage
        self._appended_since_scan = appended_during_scan
        self._scanned_at = time.monotonic()

    def rescan(self) -> None:
        """The append path's re-measurement, under the writer's lock: never slow. Skipped while the
        housekeeper measures (its result lands soon), and when it would have to read a changed
        subdirectory again (the housekeeper's next scan does, within a scan interval)."""
        if not self._measuring.acquire(blocking=False):
            return
        try:
            usage = self._measure_locked(quick=True)
        finally:
            self._measuring.release()
        if usage is not None:
            self.update(usage, 0)
