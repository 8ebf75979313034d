"""SpoolWriter: the append side of the spool, shared by a receiver worker's threads.

Invariants:
- Each append is one ``os.write`` on an ``O_APPEND`` descriptor, so a batch of
  events lands whole or (on error) not at all: a short write is cut back off.
- A sealed segment never grows: appends and seals take the same lock.
- The active segment is ``flock``ed from before it appears under its name until
  after it is renamed to ``.ndjson``; an unlocked ``.active`` means a dead writer.
- An append either lands in full or raises :class:`AppendRefused` with nothing written.

Thread-safe. A background thread seals segments by age, fsyncs on the
``interval`` policy and re-measures capacity; nothing on the append path waits
for it.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
from dataclasses import dataclass

from .capacity import CapacityGuard, measure_usage
from .config import (
    CAPACITY_RECHECK_SECONDS,
    CAPACITY_SCAN_INTERVAL_SECONDS,
    READY_HEADROOM_FRACTION,
    READY_HEADROOM_MIN_BYTES,
    RETRY_AFTER_SECONDS,
    FsyncPolicy,
    WriterConfig,
)
from .errors import SpoolFull, SpoolUnwritable
from .fsutil import fsync_dir
from .group_commit import GroupCommit
from .naming import CREATING_PREFIX, SegmentName

__all__ = ["SpoolWriter", "WriterStats"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriterStats:
    appends: int
    bytes_appended: int
    segments_sealed: int
    fsyncs: int
    spool_bytes: int
    free_bytes: int


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
        self._seq = 0  # total bytes appended: the group-commit sequence
        self._seq_at_grant = 0  # _seq when the capacity guard last took our appends into account
        self._appends = 0
        self._always = config.fsync is FsyncPolicy.ALWAYS
        self._active: SegmentName | None = None
        self._opened_at = 0.0
        self._seg_start_seq = 0
        self._next_seq = 1
        self._sealed = 0
        self._last_error: str | None = None  # the last write error, until a write succeeds
        self._refused_bytes = 0  # size of the last append refused for capacity, until one lands
        self._closed = False
        self._capacity = CapacityGuard(self._dir, config.max_spool_bytes, config.min_free_bytes)
        self._commit = GroupCommit(self._sync_target)
        self._stop = threading.Event()
        self._housekeeper = threading.Thread(
            target=self._housekeep, name=f"spool-writer-{config.writer_id}", daemon=True
        )
        self._housekeeper.start()

    # -- the append path -------------------------------------------------------------

    def append(self, data: bytes, *, sync: bool = False) -> None:
        """Append complete lines (each ending in ``\\n``) in one write.

        With ``sync`` (or the ``always`` policy) return only once they are fsynced.
        Raises :class:`SpoolFull` or :class:`SpoolUnwritable`; nothing is written then.
        """
        n = len(data)
        if not n or data[-1] != 10:
            raise ValueError("append takes complete lines ending in a newline")
        with self._lock:
            fd = self._prepare_slow(n) if n > self._budget else self._fd
            try:
                written = os.write(fd, data)
            except OSError as exc:
                self._refuse_write(exc)
            if written != n:
                self._cut_back(fd, written, n)
            self._budget -= n
            self._seq = seq = self._seq + n
            self._appends += 1
        if sync or self._always:
            self._wait_durable(seq)

    def _prepare_slow(self, nbytes: int) -> int:
        """Every decision the fast path skips: closed, capacity, sealing, opening a segment."""
        self._budget = 0  # stays 0 (slow path next time) unless everything below succeeds
        if self._closed:
            raise SpoolUnwritable("writer is closed", retry_after_seconds=RETRY_AFTER_SECONDS)
        self._check_capacity(nbytes)
        segment_used = self._seq - self._seg_start_seq
        if self._fd >= 0 and segment_used and segment_used + nbytes > self.config.segment_bytes:
            self._seal_locked()
        if self._fd < 0:
            self._open_segment()
        # Pending trouble is cleared optimistically; a failing write sets it again.
        self._last_error = None
        self._refused_bytes = 0
        segment_left = self.config.segment_bytes - (self._seq - self._seg_start_seq)
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

    def _cut_back(self, fd: int, written: int, wanted: int) -> None:
        """A short write (disk full mid-way): cut it off so no torn line stays behind."""
        try:
            os.ftruncate(fd, os.fstat(fd).st_size - written)
        except OSError:
            log.error("short write could not be cut back; sealing", extra={"segment": str(self._active)})
            self._seal_locked()
        self._refuse_write(OSError(errno.ENOSPC, f"short write: {written} of {wanted} bytes"))

    def _refuse_write(self, exc: OSError) -> None:
        self._last_error = f"{errno.errorcode.get(exc.errno or 0, 'EIO')}: {exc.strerror or exc}"
        self._budget = 0
        log.error("spool write failed", extra={"error": self._last_error})
        raise SpoolUnwritable(
            f"spool unwritable: {self._last_error}", retry_after_seconds=RETRY_AFTER_SECONDS
        ) from exc

    def _wait_durable(self, seq: int) -> None:
        try:
            self._commit.wait_durable(seq)
        except OSError as exc:
            with self._lock:
                self._refuse_write(exc)

    # -- segments --------------------------------------------------------------------

    def _open_segment(self) -> None:
        name = SegmentName(self.config.writer_id, self._next_seq, sealed=False)
        hidden = self._dir / f"{CREATING_PREFIX}{name.active_name}"
        try:
            fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(hidden, self._dir / name.active_name)
            if self.config.fsync is not FsyncPolicy.NEVER:
                fsync_dir(self._dir)
        except OSError as exc:
            self._refuse_write(exc)
        self._next_seq += 1
        self._active = name
        self._fd = fd
        self._opened_at = time.monotonic()
        self._seg_start_seq = self._seq
        log.info("segment opened", extra={"segment": name.segment_id})

    def _seal_locked(self) -> None:
        name, fd = self._active, self._fd
        if name is None:
            return
        self._active, self._fd, self._budget = None, -1, 0
        size = self._seq - self._seg_start_seq
        sealed_at_seq = self._seq
        try:
            os.fsync(fd)
            os.rename(self._dir / name.active_name, self._dir / name.sealed_name)
            fsync_dir(self._dir)
        except OSError as exc:
            # The segment stays .active and unlocked once closed: the tailer treats it as orphaned.
            log.error("segment seal failed", extra={"segment": name.segment_id, "error": str(exc)})
        else:
            self._sealed += 1
            self._commit.mark_durable(sealed_at_seq)
            log.info("segment sealed", extra={"segment": name.segment_id, "bytes": size})
        # A group-commit leader may be fsyncing this descriptor right now.
        self._commit.wait_idle_then(lambda: os.close(fd))

    def _sync_target(self) -> tuple[int, int | None]:
        seq = self._seq
        fd = self._fd
        return seq, (fd if fd >= 0 else None)

    def seal(self) -> None:
        """Seal the active segment now (if it holds anything)."""
        with self._lock:
            self._seal_locked()

    # -- background work ---------------------------------------------------------------

    def _housekeep(self) -> None:
        tick = min(CAPACITY_SCAN_INTERVAL_SECONDS, self.config.fsync_interval_seconds)
        last_fsync = time.monotonic()
        while not self._stop.wait(tick):
            now = time.monotonic()
            try:
                self._rescan_capacity()
                self._seal_if_old(now)
                if self.config.fsync is FsyncPolicy.INTERVAL and now - last_fsync >= self.config.fsync_interval_seconds:
                    last_fsync = now
                    if self._commit.durable_seq < self._seq:
                        self._commit.sync_now()
            except OSError as exc:
                log.error("spool housekeeping failed", extra={"error": str(exc)})

    def _rescan_capacity(self) -> None:
        before = self._seq
        usage = measure_usage(self._dir)
        with self._lock:
            self._capacity.update(usage, self._seq - before)
            self._seq_at_grant = self._seq
            self._budget = 0  # re-decide with the fresh numbers on the next append

    def _seal_if_old(self, now: float) -> None:
        with self._lock:
            if self._active is not None and now - self._opened_at >= self.config.segment_age_seconds:
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
            )

    def close(self) -> None:
        """Stop the background thread and seal the active segment. Idempotent."""
        self._stop.set()
        if self._housekeeper.is_alive() and threading.current_thread() is not self._housekeeper:
            self._housekeeper.join()
        with self._lock:
            if self._closed:
                return
            self._seal_locked()
            self._closed = True

    def __enter__(self) -> SpoolWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
