"""Which file an offset belongs to: a segment replaced or rewritten under the tailer is a new segment.

A segment id names a file, but an operator or a tool can put another file under
that name: copy one in (``cp``, ``zcat >``), rename a new file over it, rewrite it
in place (truncate, write again). An offset measured in one file means nothing in
another: carried over, it loses the new file's head and ships a fragment of a line.
So each :class:`~tailer.progress.SegmentProgress` knows its file by

- its inode (``st_ino`` of the path when listed, of the descriptor when opened;
  compared on every listing and every open, and saved in the checkpoint),
- a hash of its first ``HEAD_BYTES`` bytes once read (checked on every listing,
  on every open, before deleting, and after a restart against the checkpoint's),
- a hash of the (at most ``HEAD_BYTES``) bytes just before the offset read to —
  and, in the checkpoint, before the acknowledged offset (``tail``/``tail_at``).
  Before reading on from offset N the bytes before N must still hash to it
  (checked on every read, listing, open, before deleting, and after a restart):
  a file rewritten in place with the same first bytes and lines of the same
  length (``cp new seg``: same inode, O_TRUNC) still differs there. A checkpoint
  without it (older, hand-written) falls back to: byte N-1 must be ``\\n``.

After a restart another inode keeps its offset only if both its first bytes and
the bytes before the offset match the checkpoint's (a volume restored from a
copy); otherwise — and whenever an offset lands inside a line of another inode
— it is a new file. On a mismatch the file is a new segment: logged (error),
counted (``spoolship_tailer_segments_replaced_total{how}``) and shipped from its
first byte — duplicates, never a loss. A checkpoint whose offset is inside a
line of the *same* file and carries no tail hash (edited by hand, or an old
checkpoint) skips to the next line start, logged and counted
(``how="checkpoint_mid_line"``).

A sealed segment that is empty, or ends without a newline, may still be written
(a copy into the spool): it is taken as it is (deleted; its tail dead-lettered)
only once its file has not changed for ``quiet_seconds``. Before a segment is
deleted its path is checked once more: the same inode, the checkpointed size,
the same first and last bytes. A sealed segment the tailer never saw a spool
writer write and that was not renamed into place after its last write (ctime
== mtime: copied in under its final name; a spool writer's seal moves the mtime
back so that its ctime is past it, see ``spooler.segment_files.mark_sealed``)
is deleted only once its mtime and
ctime are ``copy_in_grace_seconds`` old; and any segment the tailer never saw
a writer write is deleted only while no process it can see holds it open for
writing (:mod:`tailer.writers_open`): a producer that pauses at a line end
must not have its next lines go into an unlinked inode. The supported way
to put a file into the spool is still: write it aside, then rename it in.

Not thread-safe: the shipper's loop owns it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time

from spooler.checkpoint import IDENTITY_BYTES_MAX

from . import writers_open
from .metrics import TailerMetrics
from .progress import SegmentProgress
from .spoolio import FAILED, GuardedSpool

__all__ = ["HEAD_BYTES", "SegmentIdentity", "head_digest"]

log = logging.getLogger(__name__)
HEAD_BYTES = IDENTITY_BYTES_MAX  # the checkpoint refuses a larger head_bytes


def _read_at(path, offset: int, length: int) -> bytes:
    with open(path, "rb") as file:
        return os.pread(file.fileno(), length, offset)


def _read_ends(path, head_bytes: int, tail_end: int) -> tuple[os.stat_result, bytes, bytes]:
    """(fstat, the first ``head_bytes`` bytes, the at most HEAD_BYTES bytes before ``tail_end``) of a path."""
    with open(path, "rb") as file:
        fd = file.fileno()
        n = min(HEAD_BYTES, tail_end)
        return os.fstat(fd), os.pread(fd, head_bytes, 0), os.pread(fd, n, tail_end - n)


def head_digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


class SegmentIdentity:
    def __init__(self, io: GuardedSpool, metrics: TailerMetrics, *, quiet_seconds: float,
                 copy_in_grace_seconds: float) -> None:
        self._io = io
        self._metrics = metrics
        self.quiet_seconds = quiet_seconds
        self.copy_in_grace_seconds = copy_in_grace_seconds
        self._writers = writers_open.WriterScan()

    # -- recording -------------------------------------------------------------------------

    @staticmethod
    def to_checkpoint(progress: SegmentProgress) -> dict | None:
        if not progress.ino:
            return None
        identity = {"ino": progress.ino, "head_bytes": progress.head_bytes, "head": progress.head}
        if progress.acked_tail and progress.acked:
            identity.update(tail=progress.acked_tail, tail_at=progress.acked)
        return identity

    def adopt(self, progress: SegmentProgress, saved: dict | None, acked: int) -> bool:
        """Take the checkpoint's identity for a newly tracked segment at offset ``acked``; False if it is
        another file.

        The same inode keeps its offset (its first bytes and the bytes before the offset are checked when
        it is opened). Another inode is the same content (a volume restored from a copy, inode numbers
        that change across mounts) only if its first bytes *and* the bytes before the offset hash as
        recorded; without a recorded tail it is another file."""
        if saved is None:
            return True
        progress.head_bytes, progress.head = saved["head_bytes"], saved["head"]
        tail = saved.get("tail", "") if saved.get("tail_at") == acked else ""
        progress.acked_tail = progress.read_tail = tail
        if not progress.ino or saved["ino"] == progress.ino:
            return True
        if not tail or not progress.head_bytes:
            return False
        ends = self._io.run("read", progress.segment_id, _read_ends, progress.segment.path, progress.head_bytes,
                            acked, missing_ok=True, clears=False)
        if not ends or ends is FAILED:
            return False
        _, head, before = ends
        if head_digest(head) == progress.head and head_digest(before) == tail:
            log.info("segment has another inode than in the checkpoint but the same bytes at its start and "
                     "before the offset; offset kept", extra={"segment": progress.segment_id})
            return True
        return False

    def tail_digest(self, progress: SegmentProgress, end: int, data: bytes) -> str:
        """The hash of the at most HEAD_BYTES bytes before ``end`` (``data``: bytes ending at ``end``, read
        from the open file if too short; "" if that fails)."""
        n = min(HEAD_BYTES, end)
        if len(data) < n:
            data = self._read(progress, end - n, n) or b""
            if len(data) < n:
                return ""
        return head_digest(data[len(data) - n:])

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

    def file_changed(self, progress: SegmentProgress) -> bool:
        """The open file no longer holds what was read at its start or just before the read offset."""
        return self.head_changed(progress) or self.continues(progress, tail_only=True) is False

    def fd_inode(self, progress: SegmentProgress, fd: int) -> int | None:
        st = self._io.run("read", progress.segment_id, os.fstat, fd, clears=False)
        return None if st is FAILED else st.st_ino

    def continues(self, progress: SegmentProgress, *, tail_only: bool = False) -> bool | None:
        """Whether the open file may be read on from ``read``: the bytes before it hash as when they were
        read (if that hash is known; else byte ``read - 1`` is a newline). None: could not tell now."""
        if progress.read == 0 or progress.fd < 0 or (tail_only and not progress.read_tail):
            return True
        n = min(HEAD_BYTES, progress.read)
        before = self._read(progress, progress.read - n, n)
        if before is None or len(before) < n:
            return None  # shorter than what was read: the shrink check (tracker.shrunk) takes it
        if progress.read_tail:
            return head_digest(before) == progress.read_tail
        return before.endswith(b"\n")

    def is_quiet(self, progress: SegmentProgress) -> bool:
        """The open file has not changed for ``quiet_seconds`` (nobody is still copying it in)."""
        st = self._io.run("read", progress.segment_id, os.fstat, progress.fd, clears=False)
        return st is not FAILED and time.time() - st.st_mtime >= self.quiet_seconds

    def may_delete(self, progress: SegmentProgress, checkpointed: int) -> bool:
        """Right before unlinking: the path is still the file shipped (inode, the size checkpointed, first
        and last bytes; a rewrite is taken as a new file) and, unless the tailer saw it being written by a
        spool writer, nobody may still be writing it (:meth:`_copy_finished`)."""
        ends = self._io.run("delete", progress.segment_id, _read_ends, progress.segment.path,
                            progress.head_bytes, checkpointed, missing_ok=True)
        if not ends or ends is FAILED:
            return False
        st, head, before = ends
        expected = progress.ino or progress.segment.ino
        if (expected and st.st_ino != expected) or st.st_size != checkpointed:
            log.warning("segment changed under the tailer; not deleted", extra={
                "segment": progress.segment_id, "size": st.st_size, "checkpointed": checkpointed})
            return False
        if (progress.head_bytes and head_digest(head) != progress.head) or (
                progress.read_tail and checkpointed == progress.read and head_digest(before) != progress.read_tail):
            self.replaced(progress, "rewritten", st.st_ino)
            return False
        return progress.seen_active or self._copy_finished(progress, st)

    def _copy_finished(self, progress: SegmentProgress, st: os.stat_result) -> bool:
        """A file renamed into place after its last write (ctime past mtime: a writer's seal, "write aside,
        then rename in") once it has been quiet; a file written under its final name (ctime == mtime) only
        once unchanged for the copy-in grace. Either way only when no process this one can see holds it
        open for writing: ctime also moves past mtime on a chmod, a chown (a volume's fsGroup) or an
        ``mv`` of a file its producer still writes (review 3, finding 4). Until then
        ``progress.kept_for_copy_in`` (a drain does not wait for it: its lines are checkpointed)."""
        progress.kept_for_copy_in = True
        if st.st_ctime_ns > st.st_mtime_ns:
            progress.kept_until = st.st_mtime + self.quiet_seconds
        else:
            progress.kept_until = max(st.st_mtime, st.st_ctime) + max(self.quiet_seconds,
                                                                      self.copy_in_grace_seconds)
        if time.time() < progress.kept_until:
            return False
        pid = self._writers.writer_of(st.st_dev, st.st_ino, progress.kept_until)
        if pid is False:
            return False  # the next scan answers
        if pid is not None:
            log.info("segment is shipped but still open for writing; not deleted",
                     extra={"segment": progress.segment_id, "pid": pid})
            return False
        progress.kept_for_copy_in = False
        return True

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
        data = self._io.run("read", progress.segment_id, os.pread, progress.fd, length, offset, clears=False)
        return None if data is FAILED else data
