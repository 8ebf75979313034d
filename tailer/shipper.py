"""The shipper: follow the spool, batch lines to Kinesis, checkpoint, delete what is done.

Three layers, as in Litestream: :meth:`Shipper.run` (timing, wake-ups) →
:meth:`Shipper.ship_once` (one bounded step: collect acknowledgements, rescan,
read and pack, submit, checkpoint) → the per-segment reads and the deliveries.

Invariants:
- Memory is bounded by ``concurrency`` batches in flight, as many waiting, and
  the batches of one read chunk (``read_bytes``): never by the backlog on disk.
- The checkpoint only covers lines Kinesis acknowledged (or dead letters), over
  a contiguous prefix per segment; it is written atomically.
- A segment is deleted (or archived) only when it is sealed and the checkpoint
  *on disk* says every byte of it is acknowledged.

Not thread-safe: one loop thread owns all state; deliveries run in a thread pool
and hand back their batch through a future.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from spooler import (
    CheckpointStore,
    SegmentState,
    archive_segment,
    list_segments,
    prune_archive,
    read_lines,
    read_range,
    seal_orphan,
    write_dead_letter,
)

from .config import TailerConfig
from .delivery import Backoff, Delivery
from .errors import Aborted
from .metrics import TailerMetrics
from .packing import AggregatingPacker, Batch, PlainPacker, Span
from .partition import make_key_function
from .progress import SegmentProgress
from .shardmap import ShardMap
from .sink import Record, Sink

__all__ = ["Shipper"]

log = logging.getLogger(__name__)
_LINE = re.compile(rb"[^\n]*\n")
IDLE_MIN_SECONDS = 0.001
IDLE_MAX_SECONDS = 0.25
ARCHIVE_PRUNE_SECONDS = 60.0


class Shipper:
    def __init__(self, config: TailerConfig, sink: Sink, metrics: TailerMetrics | None = None,
                 shard_map: ShardMap | None = None) -> None:
        self.config = config
        self.metrics = metrics or TailerMetrics()
        self._dir = config.spool_dir
        self._store = CheckpointStore(self._dir)  # raises CheckpointLocked for a second tailer
        self._progress: dict[str, SegmentProgress] = {}
        self._packer = self._make_packer(sink, shard_map)
        self._ready: deque[Batch] = deque()
        self._inflight: dict[Future, Batch] = {}
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="put-records")
        self._wake = threading.Event()
        self._abort = threading.Event()
        self._delivery = Delivery(sink, self.metrics, backoff=Backoff(max_seconds=config.max_backoff_seconds),
                                  abort=self._abort, reject=self._dead_letter_record)
        self._rescan_requested = True
        self._last_scan = float("-inf")
        self._last_checkpoint = time.monotonic()
        self._last_prune = float("-inf")
        self._dirty = False
        self._idle_seconds = IDLE_MIN_SECONDS

    def _make_packer(self, sink: Sink, shard_map: ShardMap | None):
        key_fn = make_key_function(self.config.partition_key)
        if not self.config.aggregate:
            return PlainPacker(key_fn, self._dead_letter_line, max_batch_bytes=self.config.max_batch_bytes)
        if self.config.partition_key != "random" and shard_map is None:
            shard_map = ShardMap(sink.list_shards)
        return AggregatingPacker(key_fn, self._dead_letter_line, max_bytes=self.config.aggregate_max_bytes,
                                 shard_map=shard_map, max_batch_bytes=self.config.max_batch_bytes)

    # -- the loop ---------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def request_rescan(self) -> None:
        self._rescan_requested = True
        self._wake.set()

    def run(self, stop: threading.Event) -> int:
        """Ship until ``stop`` is set, then drain; returns the exit code."""
        log.info("tailer started", extra={"spool": str(self._dir), "stream": self.config.stream,
                                          "aggregate": self.config.aggregate})
        while not stop.is_set():
            worked = self.ship_once()
            self.metrics.beat()
            if not worked:
                self._wait(self._idle_timeout())
        return self.drain()

    def ship_once(self, *, draining: bool = False) -> bool:
        """One bounded step of work; True if anything moved."""
        now = time.monotonic()
        worked = self._collect_completed()
        if self._rescan_requested or now - self._last_scan >= self.config.poll_interval_seconds:
            self._rescan()
        read = self._read_and_pack()
        worked |= read
        self._idle_seconds = IDLE_MIN_SECONDS if read else min(IDLE_MAX_SECONDS, self._idle_seconds * 2)
        # Every step, not only idle ones: a steady trickle must not hold a half-full batch back.
        self._flush_if_lingering(now, immediately=draining and not read)
        worked |= self._submit_ready()
        self._maybe_checkpoint(now, force=draining)
        # Also here, not only after a checkpoint write: a segment shipped while active is
        # deletable the moment it is sealed, with nothing new to checkpoint.
        self._delete_finished()
        return worked

    def _idle_timeout(self) -> float:
        timeout = min(self._idle_seconds, self.config.poll_interval_seconds)
        if self._packer.pending_since is not None:
            linger_left = self._packer.pending_since + self.config.linger_seconds - time.monotonic()
            timeout = min(timeout, max(0.0, linger_left))
        if self._dirty:
            timeout = min(timeout, max(0.0, self._last_checkpoint + self.config.checkpoint_interval_seconds
                                       - time.monotonic()))
        return timeout

    def _wait(self, timeout: float) -> None:
        if timeout > 0:
            self._wake.wait(timeout)
        self._wake.clear()

    def drain(self) -> int:
        """Keep shipping until every segment is sealed and shipped, or the drain timeout."""
        deadline = time.monotonic() + self.config.drain_timeout_seconds
        log.info("tailer draining", extra={"timeout_seconds": self.config.drain_timeout_seconds})
        drained = False
        while time.monotonic() < deadline:
            self._rescan_requested = True
            worked = self.ship_once(draining=True)
            if self._is_drained():
                drained = True
                break
            if not worked:
                self._wait(min(0.05, max(0.0, deadline - time.monotonic())))
        if not drained:
            self._abort.set()
        self._pool.shutdown(wait=True)
        self._collect_completed()
        self._maybe_checkpoint(time.monotonic(), force=True)
        behind = self._bytes_behind()
        self._store.close()
        if drained:
            log.info("tailer drained", extra={"segments_left": 0})
            return 0
        log.error("tailer gave up at the drain timeout with data left",
                  extra={"bytes_behind": behind, "segments_left": len(self._progress)})
        return 1

    def _is_drained(self) -> bool:
        if self._inflight or self._ready or self._packer.pending_since is not None or self._dirty:
            return False
        return not self._progress and not list_segments(self._dir, probe=False)

    def close(self) -> None:
        """Stop without draining (tests and errors): abort deliveries, save the checkpoint."""
        self._abort.set()
        self._pool.shutdown(wait=True)
        self._collect_completed()
        self._maybe_checkpoint(time.monotonic(), force=True)
        for progress in self._progress.values():
            progress.close_fd()
        self._store.close()

    # -- segments --------------------------------------------------------------------------

    def _rescan(self) -> None:
        self._rescan_requested = False
        self._last_scan = time.monotonic()
        seen = set()
        for segment in list_segments(self._dir):
            if segment.state is SegmentState.ORPHANED:
                sealed = seal_orphan(segment)
                if sealed is None:
                    continue
                log.warning("orphaned segment sealed", extra={"segment": segment.segment_id, "bytes": sealed.size})
                segment = sealed
            seen.add(segment.segment_id)
            progress = self._progress.get(segment.segment_id)
            if progress is None:
                self._track(segment)
            else:
                progress.segment = segment
        for segment_id in [s for s in self._progress if s not in seen]:
            name = self._progress[segment_id].segment.name
            if (self._dir / name.active_name).exists() or (self._dir / name.sealed_name).exists():
                continue  # renamed while the directory was read (readdir may then miss it): still here
            progress = self._progress.pop(segment_id)
            progress.close_fd()
            self._dirty = True
            if progress.acked < progress.segment.size:
                log.error("segment vanished before it was shipped", extra={
                    "segment": segment_id, "bytes_unshipped": progress.segment.size - progress.acked})
        self._update_gauges()

    def _track(self, segment) -> None:
        acked = self._store.offsets.get(segment.segment_id, 0)  # the last checkpoint saved
        if acked > segment.size:
            log.error("checkpoint is past the end of its segment; shipping it again from the start",
                      extra={"segment": segment.segment_id, "checkpoint": acked, "size": segment.size})
            acked = 0
        progress = SegmentProgress(segment, acked=acked, read=acked)
        if acked < segment.size:
            progress.unshipped_since = segment.mtime
        self._progress[segment.segment_id] = progress

    def _read_and_pack(self) -> bool:
        """Read chunks, oldest segment of each writer first, while the ready queue runs low.

        So at most ``concurrency`` batches wait, plus what one read chunk turned into.
        """
        low = self.config.concurrency
        worked = False
        progressed = True
        while progressed and len(self._ready) < low:
            progressed = False
            for progress in self._next_per_writer():
                if self._read_segment(progress):
                    progressed = worked = True
                if len(self._ready) >= low:
                    break
        return worked

    def _next_per_writer(self) -> list[SegmentProgress]:
        """Per writer, the first segment that still has bytes to read (or may grow)."""
        chosen: dict[str, SegmentProgress] = {}
        for progress in sorted(self._progress.values(), key=lambda p: (p.segment.name.writer, p.segment.name.seq)):
            writer = progress.segment.name.writer
            if writer in chosen:
                continue
            if progress.is_final and progress.read >= progress.segment.size:
                progress.close_fd()
                continue
            chosen[writer] = progress
        return list(chosen.values())

    def _read_segment(self, progress: SegmentProgress) -> bool:
        try:
            fd = progress.open_fd()
            size = progress.current_size()
        except FileNotFoundError:
            self._rescan_requested = True
            return False
        if progress.read >= size:
            return False
        if progress.unshipped_since is None:
            progress.unshipped_since = time.time()
        chunk = read_lines(fd, progress.read, self.config.read_bytes)
        if chunk.oversized:
            self._dead_letter_range(progress, chunk.start, chunk.end, "line longer than the read window")
            return True
        if chunk.is_empty:
            if progress.is_final and size > progress.read:
                self._dead_letter_range(progress, progress.read, size, "torn write: no newline at the end")
                return True
            return False
        lines = _LINE.findall(chunk.data)
        span = progress.new_span(chunk.start, chunk.end, len(lines))
        self._packer.pack(span, lines)
        self._ready.extend(self._packer.take_full())
        return True

    # -- batches ---------------------------------------------------------------------------

    def _flush_if_lingering(self, now: float, *, immediately: bool) -> None:
        since = self._packer.pending_since
        if since is not None and (immediately or now - since >= self.config.linger_seconds):
            self._ready.extend(self._packer.flush())

    def _submit_ready(self) -> bool:
        worked = False
        while self._ready and len(self._inflight) < self.config.concurrency:
            batch = self._ready.popleft()
            future = self._pool.submit(self._delivery.deliver, batch)
            self._inflight[future] = batch
            future.add_done_callback(lambda _f: self._wake.set())
            worked = True
        self.metrics.inflight.set(len(self._inflight))
        return worked

    def _collect_completed(self) -> bool:
        done = [f for f in self._inflight if f.done()]
        for future in done:
            batch = self._inflight.pop(future)
            try:
                future.result()
            except Aborted:
                continue  # left unacknowledged: shipped again after the restart
            except Exception:
                log.exception("delivery failed unexpectedly; batch queued again")
                self._ready.appendleft(batch)
                continue
            self._acknowledge(batch)
        return bool(done)

    def _acknowledge(self, batch: Batch) -> None:
        self.metrics.lines_shipped.inc(batch.lines)
        touched = set()
        for span, lines in batch.spans.items():
            span.pending -= lines
            touched.add(span.segment_id)
        for segment_id in touched:
            self._advance(segment_id)

    def _advance(self, segment_id: str) -> None:
        progress = self._progress.get(segment_id)
        if progress is None:
            return
        before = progress.acked
        if progress.advance():
            self.metrics.bytes_shipped.inc(progress.acked - before)
            self._dirty = True
            size = progress.current_size() if progress.fd >= 0 else progress.segment.size
            if progress.acked >= size:
                progress.unshipped_since = None

    # -- dead letters ----------------------------------------------------------------------

    def _dead_letter_line(self, span: Span, line: bytes, reason: str) -> None:
        tag = hashlib.blake2b(line, digest_size=6).hexdigest()
        write_dead_letter(self._dir, span.segment_id, span.start, [line], reason, tag=tag)
        self.metrics.dead_letters.labels("too_large").inc()
        log.warning("line dead-lettered", extra={"segment": span.segment_id, "reason": reason})

    def _dead_letter_range(self, progress: SegmentProgress, start: int, end: int, reason: str) -> None:
        write_dead_letter(self._dir, progress.segment_id, start, read_range(progress.fd, start, end), reason)
        progress.new_span(start, end, 0)
        self._advance(progress.segment_id)
        self.metrics.dead_letters.labels("torn" if "torn" in reason else "too_large").inc()
        log.warning("bytes dead-lettered", extra={"segment": progress.segment_id, "offset": start,
                                                  "bytes": end - start, "reason": reason})

    def _dead_letter_record(self, batch: Batch, record: Record, reason: str) -> None:
        """Called from a delivery thread for a record Kinesis rejects for good."""
        data = record[0]
        first = next(iter(batch.spans), None)
        segment_id, offset = (first.segment_id, first.start) if first else ("unknown", 0)
        tag = "rejected-" + hashlib.blake2b(data, digest_size=6).hexdigest()
        write_dead_letter(self._dir, segment_id, offset, [data], reason, tag=tag)
        self.metrics.dead_letters.labels("rejected").inc()

    # -- checkpoint and deletion ------------------------------------------------------------

    def _maybe_checkpoint(self, now: float, *, force: bool = False) -> None:
        if not self._dirty or (not force and now - self._last_checkpoint < self.config.checkpoint_interval_seconds):
            return
        self._store.save({sid: p.acked for sid, p in self._progress.items()})
        self._dirty = False
        self._last_checkpoint = now
        self.metrics.checkpoints.inc()
        self._update_gauges()

    def _delete_finished(self) -> None:
        saved = self._store.offsets
        for segment_id, progress in list(self._progress.items()):
            if not progress.is_done() or saved.get(segment_id) != progress.segment.size:
                continue
            progress.close_fd()
            try:
                if self.config.archive_dir is not None:
                    archive_segment(progress.segment.path, self.config.archive_dir, compress=self.config.archive_gzip)
                else:
                    progress.segment.path.unlink()
            except FileNotFoundError:
                pass
            del self._progress[segment_id]
            self._dirty = True
            self.metrics.segments_deleted.inc()
            log.info("segment shipped", extra={"segment": segment_id, "bytes": progress.segment.size,
                                               "archived": self.config.archive_dir is not None})
        self._prune_archive()

    def _prune_archive(self) -> None:
        config = self.config
        if config.archive_dir is None or time.monotonic() - self._last_prune < ARCHIVE_PRUNE_SECONDS:
            return
        self._last_prune = time.monotonic()
        removed = prune_archive(config.archive_dir, max_bytes=config.archive_max_bytes,
                                max_age_seconds=config.archive_max_age_seconds)
        if removed:
            log.info("archive pruned", extra={"files": len(removed)})

    def _bytes_behind(self) -> int:
        return sum(max(0, p.segment.size - p.acked) for p in self._progress.values())

    def _update_gauges(self) -> None:
        self.metrics.segments.set(len(self._progress))
        self.metrics.bytes_behind.set(self._bytes_behind())
        waiting = [p.unshipped_since for p in self._progress.values() if p.unshipped_since is not None]
        self.metrics.oldest_age.set(max(0.0, time.time() - min(waiting)) if waiting else 0.0)

