"""Dead letters of the shipper: lines that can never be shipped, kept in ``dead-letter/`` with the reason.

Four kinds: a line over the record limit inside a read chunk (from the packer),
a line with a NUL byte in it (a hole: compact JSON never holds one, but a disk
that lost the pages of a failed fsync and kept later ones reads back zeros —
the bytes after them may even be a real event, kept here whole for an
operator), a byte range read from a segment (a torn tail, a line longer than
the read window), and a record the sink named as invalid (from a delivery thread; its metadata names
the offset of the line itself, found by reading back the spans its batch carries).

A line is released from its span (and so may be checkpointed past) only once
its dead letter is written. When the disk refuses (``ENOSPC``, ``EROFS``…), the
packer's lines wait in a queue — reading stops once it holds a read chunk's
worth — ranges are simply not read past, and a delivery retries with backoff;
nothing is dropped and nothing is sent again meanwhile. Not thread-safe except
:meth:`DeadLetters.record`, which touches only the disk and the metrics.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path

from spooler.naming import ACTIVE_SUFFIX, SEALED_SUFFIX

from .metrics import TailerMetrics
from .packing import Batch, Span
from .progress import SegmentProgress
from .sink import Record
from .spoolio import FAILED, GuardedSpool

__all__ = ["DeadLetters"]

log = logging.getLogger(__name__)


class DeadLetters:
    def __init__(self, spool_dir: Path, io: GuardedSpool, metrics: TailerMetrics, *, max_queued_bytes: int,
                 released: Callable[[str], None]) -> None:
        """``released(segment_id)`` is called once a queued line is stored (its span may advance)."""
        self._dir = spool_dir
        self._io = io
        self._metrics = metrics
        self._max_queued_bytes = max_queued_bytes
        self._released = released
        self._queue: deque[tuple[Span, bytes, str, str]] = deque()
        self._queued_bytes = 0

    def __bool__(self) -> bool:
        return bool(self._queue)

    def backed_up(self) -> bool:
        """The disk has not taken a read chunk's worth of dead letters yet: read no more meanwhile."""
        return self._queued_bytes >= self._max_queued_bytes

    def line(self, span: Span, line: bytes, reason: str, kind: str = "too_large") -> None:
        """The packer's callback (and the reader's, for a hole): written now, or queued until the disk
        takes it. ``kind`` labels the metric."""
        self._queue.append((span, line, reason, kind))
        self._queued_bytes += len(line)
        self.flush()

    def flush(self) -> bool:
        """Write what waits; True if anything was written."""
        worked = False
        while self._queue:
            span, line, reason, kind = self._queue[0]
            tag = hashlib.blake2b(line, digest_size=6).hexdigest()
            written = self._io.run("dead_letter", "", self._io.ops.write_dead_letter, self._dir, span.segment_id,
                                   span.start, [line], reason, tag=tag)
            if written is FAILED:
                return worked  # kept (and the line unacknowledged) until the disk takes it
            self._queue.popleft()
            self._queued_bytes -= len(line)
            self._metrics.dead_letters.labels(kind).inc()
            log.warning("line dead-lettered", extra={"segment": span.segment_id, "reason": reason})
            span.pending -= 1
            self._released(span.segment_id)
            worked = True
        return worked

    def range(self, progress: SegmentProgress, start: int, end: int, reason: str) -> bool:
        """Bytes [start, end) of a segment; False if the disk refused (tried again after the backoff)."""
        if self._io.run("dead_letter", "", self._write_range, progress, start, end, reason) is FAILED:
            return False
        self._metrics.dead_letters.labels("torn" if "torn" in reason else "too_large").inc()
        log.warning("bytes dead-lettered", extra={"segment": progress.segment_id, "offset": start,
                                                  "bytes": end - start, "reason": reason})
        return True

    def _write_range(self, progress: SegmentProgress, start: int, end: int, reason: str) -> None:
        blocks = self._io.ops.read_range(progress.fd, start, end)  # copied in blocks: a huge line stays on disk
        self._io.ops.write_dead_letter(self._dir, progress.segment_id, start, blocks, reason)

    def record(self, batch: Batch, record: Record, reason: str) -> None:
        """Delivery's callback for a record the sink rejected; an OSError is the delivery's to retry."""
        data = record[0]
        segment_id, offset = self._locate(batch, data)
        tag = "rejected-" + hashlib.blake2b(data, digest_size=6).hexdigest()
        self._io.ops.write_dead_letter(self._dir, segment_id, offset, [data], reason, tag=tag)
        self._metrics.dead_letters.labels("rejected").inc()

    def _locate(self, batch: Batch, data: bytes) -> tuple[str, int]:
        """Where the line ``data`` starts in its segment (read back from the spans the batch carries);
        the batch's first span if it cannot be found (an aggregate of several lines, a file gone)."""
        for span in batch.spans:
            for suffix in (SEALED_SUFFIX, ACTIVE_SUFFIX):
                try:
                    with open(self._dir / (span.segment_id + suffix), "rb") as segment:
                        segment.seek(span.start)
                        block = segment.read(span.end - span.start)
                except OSError:
                    continue
                at = block.find(data)
                while at > 0 and block[at - 1:at] != b"\n":  # only a whole line, not a line's tail
                    at = block.find(data, at + 1)
                if at >= 0:
                    return span.segment_id, span.start + at
                break
        first = next(iter(batch.spans), None)
        return (first.segment_id, first.start) if first else ("unknown", 0)
