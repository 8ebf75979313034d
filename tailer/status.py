"""`spoolship status`: what is in a spool and how far behind the tailer is, without touching it.

Reads the checkpoint without taking its lock and probes writer locks the way the
tailer does; it never seals, ships or deletes anything. An offset counts as
shipped only for the file it was saved for: a segment whose inode is not the
checkpoint's (replaced under the tailer, or a copy restored) shows as unshipped,
as the tailer ships it from its first byte (or adopts a restored copy whose
hashes match: then status over-counts the backlog until the next checkpoint).
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from spooler import (
    CHECKPOINT_FILE,
    SegmentState,
    count_dead_letters,
    list_segments,
)
from spooler.checkpoint import LOCK_FILE, read_checkpoint_identities

from .identity import head_digest

__all__ = ["SpoolStatus", "read_status"]


@dataclass
class SegmentStatus:
    segment: str
    state: str
    bytes: int
    shipped_bytes: int
    age_seconds: float


@dataclass
class SpoolStatus:
    spool_dir: str
    segments: list[SegmentStatus] = field(default_factory=list)
    bytes_total: int = 0
    bytes_behind: int = 0
    oldest_unshipped_age_seconds: float | None = None
    writers_alive: int = 0
    writers_orphaned: int = 0
    dead_letters: int = 0
    tailer_running: bool = False
    checkpoint_updated_age_seconds: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _tailer_running(spool_dir: Path) -> bool:
    try:
        fd = os.open(spool_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _is_the_file_saved(segment, identity: dict | None) -> bool:
    """The checkpoint's identity (if any) still describes the file: its inode and the hash of its first
    bytes (a file rewritten in place keeps its inode)."""
    if not identity:
        return True
    if segment.ino and identity["ino"] != segment.ino:
        return False
    if not identity["head_bytes"]:
        return True
    try:
        with open(segment.path, "rb") as f:
            head = f.read(identity["head_bytes"])
    except OSError:
        return True  # gone or unreadable: the tailer will tell; status only reports
    return head_digest(head) == identity["head"]


def read_status(spool_dir: Path) -> SpoolStatus:
    spool_dir = Path(spool_dir)
    offsets, identities = read_checkpoint_identities(spool_dir)
    now = time.time()
    status = SpoolStatus(spool_dir=str(spool_dir))
    alive, orphaned = set(), set()
    for segment in list_segments(spool_dir):
        shipped = min(offsets.get(segment.segment_id, 0), segment.size)
        if not _is_the_file_saved(segment, identities.get(segment.segment_id)):
            shipped = 0  # another file under the name, or rewritten: the offset was the old one's
        age = max(0.0, now - segment.mtime)
        status.segments.append(SegmentStatus(segment.segment_id, segment.state.value, segment.size, shipped,
                                             round(age, 1)))
        status.bytes_total += segment.size
        status.bytes_behind += segment.size - shipped
        if segment.size > shipped:
            current = status.oldest_unshipped_age_seconds or 0.0
            status.oldest_unshipped_age_seconds = round(max(current, age), 1)
        if segment.state is SegmentState.ACTIVE:
            alive.add(segment.name.writer)
        elif segment.state is SegmentState.ORPHANED:
            orphaned.add(segment.name.writer)
    status.writers_alive = len(alive)
    status.writers_orphaned = len(orphaned)
    status.dead_letters = count_dead_letters(spool_dir)
    status.tailer_running = _tailer_running(spool_dir)
    checkpoint = spool_dir / CHECKPOINT_FILE
    if checkpoint.exists():
        status.checkpoint_updated_age_seconds = round(now - checkpoint.stat().st_mtime, 1)
    return status
