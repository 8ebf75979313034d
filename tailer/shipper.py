"""The shipper: follow the spool, batch lines to the sink, checkpoint, delete what is done.

Three layers, as in Litestream: :meth:`Shipper.run` (timing, wake-ups) →
:meth:`Shipper.ship_once` (one bounded step: collect acknowledgements, rescan,
read and pack, submit, checkpoint, delete) → the per-segment reads and the
deliveries. Segments, the checkpoint and deletion are :mod:`tailer.tracker`'s.

Invariants:
- Memory is bounded by ``concurrency`` batches in flight, as many waiting, the
  batches of one read chunk (``read_bytes``) and the open aggregates (at most
  ``OPEN_AGGREGATES_MAX_BYTES``): never by the backlog on disk or the number of keys.
- No I/O error stops the loop (:mod:`tailer.spoolio`): the failing operation is
  logged, counted and retried after a backoff while everything else goes on; a
  line whose dead letter cannot be written yet stays unacknowledged.

Not thread-safe: one loop thread owns all state; deliveries run in a thread pool
and hand back their batch through a future.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait

from .config import TailerConfig
from .deadletters import DeadLetters
from .delivery import Backoff, Delivery
from .destination import make_packer
from .errors import Aborted
from .held import HeldRecords
from .metrics import TailerMetrics
from .packing import Batch
from .progress import SegmentProgress
from .reading import SegmentReader
from .shardmap import ShardMap
from .sink import Sink
from .spoolio import FAILED, GuardedSpool, SpoolOps
from .tracker import SegmentTracker

__all__ = ["Shipper"]

log = logging.getLogger(__name__)
IDLE_MIN_SECONDS = 0.001
IDLE_MAX_SECONDS = 0.25
GAUGE_SECONDS = 1.0
STOP_GRACE_SECONDS = 2.0  # for deliveries to notice the abort, after their calls were ended


class Shipper:
    def __init__(self, config: TailerConfig, sink: Sink, metrics: TailerMetrics | None = None,
                 shard_map: ShardMap | None = None, ops: SpoolOps | None = None) -> None:
        self.config = config
        self.metrics = metrics or TailerMetrics()
        self._dir = config.spool_dir
        self._ops = ops or SpoolOps()
        self._io = GuardedSpool(self._ops, self.metrics, max_backoff_seconds=config.max_backoff_seconds)
        self._tracker = SegmentTracker(config, self.metrics, self._io)
        self._dead = DeadLetters(self._dir, self._io, self.metrics, max_queued_bytes=config.read_bytes,
                                 released=self._tracker.advance)
        self._packer, placement = self._make_packer(sink, shard_map)
        self._reader = SegmentReader(self._tracker, self._io, self._ops, self._dead, self._packer, config.read_bytes)
        self._ready: deque[Batch] = deque()
        self._held = HeldRecords(config.permanent_retry_seconds, max_bytes=2 * config.read_bytes)
        self._inflight: dict[Future, Batch] = {}
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="put-records")
        self._wake = threading.Event()
        self._abort = threading.Event()
        self._delivery = Delivery(sink, self.metrics, backoff=Backoff(max_seconds=config.max_backoff_seconds),
                                  abort=self._abort, reject=self._dead.record,
                                  permanent_retry_seconds=config.permanent_retry_seconds, placement=placement)
        self._rescan_requested = True
        self._last_scan = float("-inf")
        self._idle_seconds = IDLE_MIN_SECONDS
        self._closed = False
        self._gauges_at = float("-inf")
        self._waiting_for: list[str] | None = None
        self._more_now = True  # set by ship_once: run() passes again at once only when more may move now

    def _make_packer(self, sink: Sink, shard_map: ShardMap | None):
        """The destination's packer (tailer/destination.py): this loop knows no service."""
        return make_packer(self.config, sink, self._dead.line, shard_map)

    # -- the loop ---------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def request_rescan(self) -> None:
        self._rescan_requested = True
        self._wake.set()

    def run(self, stop: threading.Event) -> int:
        """Ship until ``stop`` is set, then drain; returns the exit code.

        With ``exit_when_empty`` it also stops, with 0, as soon as every segment is sealed,
        shipped, checkpointed and deleted and no writer holds the spool any more (the scale-down
        rescue of a spool nobody writes to any more): a live writer — with an active segment, or
        between two segments — keeps it running until it closes.
        """
        exit_when_empty = self.config.exit_when_empty
        log.info("tailer started", extra={"spool": str(self._dir), "stream": self.config.stream,
                                          "destination": self.config.destination, "route": self.config.route,
                                          "aggregate": self.config.aggregate, "exit_when_empty": exit_when_empty})
        while not stop.is_set():
            worked = self.ship_once()
            self.metrics.beat()
            if exit_when_empty and not worked and self._is_drained() and not self._writers_alive():
                log.info("spool empty; exiting", extra={"spool": str(self._dir)})
                return self._finish(drained=True)
            if not worked or not self._more_now:
                self._wait(self._idle_timeout())
        return self.drain()

    def ship_once(self, *, draining: bool = False) -> bool:
        """One bounded step of work; True if anything moved."""
        now = time.monotonic()
        worked = self._collect_completed()
        due = now - self._last_scan >= self.config.poll_interval_seconds
        if self._rescan_requested or self._tracker.needs_rescan or due:
            self._rescan()
        worked |= self._dead.flush()
        read = self._read_and_pack()
        worked |= read
        self._idle_seconds = IDLE_MIN_SECONDS if read else min(IDLE_MAX_SECONDS, self._idle_seconds * 2)
        # Every step, not only idle ones: a steady trickle must not hold a half-full batch back.
        self._flush_if_lingering(now, immediately=draining and not read)
        worked |= self._submit_ready()
        self._tracker.maybe_checkpoint(now, force=draining)
        if now - self._gauges_at >= GAUGE_SECONDS:  # fresh also while nothing is acknowledged or listed
            self._gauges_at = now
            self._tracker.update_gauges()
            self._count_missing_keys()
        # Also here, not only after a checkpoint write: a segment shipped while active is
        # deletable the moment it is sealed, with nothing new to checkpoint.
        self._tracker.delete_finished()
        # Whether another pass right away could move more. Not after a pass that only took completions and
        # submitted while enough batches still wait: the next completion (its callback sets the wake event),
        # a rescan request or a timer (_idle_timeout) wakes the loop. That pass found nothing ~400 times per
        # 200,000 plain lines, at ~100 us of the loop's CPU each (docs/performance.md, round three).
        self._more_now = (read or len(self._ready) < self.config.concurrency or self._rescan_requested
                          or self._tracker.needs_rescan or bool(self._dead))
        return worked

    def _idle_timeout(self) -> float:
        now = time.monotonic()
        timeout = min(self._idle_seconds, self.config.poll_interval_seconds)
        if self._packer.pending_since is not None:
            timeout = min(timeout, max(0.0, self._packer.pending_since + self.config.linger_seconds - now))
        if self._tracker.dirty:
            timeout = min(timeout, max(0.0, self._tracker.checkpoint_due_at() - now))
        held_due = self._held.next_due_at()
        if held_due is not None:
            timeout = min(timeout, max(0.0, held_due - now))
        return timeout

    def _wait(self, timeout: float) -> None:
        if timeout > 0:
            self._wake.wait(timeout)
        self._wake.clear()

    def drain(self) -> int:
        """Keep shipping until every segment is sealed and shipped, or the drain timeout."""
        deadline = time.monotonic() + self.config.drain_timeout_seconds
        log.info("tailer draining", extra={"timeout_seconds": self.config.drain_timeout_seconds})
        while time.monotonic() < deadline:
            self._rescan_requested = True
            worked = self.ship_once(draining=True)
            if self._is_drained(deadline=deadline):
                return self._finish(drained=True)
            if not worked:
                self._wait(min(0.05, max(0.0, deadline - time.monotonic())))
        return self._finish(drained=False)

    def _finish(self, *, drained: bool) -> int:
        self._closed = True
        if not drained:
            self._stop_deliveries()
        else:
            self._pool.shutdown(wait=True)
        self._collect_completed()
        self._count_missing_keys()
        self._tracker.maybe_checkpoint(time.monotonic(), force=True)
        behind = self._tracker.bytes_behind()
        segments_left = len(self._tracker.progress)
        self._tracker.close()
        if drained:
            log.info("tailer drained", extra={"segments_left": 0})
            return 0
        log.error("tailer gave up at the drain timeout with data left",
                  extra={"bytes_behind": behind, "segments_left": segments_left})
        return 1

    def _writers_alive(self) -> bool:
        """A writer still holds the spool (spooler/presence.py), perhaps between two segments: an empty
        spool is not drained yet. Logged once per writer set; a listing that fails counts as alive."""
        alive = self._io.run("list", "", self._ops.live_writers, self._dir)
        if alive is FAILED or alive:
            if alive and alive != self._waiting_for:
                log.info("spool empty but writers are alive; waiting for them to close",
                         extra={"spool": str(self._dir), "writers": alive})
            self._waiting_for = alive if alive else self._waiting_for
            self._wait(min(0.25, self.config.poll_interval_seconds))
            return True
        return False

    def _is_drained(self, *, deadline: float | None = None) -> bool:
        """``deadline`` (monotonic, a drain's): a copied-in segment whose grace outlasts it is left behind."""
        if self._inflight or self._ready or self._dead or self._held or self._packer.pending_since is not None:
            return False
        after = None if deadline is None else time.time() + max(0.0, deadline - time.monotonic())
        return self._tracker.is_empty(leave_copy_ins_after=after)

    def close(self) -> None:
        """Stop without draining (tests and errors): abort deliveries, save the checkpoint."""
        if self._closed:
            return
        self._closed = True
        self._stop_deliveries()
        self._collect_completed()
        self._count_missing_keys()
        self._tracker.maybe_checkpoint(time.monotonic(), force=True)
        self._tracker.close()

    def _stop_deliveries(self) -> None:
        """Abort every delivery and end its call now; never wait for a hung thread past a short grace
        (its batch stays unacknowledged: shipped again after the restart)."""
        self._abort.set()
        self._delivery.interrupt()
        self._pool.shutdown(wait=False, cancel_futures=True)
        futures_wait(list(self._inflight), timeout=STOP_GRACE_SECONDS)

    # -- reading -----------------------------------------------------------------------------

    def _rescan(self) -> None:
        self._last_scan = time.monotonic()
        self._tracker.needs_rescan = False
        self._rescan_requested = not self._tracker.rescan()  # a failed listing is tried again (backed off)

    def _read_and_pack(self) -> bool:
        """Read chunks, oldest segment of each writer first, while the ready queue runs low.

        So at most ``concurrency`` batches wait, plus what one read chunk turned into.
        """
        low = self.config.concurrency
        worked = False
        progressed = True
        while progressed and len(self._ready) < low and not self._dead.backed_up() and not self._held.backed_up():
            progressed = False
            for progress in self._tracker.next_per_writer():
                if self._reader.read(progress):
                    progressed = worked = True
                self._ready.extend(self._packer.take_full())
                if len(self._ready) >= low or self._dead.backed_up():
                    break
        return worked

    # -- batches ---------------------------------------------------------------------------

    def _flush_if_lingering(self, now: float, *, immediately: bool) -> None:
        since = self._packer.pending_since
        if since is not None and (immediately or now - since >= self.config.linger_seconds):
            self._ready.extend(self._packer.flush())

    def _submit_ready(self) -> bool:
        worked = False
        self._ready.extendleft(reversed(self._held.take_due()))
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
            except (Aborted, CancelledError):
                continue  # left unacknowledged: shipped again after the restart
            self._acknowledge(batch)
        return bool(done)

    def _acknowledge(self, batch: Batch) -> None:
        """Release the lines of a delivered batch (all but those of records held out of it)."""
        held = self._held.hold_out(batch) if batch.held else None
        self.metrics.lines_shipped.inc(batch.lines - batch.rejected_lines - (held.lines if held else 0))
        touched = set()
        for span, lines in batch.spans.items():
            span.pending -= lines - (held.spans.get(span, 0) if held else 0)
            touched.add(span.segment_id)
        for segment_id in touched:
            self._tracker.advance(segment_id)

    def _count_missing_keys(self) -> None:
        self.metrics.count_missing_keys(getattr(getattr(self._packer, "_key_fn", None), "missing", 0))

    # -- for tests and tools -----------------------------------------------------------------

    @property
    def _progress(self) -> dict[str, SegmentProgress]:
        return self._tracker.progress

    @property
    def _dirty(self) -> bool:
        return self._tracker.dirty
