"""Where segments are on a spool claim, and which of them no configured spool owns ("strays").

A claim's layout changes with its configuration: one route keeps its segments at
the spool root (``--spool-dir /spool``), ``--config`` keeps each route's in
``<root>/<route>/``, and renaming or removing a route leaves its directory behind.
Whatever was acknowledged under the old layout is still on the claim, so every
command that decides "this claim is empty" or "this is the backlog" must look at
the whole tree, not only at the spools its current configuration names
(routes review, finding 1). :func:`segment_dirs` walks the tree and
:func:`stray_dirs` keeps the directories holding segments that none of the given
spools is. ``dead-letter/`` folders and archives are not segments and are skipped.

Standard library only; read-only; a directory that cannot be read (``lost+found``
on a fresh ext4 claim) is skipped, not fatal.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .deadletter import DEAD_LETTER_DIR
from .naming import parse_segment_name

__all__ = ["SegmentDir", "describe_strays", "segment_dirs", "stray_dirs", "volume_bytes"]

# Never a spool: dead letters are not segments; lost+found is the file system's.
_NOT_SPOOLS = {DEAD_LETTER_DIR, "lost+found"}


@dataclass(frozen=True)
class SegmentDir:
    """A directory holding segment files (sealed or active), and how many bytes of them."""

    path: Path
    segments: int
    bytes: int


def segment_dirs(root: Path, *, skip: Iterable[Path] = ()) -> list[SegmentDir]:
    """Every directory under ``root`` (itself included) holding a segment, sorted by path.

    ``skip``: directories not to look into (archives kept under the spool, whose
    ``--no-archive-gzip`` files carry segment names)."""
    root = Path(root)
    skipped = {_resolved(p) for p in skip}
    found = []
    for path, dirs, files in os.walk(root, onerror=lambda _exc: None):
        here = Path(path)
        dirs[:] = sorted(d for d in dirs if d not in _NOT_SPOOLS and not d.startswith(".")
                         and _resolved(here / d) not in skipped)
        count = size = 0
        for name in files:
            if parse_segment_name(name) is None:
                continue
            try:
                size += os.stat(os.path.join(path, name)).st_size
            except OSError:  # shipped and deleted meanwhile
                continue
            count += 1
        if count:
            found.append(SegmentDir(here, count, size))
    return sorted(found, key=lambda d: str(d.path))


def stray_dirs(root: Path, spools: Iterable[Path], *, skip: Iterable[Path] = ()) -> list[SegmentDir]:
    """The directories under ``root`` holding segments that are none of ``spools`` (the configured ones)."""
    owned = {_resolved(p) for p in spools}
    return [d for d in segment_dirs(root, skip=skip) if _resolved(d.path) not in owned]


def describe_strays(root: Path, strays: list[SegmentDir]) -> str:
    """``/spool (the spool root): 3 segments, 12288 bytes; /spool/clicks: 1 segment, 200 bytes``."""
    parts = []
    for stray in strays:
        where = " (the spool root)" if _resolved(stray.path) == _resolved(root) else ""
        parts.append(f"{stray.path}{where}: {stray.segments} segment{'s' if stray.segments != 1 else ''}, "
                     f"{stray.bytes} bytes")
    return "; ".join(parts)


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def volume_bytes(path: Path) -> int:
    """The size of the file system that holds ``path``, or will once it is created (its nearest existing
    ancestor's): what the routes' caps must fit in."""
    for candidate in (Path(path), *Path(path).absolute().parents):
        try:
            st = os.statvfs(candidate)
        except (FileNotFoundError, NotADirectoryError):
            continue
        return st.f_blocks * st.f_frsize
    raise FileNotFoundError(path)
