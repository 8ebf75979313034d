"""Listing the spool's segments and telling live writers from dead ones.

A segment is ``active`` while its writer holds the ``flock`` on it, ``orphaned``
when it is still ``.active`` but nobody holds the lock (its writer died), and
``sealed`` once renamed to ``.ndjson``. Only the tailer seals an orphan, and it
does so while holding the orphan's lock, after checking the name still points
at the file it locked (the writer may have sealed it in between). Sealing an
orphan fsyncs it first, as a writer's seal does: a writer killed between two
interval fsyncs left its last appends in the page cache only, and nobody else
would ever make them durable.

A writer creates each segment as a hidden ``.creating-…`` file, locks it, then
renames it into view. One killed in between leaves the hidden file behind (it is
always empty: nothing is appended before the rename); :func:`remove_stale_creating`
removes those that nobody holds and that are older than a grace period, and the
hidden ``.probe-…`` files of writers killed while probing a failed disk.
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

from .fsutil import close_settled, fsync_dir
from .naming import CREATING_PREFIX, PROBE_PREFIX, SegmentName, parse_segment_name
from .presence import remove_stale_presence
from .segment_files import mark_sealed

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
    ino: int = 0  # the file's inode when listed: a file replaced under the same name has another

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
        close_settled(fd, path)  # read-only


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
            segment = Segment(name, path, state, st.st_size, st.st_mtime, st.st_ino)
            # Sealed wins if a listing raced a rename and saw both names.
            if name.segment_id not in found or segment.state is SegmentState.SEALED:
                found[name.segment_id] = segment
    return sorted(found.values(), key=lambda s: (s.name.writer, s.name.seq))


def seal_orphan(segment: Segment) -> Segment | None:
    """Fsync an orphaned segment and rename it to ``.ndjson``; ``None`` if it is not (or no longer)
    orphaned. Raises OSError if the fsync or the rename fails (it stays an orphan: tried again)."""
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
        os.fsync(fd)  # under the lock: nobody can append any more; before the rename: sealed means durable
        sealed = segment.path.with_name(segment.name.sealed_name)
        mark_sealed(fd)
        os.rename(segment.path, sealed)
        fsync_dir(sealed.parent)
        st = os.fstat(fd)
        name = SegmentName(segment.name.writer, segment.name.seq, sealed=True)
        return Segment(name, sealed, SegmentState.SEALED, st.st_size, st.st_mtime, st.st_ino)
    finally:
        close_settled(fd, segment.path)  # read-only


def remove_stale_creating(spool_dir: Path, *, older_than_seconds: float = STALE_CREATING_SECONDS) -> list[str]:
    """Remove hidden ``.creating-…``, ``.probe-…`` and ``.writer-…`` files of dead writers; returns the names.

    Safe against live writers: a file is removed only while *we* hold its lock
    (so its writer cannot be holding it), only if the name still points at the
    file we locked, and only past the grace period (a writer that created it but
    has not locked it yet is young). A writer that loses the race fails its
    rename and simply creates its next segment.
    """
    removed = []
    now = time.time()
    with os.scandir(spool_dir) as entries:
        hidden = [e for e in entries if e.name.startswith((CREATING_PREFIX, PROBE_PREFIX))]
    for entry in [e for e in hidden if e.name.startswith(PROBE_PREFIX)]:
        # Never locked: a live writer's probe lasts milliseconds and rewrites the file first.
        with contextlib.suppress(OSError):
            if now - entry.stat(follow_symlinks=False).st_mtime >= older_than_seconds:
                os.unlink(entry.path)
                removed.append(entry.name)
    for entry in [e for e in hidden if e.name.startswith(CREATING_PREFIX)]:
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
            close_settled(fd, entry.path)  # read-only
    removed += remove_stale_presence(spool_dir)
    if removed:
        log.warning("stale segment files removed", extra={"files": len(removed)})
    return removed
