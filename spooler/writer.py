"""SpoolWriter: the append side of the spool, shared by a receiver worker's threads.

Invariants:
- Each append is one ``os.write`` on an ``O_APPEND`` descriptor, so a batch of
  events lands whole. A short write is finished with a second write; if that
  fails too, the torn segment is sealed (never shrunk: a tailer may have read it)
  and the next append opens a new one.
- A sealed segment never grows: appends and seals take the same lock.
- The active segment is ``flock``ed from before it appears under its name until
  after it is renamed to ``.ndjson``; an unlocked ``.active`` means a dead writer.
- A failed step while creating a segment leaves nothing behind and never blocks
  the next attempt (each attempt takes a new sequence number).
- Nothing is reported durable that no successful fsync covered; a failed fsync
  seals its segment and every waiter for its bytes gets :class:`AppendUncertain`
  (see :mod:`spooler.group_commit`).
- An append either lands in full, or raises :class:`AppendRefused` with nothing
  written, or :class:`AppendUncertain` (bytes may be there; durability unknown).

Thread-safe. A background thread seals segments by age, fsyncs on the
``interval`` policy, re-measures capacity and clears away dead writers' hidden
files; nothing on the append path waits for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .capacity import CapacityGuard
from .config import (
    CAPACITY_RECHECK_SECONDS,
    CAPACITY_SCAN_INTERVAL_SECONDS,
    READY_HEADROOM_FRACTION,
    READY_HEADROOM_MIN_BYTES,
    RECOVERY_PROBE_SECONDS,
    RETRY_AFTER_SECONDS,
    STALE_SCAN_INTERVAL_SECONDS,
    FsyncPolicy,
    WriterConfig,
)
from .errors import AppendUncertain, SpoolFull, SpoolUnwritable
from .group_commit import FsyncFailed, GroupCommit
from .housekeeping import Housekeeper, Task
from .naming import SegmentName
from .segment_files import (
    ActiveSegment,
    create_segment,
    describe_os_error,
    rename_sealed,
    write_rest,
)
from .segments import remove_stale_creating

__all__ = ["SpoolWriter", "WriterStats", "append_all"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriterStats:
    appends: int
    bytes_appended: int
    segments_sealed: int
    fsyncs: int
    spool_bytes: int
    free_bytes: int
    fsync_failures: int = 0


class SpoolWriter:
    """Appends complete NDJSON lines to this writer's active segment."""

    def __init__(self, config: WriterConfig) -> None:
        self.config = config
        self._dir = config.spool_dir
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # The append fast path reads only these plain attributes (see append()).
        self._fd = -1  # the active segment's descriptor, -1 when none is open
        # Bytes the fast path may append before anything needs a decision: the least of the
        # capacity room and the active segment's remaining size; 0 forces the slow path.
        self._budget = 0
        self._fsync_failed: object = None  # set (without the lock) by group commit when an fsync fails
        self._seq = 0  # total bytes appended: the group-commit sequence
        self._seq_at_grant = 0  # _seq when the capacity guard last took our appends into account
        self._appends = 0
        self._always = config.fsync is FsyncPolicy.ALWAYS
        self._active: ActiveSegment | None = None
        self._next_seq = 1
        self._sealed = 0
        self._last_error: str | None = None  # the last write error, until a write succeeds
        self._refused_bytes = 0  # size of the last append refused for capacity, until one lands
        self._closed = False
        self._capacity = CapacityGuard(self._dir, config.max_spool_bytes, config.min_free_bytes)
        self._commit = GroupCommit(self._sync_target, self._note_fsync_failure)
        self._remove_stale_creating()
        self._housekeeper = Housekeeper(f"spool-writer-{config.writer_id}", self._housekeeping_tasks())
        self._housekeeper.start()

    # -- the append path -------------------------------------------------------------

    def append(self, data: bytes, *, sync: bool = False) -> None:
        """Append complete lines (each ending in ``\\n``) in one write.

        With ``sync`` (or the ``always`` policy) return only once they are fsynced.
        Raises :class:`SpoolFull` or :class:`SpoolUnwritable` (nothing written), or
        :class:`AppendUncertain` (written, but a fsync failed or the write was torn).
        """
        n = len(data)
        if not n or data[-1] != 10:
            raise ValueError("append takes complete lines ending in a newline")
        with self._lock:
            if n > self._budget or self._fsync_failed is not None:
                fd = self._prepare_slow(n)
            else:
                fd = self._fd
            try:
                written = os.write(fd, data)
            except OSError as exc:
                self._refuse_write(exc)
            if written != n:
                self._finish_short_write(fd, data, written)
            self._budget -= n
            self._seq = seq = self._seq + n
            self._appends += 1
        if sync or self._always:
            self._wait_durable(seq)

    def _claim_locked(self, nbytes: int) -> int:
        """The descriptor an append of ``nbytes`` goes to, every check passed (as in append)."""
        if nbytes > self._budget or self._fsync_failed is not None:
            return self._prepare_slow(nbytes)
        return self._fd

    def _write_locked(self, fd: int, data: bytes | bytearray) -> int:
        """The write of append (there inlined: the hot path); returns the group-commit sequence."""
        n = len(data)
        try:
            written = os.write(fd, data)
        except OSError as exc:
            self._refuse_write(exc)
        if written != n:
            self._finish_short_write(fd, data, written)
        self._budget -= n
        self._seq = seq = self._seq + n
        self._appends += 1
        return seq

    def _prepare_slow(self, nbytes: int) -> int:
        """Every decision the fast path skips: closed, a failed fsync, capacity, sealing, opening."""
        self._budget = 0  # stays 0 (slow path next time) unless everything below succeeds
        if self._closed:
            raise SpoolUnwritable("writer is closed", retry_after_seconds=RETRY_AFTER_SECONDS)
        failed, self._fsync_failed = self._fsync_failed, None
        if failed is not None and failed is self._active:
            self._seal_locked()
        try:
            self._check_capacity(nbytes)
        except OSError as exc:
            self._refuse_write(exc)
        active = self._active
        segment_used = self._seq - active.start_seq if active else 0
        if active is not None and segment_used and segment_used + nbytes > self.config.segment_bytes:
            self._seal_locked()
        if self._active is None:
            self._open_segment()
        # Pending trouble is cleared optimistically; a failing write sets it again.
        self._last_error = None
        self._refused_bytes = 0
        segment_left = self.config.segment_bytes - (self._seq - self._active.start_seq)
        self._budget = max(0, min(self._capacity.room(), segment_left))
        return self._fd

    def _check_capacity(self, nbytes: int) -> None:
        self._sync_capacity()
        why = self._capacity.refusal(nbytes)
        if why is not None and time.monotonic() - self._capacity.scanned_at > CAPACITY_RECHECK_SECONDS:
            self._capacity.rescan()
            why = self._capacity.refusal(nbytes)
        if why is not None:
            self._refused_bytes = nbytes
            raise SpoolFull(f"spool full: {why}", retry_after_seconds=RETRY_AFTER_SECONDS)

    def _sync_capacity(self) -> None:
        """Tell the capacity guard about the bytes appended on the fast path since last time."""
        self._capacity.record_append(self._seq - self._seq_at_grant)
        self._seq_at_grant = self._seq

    def _finish_short_write(self, fd: int, data: bytes, written: int) -> None:
        """A short write (disk filling up mid-way): write the rest, or seal the torn segment.

        Never cut it back: a tailer may already have read past where a truncation
        would end, and would then skip or misread what comes after. Sealed, the
        torn tail is dead-lettered by the tailer like any torn write.
        """
        done, cause = write_rest(fd, data, written)
        if cause is None:
            log.warning("short write finished", extra={"bytes": len(data), "first_write": written})
            return
        self._seq += done  # the torn bytes are in the segment; its size accounting includes them
        self._last_error = f"short write: {done} of {len(data)} bytes ({describe_os_error(cause)})"
        log.error("short write; segment sealed", extra={
            "segment": self._active.name.segment_id if self._active else None, "error": self._last_error})
        self._seal_locked()
        raise AppendUncertain(f"spool write torn: {self._last_error}; the complete events of it may still "
                              "be delivered", retry_after_seconds=RETRY_AFTER_SECONDS) from cause

    def _refuse_write(self, exc: OSError) -> None:
        self._last_error = describe_os_error(exc)
        self._budget = 0
        log.error("spool write failed", extra={"error": self._last_error})
        raise SpoolUnwritable(
            f"spool unwritable: {self._last_error}", retry_after_seconds=RETRY_AFTER_SECONDS
        ) from exc

    def _wait_durable(self, seq: int) -> None:
        try:
            self._commit.wait_durable(seq)
        except FsyncFailed as exc:
            with self._lock:
                self._after_fsync_failure(exc)
            raise AppendUncertain(
                f"spool fsync failed ({describe_os_error(exc)}): the events are written but may not survive a "
                "machine crash", retry_after_seconds=RETRY_AFTER_SECONDS) from exc

    def _note_fsync_failure(self, token: object) -> None:
        """Group commit's callback (no lock held, must not block): the next append seals first."""
        self._fsync_failed = token

    def _after_fsync_failure(self, exc: FsyncFailed) -> None:
        # Not a reason to go unready: the next append goes to a new segment (and fails there if
        # the disk is really broken).
        if exc.token is not None and exc.token is self._active:
            log.error("segment fsync failed; sealing it",
                      extra={"segment": self._active.name.segment_id, "error": self._last_error})
            self._seal_locked()

    # -- segments --------------------------------------------------------------------

    def _open_segment(self) -> None:
        name = SegmentName(self.config.writer_id, self._next_seq, sealed=False)
        self._next_seq += 1  # taken even if this attempt fails: a leftover can never block the next
        try:
            fd = create_segment(self._dir, name, durable=self.config.fsync is not FsyncPolicy.NEVER)
        except OSError as exc:
            self._refuse_write(exc)
        self._active = ActiveSegment(name, fd, self._seq, time.monotonic())
        self._fd = fd
        log.info("segment opened", extra={"segment": name.segment_id})

    def _seal_locked(self) -> None:
        active = self._active
        if active is None:
            return
        self._budget = 0
        end_seq = self._seq
        try:
            self._commit.sync_segment(active.fd, end_seq, active)
        except FsyncFailed as exc:
            log.error("segment fsync failed while sealing", extra={"segment": active.name.segment_id,
                                                                   "error": str(exc)})
        finally:
            self._commit.close_poison(active, end_seq)
        # Only now: everything in it is durable or poisoned (the invariant group commit relies on).
        self._active, self._fd = None, -1
        if rename_sealed(self._dir, active.name):
            self._sealed += 1
            log.info("segment sealed", extra={"segment": active.name.segment_id,
                                              "bytes": end_seq - active.start_seq})
        # A group-commit leader may be fsyncing this descriptor right now.
        self._commit.wait_idle_then(lambda: os.close(active.fd))

    def _sync_target(self) -> tuple[int, int | None, object]:
        seq = self._seq
        active = self._active
        return seq, (active.fd if active is not None else None), active

    def seal(self) -> None:
        """Seal the active segment now (if it holds anything)."""
        with self._lock:
            self._seal_locked()

    def _remove_stale_creating(self) -> None:
        try:
            remove_stale_creating(self._dir)
        except OSError as exc:
            log.warning("stale segment files not checked", extra={"error": str(exc)})

    # -- background work ---------------------------------------------------------------

    def _housekeeping_tasks(self) -> list[Task]:
        config = self.config
        tasks = [
            Task("capacity and age", CAPACITY_SCAN_INTERVAL_SECONDS, self._rescan_capacity_and_age),
            Task("stale creates", STALE_SCAN_INTERVAL_SECONDS, self._remove_stale_creating),
            Task("recovery probe", RECOVERY_PROBE_SECONDS, self._probe_writable),
        ]
        if config.fsync is FsyncPolicy.INTERVAL:
            tasks.append(Task("interval fsync", config.fsync_interval_seconds, self._fsync_interval))
        return tasks

    def _fsync_interval(self) -> None:
        if self._commit.durable_seq < self._seq:
            try:
                self._commit.sync_now()
            except FsyncFailed as exc:
                with self._lock:
                    self._after_fsync_failure(exc)

    def _probe_writable(self) -> None:
        """After a write error, find out without traffic whether the disk takes writes again.

        Readiness is off while ``_last_error`` is set, so a load balancer sends
        nothing that could clear it: retire the segment the error happened on
        (nothing of a failed write is in it) and open a fresh one. Success clears
        the error; failure leaves nothing behind and is tried again later.
        """
        if self._last_error is None:
            return
        with self._lock:
            if self._last_error is None or self._closed:
                return
            self._seal_locked()
            with contextlib.suppress(SpoolUnwritable):
                self._open_segment()
                self._last_error = None
                log.info("spool writable again")

    def _rescan_capacity_and_age(self) -> None:
        before = self._seq
        usage = self._capacity.measure()
        with self._lock:
            self._capacity.update(usage, self._seq - before)
            self._seq_at_grant = self._seq
            self._budget = 0  # re-decide with the fresh numbers on the next append
            active = self._active
            if active is not None and time.monotonic() - active.opened_at >= self.config.segment_age_seconds:
                self._seal_locked()

    # -- state for readiness, metrics and benchmarks ----------------------------------

    def refusal(self) -> str | None:
        """Why this spool should not get traffic now (for ``/readyz``), or ``None``.

        Unready when appends fail, and also when the spool is within a small
        headroom of its cap: then every writer of the spool agrees, whichever
        one a probe reaches, and traffic moves before requests are refused.
        """
        cap = self.config.max_spool_bytes
        headroom = min(max(READY_HEADROOM_MIN_BYTES, int(cap * READY_HEADROOM_FRACTION)), cap // 4)
        with self._lock:
            if self._closed:
                return "writer closed"
            if self._last_error is not None:
                return f"spool unwritable: {self._last_error}"
            self._sync_capacity()
            why = self._capacity.refusal(max(self._refused_bytes, headroom, 1))
            return f"spool full: {why}" if why else None

    def stats(self) -> WriterStats:
        with self._lock:
            self._sync_capacity()
            return WriterStats(
                appends=self._appends,
                bytes_appended=self._seq,
                segments_sealed=self._sealed,
                fsyncs=self._commit.fsync_count,
                spool_bytes=self._capacity.spool_bytes,
                free_bytes=self._capacity.free_bytes,
                fsync_failures=self._commit.failure_count,
            )

    def close(self) -> None:
        """Stop the background thread and seal the active segment. Idempotent."""
        self._housekeeper.stop()
        with self._lock:
            if self._closed:
                return
            with contextlib.suppress(OSError):
                self._seal_locked()
            self._closed = True

    def __enter__(self) -> SpoolWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def append_all(parts: Sequence[tuple[SpoolWriter, bytes | bytearray]], *, sync: bool = False) -> None:
    """Append each part to its own writer's spool (a route's), as one decision for all of them.

    Every writer's lock is held (in one order for every caller, so two calls never
    deadlock) from the first check to the last write: capacity and writability are
    checked for every part before anything is written, and no other append of this
    process can take the room in between. So :class:`SpoolFull` or
    :class:`SpoolUnwritable` always means that nothing of any part was written.
    Once a part is written, a later part the disk refuses (or cuts short) raises
    :class:`AppendUncertain`: some parts are in their spools, and will be shipped.
    With ``sync`` (or a writer's ``always`` policy) it returns once every part is durable.
    """
    if len(parts) == 1:
        writer, data = parts[0]
        writer.append(data, sync=sync)
        return
    for _writer, data in parts:
        if not data or data[-1] != 10:
            raise ValueError("append takes complete lines ending in a newline")
    ordered = sorted({id(writer): writer for writer, _ in parts}.values(), key=id)
    if len(ordered) != len(parts):
        raise ValueError("append_all takes one part per writer")
    seqs = []
    with contextlib.ExitStack() as held:
        for writer in ordered:
            held.enter_context(writer._lock)
        fds = [writer._claim_locked(len(data)) for writer, data in parts]  # may refuse: nothing written yet
        for index, ((writer, data), fd) in enumerate(zip(parts, fds, strict=True)):
            try:
                seqs.append(writer._write_locked(fd, data))
            except SpoolUnwritable as exc:  # the disk refused this part's write (a short one is AppendUncertain)
                if index == 0:
                    raise
                raise AppendUncertain(f"{index} of {len(parts)} parts written, then: {exc}",
                                      retry_after_seconds=exc.retry_after_seconds) from exc
    for (writer, _data), seq in zip(parts, seqs, strict=True):
        if sync or writer._always:
            writer._wait_durable(seq)
