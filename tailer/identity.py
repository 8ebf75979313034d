"""Which file an offset belongs to: a segment replaced or rewritten under the tailer is a new segment.

A segment id names a file, but an operator or a tool can put another file under
that name: copy one in (``cp``, ``zcat >``), rename a new file over it, rewrite it
in place (truncate, write again). An offset measured in one file means nothing in
another: carried over, it loses the new file's head and ships a fragment of a line.
So each :class:`~tailer.progress.SegmentProgress` knows its file by

- its inode (``st_ino`` of the path when listed, of the descriptor when opened;
  compared on every listing and every open, and saved in the checkpoint; after
  a restart another inode with the same first bytes is the same content), and
- a hash of its first ``HEAD_BYTES`` bytes once read (checked on every listing,
  on every open, and after a restart against the checkpoint's),

and before reading on from offset N, byte N-1 must still be ``\\n`` (a rewrite
that moved the line ends). On a mismatch the file is a new segment: logged
(error), counted (``spoolship_tailer_segments_replaced_total{how}``) and shipped
from its first byte — duplicates, never a loss. A checkpoint whose offset is
inside a line of the *same* file (edited by hand, or an old checkpoint without
identity) skips to the next line start, logged and counted
(``how="checkpoint_mid_line"``).

A sealed segment that is empty, or ends without a newline, may still be written
(a copy into the spool): it is taken as it is (deleted; its tail dead-lettered)
only once its file has not changed for ``quiet_seconds``. Before a segment is
deleted its path is checked once more: the same inode, the checkpointed size.

Not thread-safe: the shipper's loop owns it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time

from .metrics import TailerMetrics
from .progress import SegmentProgress
from .spoolio import FAILED, GuardedSpool

__all__ = ["HEAD_BYTES", "SegmentIdentity", "head_digest"]

log = logging.getLogger(__name__)
HEAD_BYTES = 64


def _read_head(path, length: int) -> bytes:
    with open(path, "rb") as file:
        return file.read(length)


def head_digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


class SegmentIdentity:
    def __init__(self, io: GuardedSpool, metrics: TailerMetrics, *, quiet_seconds: float) -> None:
        self._io = io
        self._metrics = metrics
        self.quiet_seconds = quiet_seconds

    # -- recording -------------------------------------------------------------------------

    @staticmethod
    def to_checkpoint(progress: SegmentProgress) -> dict | None:
        if not progress.ino:
            return None
        return {"ino": progress.ino, "head_bytes": progress.head_bytes, "head": progress.head}

    def adopt(self, progress: SegmentProgress, saved: dict | None) -> bool:
        """Take the checkpoint's identity for a newly tracked segment; False if it is another file.

        Another inode with the same first bytes is the same content under a new inode (a volume
        restored from a copy, a file system whose inode numbers change across mounts): its offset
        stands (and byte N-1 is still checked before reading on)."""
        if saved is None:
            return True
        progress.head_bytes, progress.head = saved["head_bytes"], saved["head"]
        if not progress.ino or saved["ino"] == progress.ino:
            return True
        head = self._io.run("read", progress.segment_id, _read_head, progress.segment.path, progress.head_bytes,
                            missing_ok=True)
        if progress.head_bytes and head and head_digest(head) == progress.head:
            log.info("segment has another inode than in the checkpoint but the same first bytes; offset kept",
                     extra={"segment": progress.segment_id})
            return True
        return False

    def note_read(self, progress: SegmentProgress, first_bytes: bytes | None) -> None:
        """After a read: hash the head once more of it is known (``first_bytes``: the chunk at offset 0)."""
        if progress.head_bytes >= HEAD_BYTES or progress.read <= progress.head_bytes:
            return
        want = min(HEAD_BYTES, progress.read)
        head = first_bytes[:want] if first_bytes is not None else self._read(progress, 0, want)
        if head is not None and len(head) == want:
            progress.head_bytes, progress.head = want, head_digest(head)

    # -- checking ---------------------------------------------------------------------------

    def head_changed(self, progress: SegmentProgress) -> bool:
        """The first bytes of the open file are not the ones read before (False if unknown)."""
        if progress.fd < 0 or not progress.head_bytes:
            return False
        head = self._read(progress, 0, progress.head_bytes)
        return head is not None and head_digest(head) != progress.head

    def fd_inode(self, progress: SegmentProgress, fd: int) -> int | None:
        st = self._io.run("read", progress.segment_id, os.fstat, fd)
        return None if st is FAILED else st.st_ino

    def at_line_start(self, progress: SegmentProgress) -> bool | None:
        """Whether byte ``read - 1`` is still a newline (None: could not tell now)."""
        if progress.read == 0:
            return True
        byte = self._read(progress, progress.read - 1, 1)
        if byte is None:
            return None
        return byte == b"\n"

    def is_quiet(self, progress: SegmentProgress) -> bool:
        """The open file has not changed for ``quiet_seconds`` (nobody is still copying it in)."""
        st = self._io.run("read", progress.segment_id, os.fstat, progress.fd)
        return st is not FAILED and time.time() - st.st_mtime >= self.quiet_seconds

    def may_delete(self, progress: SegmentProgress, checkpointed: int) -> bool:
        """Right before unlinking: the path is still the file shipped, at the size checkpointed, and
        (unless the tailer saw it being written by a spool writer) it has stopped changing."""
        st = self._io.run("delete", progress.segment_id, os.stat, progress.segment.path, missing_ok=True)
        if not st:
            return False
        expected = progress.ino or progress.segment.ino
        if (expected and st.st_ino != expected) or st.st_size != checkpointed:
            log.warning("segment changed under the tailer; not deleted", extra={
                "segment": progress.segment_id, "size": st.st_size, "checkpointed": checkpointed})
            return False
        # A file the tailer never saw a spool writer write may still be copied in: asked again next step.
        return progress.seen_active or time.time() - st.st_mtime >= self.quiet_seconds

    def replaced(self, progress: SegmentProgress, how: str, ino: int = 0) -> None:
        """Another file than the one read: ship it from its first byte (duplicates, never a loss)."""
        self._metrics.segments_replaced.labels(how).inc()
        log.error("segment is another file than the one being read; shipping it from its first byte",
                  extra={"segment": progress.segment_id, "how": how, "read_offset": progress.read,
                         "acked": progress.acked})
        progress.restart()
        progress.ino = ino
        progress.unshipped_since = time.time()

    def skipped_mid_line(self, progress: SegmentProgress, next_line: int) -> None:
        self._metrics.segments_replaced.labels("checkpoint_mid_line").inc()
        log.error("checkpoint points inside a line; skipping to the next line start", extra={
            "segment": progress.segment_id, "checkpoint": progress.read, "skipped_bytes": next_line - progress.read})

    def _read(self, progress: SegmentProgress, offset: int, length: int) -> bytes | None:
        data = self._io.run("read", progress.segment_id, os.pread, progress.fd, length, offset)
        return None if data is FAILED else data
