"""Bytes under a directory tree, re-counted without walking what has not changed.

A spool's subdirectories (``dead-letter/``, an archive kept inside the spool)
count toward ``--max-spool-bytes``, and every writer re-measures them. A full
walk stats every file: ~3 s for 200,000 dead letters on a loaded machine, per
writer, every few seconds. :class:`TreeUsage` keeps, per directory, what the
last reading found and re-reads a directory only when its identity, ``mtime``
or ``ctime`` changed (a file created, renamed or removed in it); a file's size
is re-read only while the file is young or when its name points at another
inode. So an unchanged tree costs one ``stat`` per directory.

What the shortcuts assume, and why they are safe for the spool:

- **Timestamps are coarse** (a kernel tick): a change right after a reading may
  leave the directory's ``mtime`` as it was. A directory (or file) whose
  timestamps were less than ``SETTLED_SECONDS`` old when read is not trusted:
  it is read again next time, until it has been quiet for that long.
- **A settled file is not rewritten in place**: one whose timestamps are older
  than ``SETTLED_SECONDS`` keeps its size until it is replaced or removed (both
  change its directory). The tailer writes every dead letter and archive to a
  temporary name and renames it into place, and never touches it again but to
  delete it; a file written in place by someone else is counted by its size
  when it settled.

Not thread-safe: one caller (the capacity guard's measuring thread) at a time.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

__all__ = ["SETTLED_SECONDS", "TreeUsage"]

SETTLED_SECONDS = 1.0
_SETTLED_NS = int(SETTLED_SECONDS * 1e9)


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def _is_settled(st: os.stat_result, now_ns: int) -> bool:
    return max(st.st_mtime_ns, st.st_ctime_ns) < now_ns - _SETTLED_NS


@dataclass
class _Dir:
    path: str
    stamp: tuple[int, int, int, int] | None = None
    trusted: bool = False  # the stamp was settled when read: an unchanged stamp means unchanged entries
    read_at: float = float("-inf")  # monotonic time of the last reading of the entries
    settled: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (inode, size)
    settled_bytes: int = 0
    young: list[str] = field(default_factory=list)  # files re-measured at every count
    young_bytes: int = 0
    children: dict[str, _Dir] = field(default_factory=dict)


class TreeUsage:
    """The bytes of every regular file under ``path`` (symlinks not followed; unreadable parts skipped)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._root = _Dir(os.fspath(path))
        self.entries_read = 0  # directory entries read so far (for tests and benchmarks)
        self.behind = False  # the last count kept an old reading of a directory that changed

    def measure(self, *, reread_after_seconds: float = 0.0) -> int:
        """Count the tree. A directory that changed is read again only if its last reading is at
        least ``reread_after_seconds`` old; until then its last count stands (0: always read;
        ``math.inf``: never — then :attr:`behind` says whether that left the count behind)."""
        self.behind = False
        return self._measure(self._root, reread_after_seconds, time.monotonic())

    def _measure(self, node: _Dir, reread_after: float, now: float) -> int:
        try:
            st = os.stat(node.path)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            node.stamp, node.trusted = None, False
            node.settled, node.settled_bytes, node.young, node.young_bytes = {}, 0, [], 0
            node.children = {}
            return 0
        unchanged = node.trusted and node.stamp == _stamp(st)
        if not unchanged and now - node.read_at >= reread_after:
            self._read(node, st, now)
        else:
            self.behind |= not unchanged
            node.young_bytes = self._young_bytes(node)
        return node.settled_bytes + node.young_bytes + sum(
            self._measure(child, reread_after, now) for child in node.children.values())

    def _young_bytes(self, node: _Dir) -> int:
        now_ns = time.time_ns()
        total = 0
        still_young = []
        for name in node.young:
            try:
                st = os.stat(os.path.join(node.path, name), follow_symlinks=False)
            except OSError:
                continue  # gone (renamed into place, or removed): its directory changed, read again later
            total += st.st_size
            if _is_settled(st, now_ns):  # quiet long enough: counted by its inode from now on
                node.settled[name] = (st.st_ino, st.st_size)
                node.settled_bytes += st.st_size
                total -= st.st_size
            else:
                still_young.append(name)
        node.young = still_young
        return total

    def _read(self, node: _Dir, st: os.stat_result, now: float) -> None:
        now_ns = time.time_ns()  # taken before the entries: a change after it is "young"
        settled: dict[str, tuple[int, int]] = {}
        young: list[str] = []
        settled_bytes = young_bytes = 0
        children: dict[str, _Dir] = {}
        try:
            with os.scandir(node.path) as entries:
                for entry in entries:
                    self.entries_read += 1
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            children[entry.name] = node.children.get(entry.name) or _Dir(entry.path)
                            continue
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        known = node.settled.get(entry.name)
                        if known is not None and known[0] == entry.inode():
                            settled[entry.name] = known
                            settled_bytes += known[1]
                            continue
                        file_st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # removed while we looked
                    if _is_settled(file_st, now_ns):
                        settled[entry.name] = (file_st.st_ino, file_st.st_size)
                        settled_bytes += file_st.st_size
                    else:
                        young.append(entry.name)
                        young_bytes += file_st.st_size
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            pass
        node.stamp, node.trusted, node.read_at = _stamp(st), _is_settled(st, now_ns), now
        node.settled, node.settled_bytes, node.young, node.young_bytes = settled, settled_bytes, young, young_bytes
        node.children = children
