"""Archiving fully shipped segments instead of deleting them, so they can be replayed.

The archive is written next to its final name and renamed into place after an
fsync; only then is the spool's copy unlinked, so a crash leaves the segment in
the spool (shipped again at worst), never in neither place. A write that fails
(``ENOSPC``, ``EFBIG``…) removes its partial temp file at once: on a full disk it
would hold the very space a retry needs. Pruning keeps the archive under a byte
budget and an age, oldest first, and removes only what the archiver wrote: a
sealed segment's name, plain or ``.gz`` — never a checkpoint, an ``.active``
segment or an operator's file in a directory given as the archive by mistake
(the tailer also refuses an archive that is the spool itself). A directory that
is a spool (it holds a checkpoint or its lock: the spool under another path, a
bind mount, another route's spool) is never pruned at all: there, archive names
are the names of segments not yet shipped.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import time
from pathlib import Path

from .checkpoint import CHECKPOINT_FILE, LOCK_FILE
from .fsutil import fsync_dir
from .naming import parse_segment_name

__all__ = ["ArchiveIsASpool", "archive_segment", "is_archive_name", "prune_archive"]


class ArchiveIsASpool(OSError):
    """The archive directory holds a spool's checkpoint: pruning it would delete unshipped segments."""

_COPY_BYTES = 1024 * 1024


def archive_segment(segment_path: Path, archive_dir: Path, *, compress: bool = True) -> Path:
    """Move a sealed segment into ``archive_dir`` (gzipped by default); return its new path."""
    archive_dir.mkdir(parents=True, exist_ok=True)
    fsync_dir(archive_dir.parent)  # the archive folder's own name must survive a crash too
    final = archive_dir / (segment_path.name + (".gz" if compress else ""))
    tmp = final.with_name("." + final.name + ".tmp")
    try:
        with open(segment_path, "rb") as src, open(tmp, "wb") as raw:
            if compress:
                with gzip.GzipFile(filename=segment_path.name, mode="wb", fileobj=raw, compresslevel=6) as gz:
                    shutil.copyfileobj(src, gz, _COPY_BYTES)
            else:
                shutil.copyfileobj(src, raw, _COPY_BYTES)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, final)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(archive_dir)
    segment_path.unlink()
    fsync_dir(segment_path.parent)
    return final


def is_archive_name(file_name: str) -> bool:
    """A name :func:`archive_segment` writes: ``<writer>-<seq>.ndjson``, or that plus ``.gz``."""
    name = parse_segment_name(file_name.removesuffix(".gz"))
    return name is not None and name.sealed


def prune_archive(archive_dir: Path, *, max_bytes: int | None, max_age_seconds: float | None) -> list[Path]:
    """Delete the oldest archives past the age or byte budget; return what was removed. Raises
    :class:`ArchiveIsASpool` (an OSError: the tailer logs, counts and retries it) in a spool."""
    if not archive_dir.is_dir():
        return []
    for marker in (LOCK_FILE, CHECKPOINT_FILE):
        if (archive_dir / marker).exists():
            raise ArchiveIsASpool(f"{archive_dir} holds {marker}: it is a spool, not an archive; not pruned")
    files = []
    for path in archive_dir.iterdir():
        if not is_archive_name(path.name) or not path.is_file():
            continue
        st = path.stat()
        files.append((st.st_mtime, st.st_size, path))
    files.sort()
    now = time.time()
    total = sum(size for _, size, _ in files)
    removed = []
    for mtime, size, path in files:
        too_old = max_age_seconds is not None and now - mtime > max_age_seconds
        too_big = max_bytes is not None and total > max_bytes
        if not (too_old or too_big):
            continue
        path.unlink(missing_ok=True)
        total -= size
        removed.append(path)
    return removed
