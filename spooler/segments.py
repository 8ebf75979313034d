"""Listing the spool's segments and telling live writers from dead ones.

A segment is ``active`` while its writer holds the ``flock`` on it, ``orphaned``
when it is still ``.active`` but nobody holds the lock (its writer died), and
``sealed`` once renamed to ``.ndjson``. Only the tailer seals an orphan, and it
does so while holding the orphan's lock, after checking the name still points
at the file it locked (the writer may have sealed it in between).

A writer creates each segment as a hidden ``.creating-…`` file, locks it, then
renames it into view. One killed in between leaves the hidden file behind (it is
always empty: nothing is appended before the rename); :func:`remove_stale_creating`
removes those that nobody holds and that are older than a grace period.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from .fsutil import fsync_dir
from .naming import CREATING_PREFIX, SegmentName, parse_segment_name

__all__ = ["Segment", "SegmentState", "list_segments", "probe_state", "remove_stale_creating", "seal_orphan"]

log = logging.getLogger(__name__)
# A live writer locks its hidden file microseconds after creating it; this much older and unlocked is dead.
STALE_CREATING_SECONDS = 10.0


class SegmentState(StrEnum):
    ACTIVE = "active"
    ORPHANED = "orphaned"
    SEALED = "sealed"


@dataclass(frozen=True)
class Segment:
    name: SegmentName
    path: Path
    state: SegmentState
    size: int
    mtime: float

    @property
    def segment_id(self) -> str:
        return self.name.segment_id

    @property
    def is_final(self) -> bool:
        """True when the segment can no longer grow (sealed or orphaned)."""
        return self.state is not SegmentState.ACTIVE


def probe_state(path: Path) -> SegmentState | None:
    """Is the writer of this ``.active`` file alive? ``None`` if the file is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return SegmentState.ACTIVE
        # We got the lock: nobody writes it — unless it was just sealed (renamed) and closed.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return None
        return SegmentState.ORPHANED if same else None
    finally:
        os.close(fd)


def list_segments(spool_dir: Path, *, probe: bool = True) -> list[Segment]:
    """Every segment in write order per writer. ``probe=False`` skips liveness checks."""
    found: dict[str, Segment] = {}
    with os.scandir(spool_dir) as entries:
        for entry in entries:
            name = parse_segment_name(entry.name)
            if name is None:
                continue
            path = Path(entry.path)
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            if name.sealed:
                state: SegmentState | None = SegmentState.SEALED
            else:
                state = probe_state(path) if probe else SegmentState.ACTIVE
                if state is None:
                    continue
            segment = Segment(name, path, state, st.st_size, st.st_mtime)
            # Sealed wins if a listing raced a rename and saw both names.
            if name.segment_id not in found or segment.state is SegmentState.SEALED:
                found[name.segment_id] = segment
    return sorted(found.values(), key=lambda s: (s.name.writer, s.name.seq))


def seal_orphan(segment: Segment) -> Segment | None:
    """Rename an orphaned segment to ``.ndjson``; ``None`` if it is not (or no longer) orphaned."""
    fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        try:
            if os.stat(segment.path).st_ino != os.fstat(fd).st_ino:
                return None
        except FileNotFoundError:
            return None
        sealed = segment.path.with_name(segment.name.sealed_name)
        os.rename(segment.path, sealed)
        fsync_dir(sealed.parent)
        size = os.fstat(fd).st_size
        name = SegmentName(segment.name.writer, segment.name.seq, sealed=True)
        return Segment(name, sealed, SegmentState.SEALED, size, os.fstat(fd).st_mtime)
    finally:
        os.close(fd)


def remove_stale_creating(spool_dir: Path, *, older_than_seconds: float = STALE_CREATING_SECONDS) -> list[str]:
    """Remove hidden ``.creating-…`` files of dead writers; returns the names removed.

    Safe against live writers: a file is removed only while *we* hold its lock
    (so its writer cannot be holding it), only if the name still points at the
    file we locked, and only past the grace period (a writer that created it but
    has not locked it yet is young). A writer that loses the race fails its
    rename and simply creates its next segment.
    """
    removed = []
    now = time.time()
    with os.scandir(spool_dir) as entries:
        candidates = [e for e in entries if e.name.startswith(CREATING_PREFIX)]
    for entry in candidates:
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < older_than_seconds:
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue  # gone, or not a plain file: not ours to judge
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer is alive
            with contextlib.suppress(OSError):
                if os.stat(entry.path).st_ino == os.fstat(fd).st_ino:
                    os.unlink(entry.path)
                    removed.append(entry.name)
        finally:
            os.close(fd)
    if removed:
        log.warning("stale segment files removed", extra={"files": len(removed)})
    return removed
