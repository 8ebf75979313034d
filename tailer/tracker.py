"""The segments the shipper follows, what the checkpoint says about them, and deleting finished ones.

Invariants:
- The checkpoint only covers lines the sink acknowledged (or dead letters), over
  a contiguous prefix per segment; it is written atomically. A checkpoint entry
  is kept until its segment is known to be gone: a listing that misses a file
  mid-rename (readdir may show neither name) never drops its offset.
- A segment is deleted (or archived) only when it is sealed and the checkpoint
  *on disk* says every byte of it is acknowledged — or it is sealed and has
  stayed empty for ``quiet_seconds`` — and its path still names the file shipped
  (same inode, the checkpointed size, the same first and last bytes:
  :mod:`tailer.identity`); a segment no spool writer was seen writing (copied in
  under its final name) also waits out the copy-in grace and any process that
  still holds it open for writing.
- An offset only ever applies to the file it was measured in: a segment replaced
  or rewritten under the tailer is shipped from its first byte (tailer/identity.py).
- A segment that shrinks below what was already read is reported loudly
  (error log, ``spoolship_tailer_segments_shrunk_total``) and shipped again
  from byte 0: duplicates, never a loss.
- The archive is pruned by its byte budget right after each segment is archived
  (an archive inside the spool counts toward the receivers' cap: bytes moved
  there must not pile up for a minute), and by age every ``ARCHIVE_PRUNE_SECONDS``.

Every spool operation goes through :class:`tailer.spoolio.GuardedSpool`, so an
I/O error postpones that operation and never stops the loop. Not thread-safe:
the shipper's loop owns it.
"""

from __future__ import annotations

import logging
import os
import time

from spooler import CheckpointStore, Segment, SegmentState

from .config import TailerConfig
from .identity import SegmentIdentity
from .metrics import TailerMetrics
from .progress import SegmentProgress
from .spoolio import FAILED, MISSING, GuardedSpool

__all__ = ["SegmentTracker"]

log = logging.getLogger(__name__)
ARCHIVE_PRUNE_SECONDS = 60.0


class SegmentTracker:
    def __init__(self, config: TailerConfig, metrics: TailerMetrics, io: GuardedSpool) -> None:
        self.config = config
        self._metrics = metrics
        self._io = io
        self._dir = config.spool_dir
        self._store = CheckpointStore(self._dir)  # raises CheckpointLocked for a second tailer
        self._carried: dict[str, int] = dict(self._store.offsets)  # saved offsets of segments not tracked yet
        self._carried_ids: dict[str, dict] = dict(self._store.identities)
        self.identity = SegmentIdentity(io, metrics, quiet_seconds=config.quiet_seconds,
                                        copy_in_grace_seconds=config.copy_in_grace_seconds)
        self.needs_rescan = False
        self.progress: dict[str, SegmentProgress] = {}
        self.dirty = False
        self.last_checkpoint = time.monotonic()
        self._last_prune = float("-inf")

    # -- listing -----------------------------------------------------------------------------

    def rescan(self) -> bool:
        """Bring the tracked segments in line with the directory; False if it could not be listed."""
        segments = self._io.run("list", "", self._io.ops.list_segments, self._dir)
        if segments is FAILED:
            return False
        seen = set()
        for segment in segments:
            orphan = segment.state is SegmentState.ORPHANED
            if orphan:
                segment = self._seal_orphan(segment)
                if segment is None:
                    continue
            seen.add(segment.segment_id)
            progress = self.progress.get(segment.segment_id)
            if progress is None:
                self._track(segment, seen_active=orphan)  # an orphan was a writer's (.active, writer gone)
                continue
            if segment.ino and progress.ino and segment.ino != progress.ino:
                self.identity.replaced(progress, "new_inode", segment.ino)
                self.dirty = True
            elif self.identity.file_changed(progress):
                self.identity.replaced(progress, "rewritten", progress.ino)
                self.dirty = True
            progress.segment = segment
            progress.seen_active |= segment.state is not SegmentState.SEALED
            if segment.size < progress.read:
                self.shrunk(progress, segment.size)
        for segment_id in [s for s in self.progress if s not in seen]:
            self._maybe_forget(segment_id)
        for segment_id in [s for s in self._carried if s not in seen]:
            if not self._still_there(segment_id):
                del self._carried[segment_id]
                self._carried_ids.pop(segment_id, None)
                self.dirty = True
        self.update_gauges()
        return True

    def _seal_orphan(self, segment: Segment) -> Segment | None:
        sealed = self._io.run("seal_orphan", segment.segment_id, self._io.ops.seal_orphan, segment, missing_ok=True)
        if not sealed:  # not an orphan any more, gone, or the rename failed (retried later)
            return None
        log.warning("orphaned segment sealed", extra={"segment": segment.segment_id, "bytes": sealed.size})
        return sealed

    def _still_there(self, segment_id: str) -> bool:
        for suffix in (".active", ".ndjson"):
            if self._io.run("list", segment_id, self._io.ops.exists, self._dir / (segment_id + suffix)) is not False:
                return True  # it exists, or we cannot tell (FAILED): keep it
        return False

    def _maybe_forget(self, segment_id: str) -> None:
        if self._still_there(segment_id):
            return  # renamed while the directory was read (readdir may then miss it): still here
        progress = self.progress.pop(segment_id)
        progress.close_fd()
        self.dirty = True
        if progress.acked < progress.segment.size:
            log.error("segment vanished before it was shipped", extra={
                "segment": segment_id, "bytes_unshipped": progress.segment.size - progress.acked})

    def _track(self, segment: Segment, *, seen_active: bool = False) -> None:
        acked = self._carried.pop(segment.segment_id, 0)  # the last checkpoint saved
        progress = SegmentProgress(segment, acked=0, read=0, ino=segment.ino,
                                   seen_active=seen_active or segment.state is not SegmentState.SEALED)
        if not self.identity.adopt(progress, self._carried_ids.pop(segment.segment_id, None), acked) and acked:
            self.identity.replaced(progress, "new_inode", segment.ino)
            acked = 0
            self.dirty = True
        if acked > segment.size:
            self._metrics.segments_shrunk.inc()
            log.error("checkpoint is past the end of its segment; shipping it again from the start",
                      extra={"segment": segment.segment_id, "checkpoint": acked, "size": segment.size})
            acked = 0
            self.dirty = True
        progress.acked = progress.read = acked
        progress.resync = acked > 0  # proven a line start only once byte acked-1 is read back
        if acked < segment.size:
            progress.unshipped_since = segment.mtime
        self.progress[segment.segment_id] = progress

    def shrunk(self, progress: SegmentProgress, size: int) -> None:
        """The file is shorter than what was read from it: say so loudly, ship it again from 0."""
        self._metrics.segments_shrunk.inc()
        log.error("segment shrank below its read offset; shipping it again from the start",
                  extra={"segment": progress.segment_id, "read_offset": progress.read, "size": size,
                         "acked": progress.acked})
        progress.restart()
        progress.unshipped_since = time.time()
        self.dirty = True

    def open(self, progress: SegmentProgress) -> int | None:
        """The segment's descriptor, or None (gone: a rescan is due; or failing: retried later)."""
        if progress.fd < 0:
            fd = self._io.run("read", progress.segment_id, self._io.ops.open_segment, progress.segment.path,
                              missing_ok=True)
            if fd is FAILED or fd is MISSING:
                return None
            ino = self.identity.fd_inode(progress, fd)
            if ino is None:
                os.close(fd)
                return None
            if progress.ino and ino != progress.ino:  # the name points at another file than was listed
                self.identity.replaced(progress, "new_inode", ino)
                self.dirty = True
            progress.ino, progress.fd = ino, fd
            if self.identity.file_changed(progress):
                self.identity.replaced(progress, "rewritten", ino)
                self.dirty = True
                self.needs_rescan = True
                return None
        return progress.fd

    def next_per_writer(self) -> list[SegmentProgress]:
        """Per writer, the first segment that still has bytes to read (or may grow) — and past any that
        cannot be read now (open or read failing: a bad block, EACCES), the next one too: one unreadable
        segment must not strand every later segment of its writer (review 3, finding 2). The failing one
        stays in the list: it is tried again when its backoff ends."""
        chosen: list[SegmentProgress] = []
        done_with: set[str] = set()
        for progress in sorted(self.progress.values(), key=lambda p: (p.segment.name.writer, p.segment.name.seq)):
            writer = progress.segment.name.writer
            if writer in done_with:
                continue
            if progress.is_final and progress.read >= progress.segment.size:
                progress.close_fd()
                continue
            chosen.append(progress)
            if not self._io.failing_on("read", progress.segment_id):
                done_with.add(writer)
        return chosen

    # -- acknowledgements, checkpoint, deletion ----------------------------------------------

    def advance(self, segment_id: str, size_now: int | None = None) -> None:
        progress = self.progress.get(segment_id)
        if progress is None:
            return
        before = progress.acked
        if progress.advance():
            self._metrics.bytes_shipped.inc(progress.acked - before)
            self.dirty = True
            if progress.acked >= (size_now if size_now is not None else progress.segment.size):
                progress.unshipped_since = None

    def maybe_checkpoint(self, now: float, *, force: bool = False) -> None:
        if not self.dirty or (not force and now - self.last_checkpoint < self.config.checkpoint_interval_seconds):
            return
        offsets = {**self._carried, **{sid: p.acked for sid, p in self.progress.items()}}
        identities = dict(self._carried_ids)
        for sid, progress in self.progress.items():
            identity = self.identity.to_checkpoint(progress)
            if identity is not None:
                identities[sid] = identity
        if self._io.run("checkpoint", "", self._io.ops.save_checkpoint, self._store, offsets,
                        identities) is FAILED:
            return  # stays dirty; retried after the backoff; nothing is deleted on the old checkpoint's word
        self.dirty = False
        self.last_checkpoint = now
        self._metrics.checkpoints.inc()
        self.update_gauges()

    def checkpoint_due_at(self) -> float:
        due = self.last_checkpoint + self.config.checkpoint_interval_seconds
        return max(due, self._io.retry_at("checkpoint"))

    def delete_finished(self) -> None:
        saved = self._store.offsets
        by_bytes = self.config.archive_dir is not None and self.config.archive_max_bytes is not None
        for segment_id, progress in list(self.progress.items()):
            size = progress.segment.size
            if not progress.is_done() or (size and saved.get(segment_id) != size):
                continue
            if not self.identity.may_delete(progress, size):
                self.needs_rescan = True
                self.dirty |= progress.acked == 0  # taken as a new file: its offset 0 is saved
                continue
            progress.close_fd()
            if self._io.run("delete", segment_id, self._remove, progress.segment, missing_ok=True) is FAILED:
                continue  # kept and tracked; tried again after the backoff
            self._io.forget("delete", segment_id)
            del self.progress[segment_id]
            self.dirty = True
            self._metrics.segments_deleted.inc()
            log.info("segment shipped", extra={"segment": segment_id, "bytes": size,
                                               "archived": self.config.archive_dir is not None})
            if by_bytes:
                self._prune_archive(now=True)  # after each one: the archive never holds a segment more
        self._prune_archive(now=False)

    def _remove(self, segment: Segment) -> None:
        if self.config.archive_dir is not None:
            self._io.ops.archive_segment(segment.path, self.config.archive_dir, compress=self.config.archive_gzip)
        else:
            self._io.ops.delete_segment(segment.path)

    def _prune_archive(self, *, now: bool) -> None:
        config = self.config
        if config.archive_dir is None:
            return
        if not now and time.monotonic() - self._last_prune < ARCHIVE_PRUNE_SECONDS:
            return
        removed = self._io.run("prune_archive", "", self._io.ops.prune_archive, config.archive_dir,
                               max_bytes=config.archive_max_bytes, max_age_seconds=config.archive_max_age_seconds)
        if removed is FAILED:
            return  # tried again after the backoff, not a minute later
        self._last_prune = time.monotonic()
        if removed:
            log.info("archive pruned", extra={"files": len(removed)})

    # -- state -------------------------------------------------------------------------------

    def is_empty(self, *, leave_copy_ins_after: float | None = None) -> bool:
        """Nothing tracked, nothing carried, no segment file left (and we could look) — but for segments
        shipped and checkpointed that are only kept because they may still be copied in, until at least
        ``leave_copy_ins_after`` (wall time; a drain whose deadline comes first leaves them: the next start
        deletes them, or ships what was added; --exit-when-empty waits for them)."""
        saved = self._store.offsets
        kept = {sid for sid, p in self.progress.items() if leave_copy_ins_after is not None
                and p.kept_for_copy_in and p.kept_until >= leave_copy_ins_after
                and p.is_done() and saved.get(sid) == p.segment.size}
        if len(kept) < len(self.progress) or self._carried or self.dirty:
            return False
        segments = self._io.run("list", "", self._io.ops.list_segments, self._dir, probe=False)
        return segments is not FAILED and all(s.segment_id in kept for s in segments)

    def bytes_behind(self) -> int:
        return sum(max(0, p.size - p.acked) for p in self.progress.values())

    def update_gauges(self) -> None:
        self._metrics.segments.set(len(self.progress))
        self._metrics.bytes_behind.set(self.bytes_behind())
        waiting = [p.unshipped_since for p in self.progress.values() if p.unshipped_since is not None]
        self._metrics.oldest_age.set(max(0.0, time.time() - min(waiting)) if waiting else 0.0)

    def close(self) -> None:
        for progress in self.progress.values():
            progress.close_fd()
        self._store.close()

