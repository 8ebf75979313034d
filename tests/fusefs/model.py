"""What survives a power cut: per file, its content as of its last fsync; per directory, its
entries as of its last directory fsync.

The model (the rules LazyFS and ALICE use for a "pessimistic" POSIX file system):

- A file's bytes become durable only through ``fsync``/``fdatasync`` of that file;
  everything written (or truncated) since is lost by a cut.
- A name becomes durable only through an fsync of its directory: a file created
  (or a directory made) whose parent was never fsynced vanishes; a rename or an
  unlink not followed by a directory fsync is undone. Fsyncing a file does not
  make its name durable.
- A failed fsync is *fsyncgate*: the bytes it should have written are lost for
  good. A later fsync of the same file succeeds but does not write them; the
  file's durable image keeps what it had there (zeros past its old end), as a
  real disk would after Linux dropped the dirty pages. Rewriting those bytes
  makes them dirty (and savable) again.
- A directory that survives keeps the durable image of each file it names.

Limits — what the model does NOT cover:
- Reordering or partial persistence *between* fsyncs: a cut loses everything
  since the last fsync of a file, never half of it, and never persists a later
  write without an earlier one. No torn sectors, no partially written pages, no
  "the kernel happened to write it back anyway" (so ``--fsync never`` loses more
  here than on a real disk, which writes back within ~30 s).
- Metadata other than names and content: modes, owners, times, sizes set by
  ``truncate`` count as content changes; extended attributes are not modelled.
- Hard links and symlinks (not supported by the daemon); a file renamed across
  directories that are fsynced at different times may survive under both names
  (two independent copies) or under neither.
- Only what goes through the mount: changes made directly in the backing
  directory are not seen.
- A cut applies to a subtree (see :func:`materialize`); other subtrees of the
  mount keep running.

Not thread-safe: the daemon holds one lock around every call.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DirNode", "FileNode", "load_tree", "materialize"]

_END = 2**63


def _subtract(ranges: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    out = []
    for s, e in ranges:
        if e <= start or s >= end:
            out.append((s, e))
            continue
        if s < start:
            out.append((s, start))
        if e > end:
            out.append((end, e))
    return out


def _add(ranges: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """Insert [start, end) into a sorted list of disjoint ranges, merging neighbours."""
    out = []
    for s, e in sorted([*ranges, (start, end)]):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


class FileNode:
    """One file: its durable image, what was written since, and what a failed fsync lost."""

    def __init__(self, durable: bytes = b"") -> None:
        self.durable = bytearray(durable)
        self.dirty: list[tuple[int, int]] = []
        self.lost: list[tuple[int, int]] = []

    def wrote(self, start: int, end: int) -> None:
        if end > start:
            self.dirty = _add(self.dirty, start, end)
            self.lost = _subtract(self.lost, start, end)

    def truncated(self, length: int) -> None:
        """Everything from ``length`` on changed (cut off, or zero-extended)."""
        self.wrote(length, _END)

    def synced(self, read, size: int) -> None:
        """A successful fsync: the durable image becomes the file as it is, except lost ranges.

        ``read(start, end)`` returns the current bytes; ``size`` is the current size.
        """
        if size < len(self.durable):
            del self.durable[size:]
        else:
            self.durable.extend(bytes(size - len(self.durable)))
        for start, end in self.dirty:
            end = min(end, size)
            if end > start:
                self.durable[start:end] = read(start, end).ljust(end - start, b"\0")
        self.dirty = []

    def sync_failed(self) -> None:
        """fsyncgate: what this fsync should have written is lost, whatever comes later."""
        for start, end in self.dirty:
            self.lost = _add(self.lost, start, end)
        self.dirty = []


class DirNode:
    """One directory: its entries now, and as of its last fsync."""

    def __init__(self, entries: dict[str, FileNode | DirNode] | None = None, *, durable: bool = False) -> None:
        self.current: dict[str, FileNode | DirNode] = dict(entries or {})
        self.durable: dict[str, FileNode | DirNode] = dict(self.current) if durable else {}

    def synced(self) -> None:
        self.durable = dict(self.current)


def load_tree(path: Path) -> DirNode:
    """The model of a directory tree on disk, all of it durable (as after a clean mount)."""
    entries: dict[str, FileNode | DirNode] = {}
    with os.scandir(path) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                entries[entry.name] = load_tree(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                entries[entry.name] = FileNode(Path(entry.path).read_bytes())
    return DirNode(entries, durable=True)


def materialize(node: DirNode, target: Path) -> None:
    """Write the durable image of ``node`` (what a cut leaves) as a new directory ``target``."""
    target.mkdir()
    for name, child in node.durable.items():
        if isinstance(child, DirNode):
            materialize(child, target / name)
        else:
            (target / name).write_bytes(bytes(child.durable))
