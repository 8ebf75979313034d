"""Small file-system primitives that make spool files crash-safe."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

__all__ = ["atomic_write_bytes", "close_settled", "fsync_dir", "where_is"]

log = logging.getLogger(__name__)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or a new file in ``path`` survive a machine crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        close_settled(fd, path)


def close_settled(fd: int, what: object) -> None:
    """Close a descriptor whose fate no longer depends on ``close`` (fsynced, read-only, or
    already known to have failed), logging instead of raising an error it reports.

    ``close`` can report a deferred write error (NFS, a FUSE flush); the descriptor is
    released anyway (Linux), and for such a descriptor the error changes nothing: what the
    fsync made durable stays durable, and a failed fsync was already dealt with.
    """
    try:
        os.close(fd)
    except OSError as exc:
        log.warning("close reported an error", extra={"file": str(what), "error": str(exc)})


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old or the new file, never a mix.

    temp file → write → fsync → rename → fsync the directory (the Litestream recipe).
    A write that fails removes its temp file (no partial file is left to fill the disk).
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if durable:
                os.fsync(fd)
        finally:
            if durable:
                close_settled(fd, tmp)  # fsynced, or failing anyway
            else:
                os.close(fd)  # a deferred write error is the only news of a failed write here
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def where_is(path: Path, directory: Path) -> str | None:
    """``"same"`` if ``path`` is ``directory``, ``"inside"`` if it is below it, else None — by the
    directories themselves (device and inode), so that a symlink, a ``..`` or a bind mount (one volume
    mounted twice, as a pod may) does not hide it; by the resolved paths where nothing exists yet.
    ``path`` need not exist: its nearest existing ancestor decides."""
    try:
        target = os.stat(directory)
    except OSError:
        return _where_by_paths(path, directory)
    key = (target.st_dev, target.st_ino)
    candidate = Path(os.path.abspath(path))
    for level, ancestor in enumerate([candidate, *candidate.parents]):
        try:
            st = os.stat(ancestor)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == key:
            return "same" if level == 0 else "inside"
    return _where_by_paths(path, directory)


def _where_by_paths(path: Path, directory: Path) -> str | None:
    """:func:`where_is` by the resolved paths alone (what does not exist has no inode to compare)."""
    resolved, folder = Path(path).resolve(), Path(directory).resolve()
    if resolved == folder:
        return "same"
    return "inside" if folder in resolved.parents else None
