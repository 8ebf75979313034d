"""Writer presence: a live writer holds a lock on a hidden file in the spool for as long as it is open.

A writer between two segments (the last one sealed by age or size, the next not
created until the next append) leaves no ``.active`` file: the spool looks empty
although a receiver is still writing to it. ``--exit-when-empty`` must not take
that for "drained" (review item 14), so every :class:`spooler.SpoolWriter` holds an
exclusive ``flock`` on ``.writer-<writer id>.lock`` from its start to its close.
:func:`live_writers` lists the writers whose file is locked; a file nobody locks
was left by a writer that died, and is removed (as :func:`remove_stale_presence`
does for the writers' own housekeeping). Presence is best-effort: a writer that
cannot create its file (a full or read-only disk) still writes, and says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

__all__ = ["PRESENCE_PREFIX", "hold_presence", "live_writers", "release_presence", "remove_stale_presence"]

log = logging.getLogger(__name__)
PRESENCE_PREFIX = ".writer-"
_SUFFIX = ".lock"


def _path(spool_dir: Path, writer_id: str) -> Path:
    return Path(spool_dir) / f"{PRESENCE_PREFIX}{writer_id}{_SUFFIX}"


def hold_presence(spool_dir: Path, writer_id: str) -> int:
    """Lock this writer's presence file; the descriptor (-1 if it could not be made)."""
    path = _path(spool_dir, writer_id)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        log.warning("writer presence file not created; a tailer with --exit-when-empty cannot see this "
                    "writer between segments", extra={"path": str(path), "error": str(exc)})
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        log.warning("writer presence file not locked", extra={"path": str(path), "error": str(exc)})
        return -1
    return fd


def release_presence(spool_dir: Path, writer_id: str, fd: int) -> None:
    """Remove the presence file, then let go of its lock."""
    if fd < 0:
        return
    with contextlib.suppress(OSError):
        os.unlink(_path(spool_dir, writer_id))
    with contextlib.suppress(OSError):
        os.close(fd)


def _scan(spool_dir: Path, *, remove_stale: bool) -> tuple[list[str], list[str]]:
    """(writer ids alive, names of stale files removed)."""
    alive, removed = [], []
    with os.scandir(spool_dir) as entries:
        names = [e.name for e in entries if e.name.startswith(PRESENCE_PREFIX) and e.name.endswith(_SUFFIX)]
    for name in names:
        path = Path(spool_dir) / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue  # removed meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                alive.append(name[len(PRESENCE_PREFIX):-len(_SUFFIX)])
                continue
            if remove_stale:
                with contextlib.suppress(OSError):
                    if os.stat(path).st_ino == os.fstat(fd).st_ino:
                        os.unlink(path)
                        removed.append(name)
        finally:
            os.close(fd)
    return alive, removed


def live_writers(spool_dir: Path) -> list[str]:
    """Ids of the writers holding the spool now (stale presence files are removed on the way)."""
    return _scan(spool_dir, remove_stale=True)[0]


def remove_stale_presence(spool_dir: Path) -> list[str]:
    """Remove the presence files of writers that died; returns their names."""
    return _scan(spool_dir, remove_stale=True)[1]
