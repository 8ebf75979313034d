"""SpoolWriter: the append side of the spool, shared by a receiver worker's threads.

Invariants:
- Each append is one ``write(2)`` on an ``O_APPEND`` descriptor, so a batch of
  events lands whole (made with the GIL held while the disk is quick:
  :mod:`spooler.append_write`). A short write is finished with a second write; if that
  fails too, the torn segment is sealed (never shrunk: a tailer may have read it)
  and the next append opens a new one.
- A sealed segment never grows: appends and seals take the same lock.
- The active segment is ``flock``ed from before it appears under its name until
  after it is renamed to ``.ndjson``; an unlocked ``.active`` means a dead writer.
- A failed step while creating a segment leaves nothing behind and never blocks
  the next attempt (each attempt takes a new sequence number).
- Nothing is reported durable that no successful fsync covered; a failed fsync
  seals its segment (without fsyncing it again) and every waiter for its bytes
  gets :class:`AppendUncertain` (see :mod:`spooler.group_commit`). The writer is
  unready from then on until a disk probe (a page written and fdatasynced) or an
  fsync of a later segment succeeds.
- ``close`` of a descriptor never fails an append: by then its data is fsynced or
  known lost.
- An append either lands in full, or raises :class:`AppendRefused` with nothing
  written, or :class:`AppendUncertain` (bytes may be there; durability unknown).

Thread-safe. A background thread seals segments by age, re-measures capacity,
probes a failed disk and clears away dead writers' hidden files; the
``interval`` fsync has a thread of its own, so a slow scan never delays it.
Nothing on the append path waits for either.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .append_write import AppendWrite
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
from .disk_trouble import DiskTrouble
from .errors import AppendUncertain, SpoolFull, SpoolUnwritable
from .fsutil import close_settled
from .group_commit import FsyncFailed, GroupCommit
from .housekeeping import Housekeeper, Task
from .naming import SegmentName
from .presence import hold_presence, release_presence
from .segment_files import (
    ActiveSegment,
    create_segment,
    describe_os_error,
    mark_sealed,
    probe_disk,
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
        self._write = AppendWrite()  # write(2) keeping the GIL while the disk is quick (append_write.py)
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
        self._trouble = DiskTrouble()  # the last write error or failed fsync, until proven over
        self._failed_probes = 0
        self._refused_bytes = 0  # size of the last append refused for capacity, until one lands
        self._closed = False
        self._presence = hold_presence(self._dir, config.writer_id)  # seen by --exit-when-empty (presence.py)
        self._capacity = CapacityGuard(self._dir, config.max_spool_bytes, config.min_free_bytes)
        self._commit = GroupCommit(self._sync_target, self._note_fsync_failure, self._trouble.fsync_succeeded)
        self._remove_stale_creating()
        self._housekeepers = [Housekeeper(f"spool-writer-{config.writer_id}", self._housekeeping_tasks())]
        if config.fsync is FsyncPolicy.INTERVAL:
            self._housekeepers.append(Housekeeper(f"spool-fsync-{config.writer_id}", [
                Task("interval fsync", config.fsync_interval_seconds, self._fsync_interval)]))
        for housekeeper in self._housekeepers:
            housekeeper.start()

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
                written = self._write(fd, data)
            except OSError as exc:
                self._refuse_write(exc)
            if written != n:
                self._finish_short_write(fd, data, written)
            self._budget -= n
            self._seq = seq = self._seq + n
            self._appends += 1
            wait = sync or self._always
            if wait:
                self._commit.register(seq)  # before anyone can seal past it
        if wait:
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
            written = self._write(fd, data)
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
        self._trouble.write_error = None
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
        why = self._trouble.write_error = f"short write: {done} of {len(data)} bytes ({describe_os_error(cause)})"
        log.error("short write; segment sealed", extra={
            "segment": self._active.name.segment_id if self._active else None, "error": why})
        self._seal_locked()
        raise AppendUncertain(f"spool write torn: {why}; the complete events of it may still be delivered",
                              retry_after_seconds=RETRY_AFTER_SECONDS) from cause

    def _refuse_write(self, exc: OSError) -> None:
        why = self._trouble.write_error = describe_os_error(exc)
        self._budget = 0
        log.error("spool write failed", extra={"error": why})
        raise SpoolUnwritable(f"spool unwritable: {why}", retry_after_seconds=RETRY_AFTER_SECONDS) from exc

    def _wait_durable(self, seq: int) -> None:
        try:
            self._commit.wait_durable(seq, registered=True)
        except FsyncFailed as exc:
            with self._lock:
                self._after_fsync_failure(exc)
            raise AppendUncertain(
                f"spool fsync failed ({describe_os_error(exc)}): the events are written but may not survive a "
                "machine crash", retry_after_seconds=RETRY_AFTER_SECONDS) from exc

    def _note_fsync_failure(self, token: object, cause: OSError) -> None:
        """Group commit's callback (must not block): the next append seals first; unready meanwhile."""
        self._fsync_failed = token
        self._trouble.fsync_failed(describe_os_error(cause), token)

    def _after_fsync_failure(self, exc: FsyncFailed) -> None:
        # Unready until the probe or a later segment's fsync shows the disk works (DiskTrouble).
        if exc.token is not None and exc.token is self._active:
            log.error("segment fsync failed; sealing it",
                      extra={"segment": self._active.name.segment_id, "error": describe_os_error(exc)})
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
            self._commit.sync_segment(active.fd, end_seq, active)  # skipped if one of it failed before
        except FsyncFailed as exc:
            log.error("segment fsync failed while sealing", extra={"segment": active.name.segment_id,
                                                                   "error": str(exc)})
            self._trouble.fsync_failed(describe_os_error(exc), active)
        finally:
            self._commit.close_poison(active, end_seq)
        # Only now: everything in it is durable or poisoned (the invariant group commit relies on).
        self._active, self._fd = None, -1
        mark_sealed(active.fd)
        if rename_sealed(self._dir, active.name):
            self._sealed += 1
            log.info("segment sealed", extra={"segment": active.name.segment_id,
                                              "bytes": end_seq - active.start_seq})
        # A group-commit leader may be fsyncing this descriptor right now. Its data is fsynced (or
        # known lost): an error close reports changes nothing, and must not fail the append.
        self._commit.wait_idle_then(lambda: close_settled(active.fd, active.name.active_name))

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
        return [
            Task("capacity and age", CAPACITY_SCAN_INTERVAL_SECONDS, self._rescan_capacity_and_age),
            Task("stale creates", STALE_SCAN_INTERVAL_SECONDS, self._remove_stale_creating),
            Task("recovery probe", RECOVERY_PROBE_SECONDS, self._probe_writable),
        ]

    def _fsync_interval(self) -> None:
        if self._commit.durable_seq < self._seq:
            try:
                self._commit.sync_now()
            except FsyncFailed as exc:
                with self._lock:
                    self._after_fsync_failure(exc)

    def _probe_writable(self) -> None:
        """After a write or fsync error, find out without traffic whether the disk takes data again.

        Readiness is off meanwhile, so a load balancer sends nothing that could clear it. The
        proof is a page written and fdatasynced (:func:`probe_disk`), not an empty file: a full
        disk or a block quota lets a create through. Then the segment the error happened on is
        retired if anything is in it (a segment that failed its fsync always), and a fresh one
        opened if none is; an empty one is kept, so a failing disk leaves no trail of them.
        """
        if not self._trouble:
            return
        try:
            probe_disk(self._dir, self.config.writer_id)
        except OSError as exc:
            self._failed_probes += 1
            if self._failed_probes % 60 == 1:  # once a minute at most
                log.warning("spool still unwritable", extra={"error": describe_os_error(exc),
                                                             "probes_failed": self._failed_probes})
            return
        self._failed_probes = 0
        with self._lock:
            if self._closed:
                return
            active = self._active
            if active is not None and (self._commit.has_failed(active) or
                                       (self._trouble.write_error and self._seq > active.start_seq)):
                self._seal_locked()
            if self._active is None:
                with contextlib.suppress(SpoolUnwritable):  # the write error says why
                    self._open_segment()
                if self._active is None:
                    return
            self._trouble.disk_proven()
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
            trouble = self._trouble.reason()
            if trouble is not None:
                return trouble
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
        """Stop the background threads and seal the active segment. Idempotent."""
        for housekeeper in self._housekeepers:
            housekeeper.stop()
        with self._lock:
            if self._closed:
                return
            with contextlib.suppress(OSError):
                self._seal_locked()
            self._closed = True
            release_presence(self._dir, self.config.writer_id, self._presence)

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
    waits: list[tuple[SpoolWriter, int]] = []  # parts registered with their group commit, as append does
    try:
        with contextlib.ExitStack() as held:
            for writer in ordered:
                held.enter_context(writer._lock)
            fds = [writer._claim_locked(len(data)) for writer, data in parts]  # may refuse: nothing written yet
            for index, ((writer, data), fd) in enumerate(zip(parts, fds, strict=True)):
                try:
                    seq = writer._write_locked(fd, data)
                except SpoolUnwritable as exc:  # the disk refused this part's write (a short one is AppendUncertain)
                    if index == 0:
                        raise
                    raise AppendUncertain(f"{index} of {len(parts)} parts written, then: {exc}",
                                          retry_after_seconds=exc.retry_after_seconds) from exc
                if sync or writer._always:
                    # Under the writer's lock, before anyone can seal past it: a failed fsync of this
                    # part's segment is then remembered until this request has asked about it.
                    writer._commit.register(seq)
                    waits.append((writer, seq))
    except BaseException:
        for writer, seq in waits:  # the request fails anyway ("unknown"); it will not ask
            writer._commit.unregister(seq)
        raise
    failed: AppendUncertain | None = None
    for writer, seq in waits:  # every registered part is waited for (and so unregistered), even after a failure
        try:
            writer._wait_durable(seq)
        except AppendUncertain as exc:
            failed = failed or exc
    if failed is not None:
        raise failed
