"""The file steps of a segment's life, each leaving nothing half-done behind.

Creating: a hidden ``.creating-…`` file, its ``flock``, the rename into view, a
directory fsync — and on any failure, the half-made file is removed so that it
can never block a later create (every attempt also takes a new sequence
number). Sealing: marking the file as renamed after its last write (below), the
rename to ``.ndjson`` and a directory fsync. Finishing a
short write. Probing whether a disk that failed takes data again. The writer
decides *when*; this module only does the steps.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .fsutil import close_settled, fsync_dir
from .naming import CREATING_PREFIX, PROBE_PREFIX, SegmentName

__all__ = ["SEAL_MARK_NS", "ActiveSegment", "create_segment", "describe_os_error", "mark_sealed", "probe_disk",
           "rename_sealed", "write_rest"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveSegment:
    """A writer's segment being appended to; also the token group commit knows it by."""

    name: SegmentName
    fd: int
    start_seq: int
    opened_at: float


def describe_os_error(exc: OSError) -> str:
    """``ENOSPC: No space left on device``: how errors are shown in logs and 503 messages."""
    return f"{errno.errorcode.get(exc.errno or 0, 'EIO')}: {exc.strerror or exc}"


def create_segment(spool_dir: Path, name: SegmentName, *, durable: bool) -> int:
    """Create, lock and show ``name``; return its ``O_APPEND`` descriptor. Raises OSError, leaving nothing.

    ``durable`` fsyncs the directory, else a machine crash could take the name
    (and every 201 in the file) with it.
    """
    hidden = spool_dir / f"{CREATING_PREFIX}{name.active_name}"
    visible = spool_dir / name.active_name
    fd = -1
    created: Path | None = None
    try:
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        created = hidden
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(hidden, visible)
        created = visible
        if durable:
            fsync_dir(spool_dir)
        return fd
    except OSError:
        _abandon(fd, created)
        raise


def _abandon(fd: int, path: Path | None) -> None:
    """Undo a half-made (empty) segment. If the unlink fails too, the tailer seals an unlocked
    ``.active`` as an orphan, and a stale ``.creating-…`` is cleared by a later writer."""
    if path is not None:
        try:
            os.unlink(path)
        except OSError as exc:
            log.warning("half-made segment not removed", extra={"path": path.name, "error": str(exc)})
    if fd >= 0:
        close_settled(fd, path)  # empty and abandoned: nothing of it matters


SEAL_MARK_NS = 1000  # how far a seal moves the mtime back: a microsecond, seen by any fine-grained filesystem


def mark_sealed(fd: int) -> None:
    """Move the file's mtime back ``SEAL_MARK_NS``, so that its ctime (set by this and by the rename) is past
    its mtime however fast the seal follows the last write.

    The tailer tells a segment renamed into place after its last write (safe to delete once shipped) from
    a file copied in under its final name (whose producer may still write) by ctime > mtime; a seal in the
    same clock tick as the last append left them equal, and every segment sealed while the tailer was not
    running waited out the copy-in grace. Best effort: a file left unmarked only waits longer."""
    try:
        st = os.fstat(fd)
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns - SEAL_MARK_NS))
    except OSError as exc:
        log.debug("segment not marked as sealed", extra={"error": str(exc)})


def rename_sealed(spool_dir: Path, name: SegmentName) -> bool:
    """Rename ``.active`` → ``.ndjson`` durably; False (logged) if the disk refused.

    A segment left ``.active`` is unlocked once its writer closes it: the tailer
    then seals it as an orphan.
    """
    try:
        os.rename(spool_dir / name.active_name, spool_dir / name.sealed_name)
        fsync_dir(spool_dir)
    except OSError as exc:
        log.error("segment seal failed", extra={"segment": name.segment_id, "error": str(exc)})
        return False
    return True


def write_rest(fd: int, data: bytes, written: int) -> tuple[int, OSError | None]:
    """After a short write of ``written`` bytes, write the rest; returns (bytes now written, error)."""
    view = memoryview(data)
    done = written
    try:
        while done < len(data):
            more = os.write(fd, view[done:])
            if more <= 0:
                raise OSError(errno.ENOSPC, "write made no progress")
            done += more
    except OSError as exc:
        return done, exc
    return done, None


# One page of a line like the ones appended: a disk with no free block refuses it.
_PROBE_DATA = (b'{"probe":"' + b"p" * 4083 + b'"}\n')


def probe_disk(spool_dir: Path, writer_id: str) -> None:
    """Write a page to a hidden file the way an append writes, fdatasync it, close and remove it.

    Raises OSError if any step fails. Creating an empty file proves little (a full disk, a
    block quota or a failing device still let it through): only data that reached the disk
    shows that appends would. The file is named like the writer's segments but hidden, so
    no reader takes it for one; a stale one (a writer killed mid-probe) is rewritten by the
    next probe and cleared by :func:`~spooler.segments.remove_stale_creating`.
    """
    path = spool_dir / f"{PROBE_PREFIX}{writer_id}.active"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        try:
            if os.write(fd, _PROBE_DATA) != len(_PROBE_DATA):
                raise OSError(errno.ENOSPC, "probe write was short")
            os.fdatasync(fd)
        finally:
            os.close(fd)  # a deferred write error reported here fails the probe too
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
