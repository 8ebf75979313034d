"""Per-segment progress: how far it is read, and how far Kinesis has acknowledged it.

Invariant: ``acked`` only moves over a contiguous prefix of spans whose every
line was acknowledged (or dead-lettered); ``acked <= read <= size``. Batches may
complete in any order; a later span finishing first just waits in ``spans``.
If the file ever shrinks below ``read``, or turns out to be another file
(:mod:`tailer.identity`), :meth:`restart` ships it again from byte 0 (spans
still in flight then belong to no progress and are ignored).
Not thread-safe: the shipper's loop owns it; the loop opens and reads its file
through :mod:`tailer.spoolio`.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from dataclasses import dataclass, field

from spooler import Segment, SegmentState

from .packing import Span

__all__ = ["SegmentProgress"]


@dataclass(eq=False)
class SegmentProgress:
    segment: Segment
    acked: int
    read: int
    spans: deque[Span] = field(default_factory=deque)
    fd: int = -1
    unshipped_since: float | None = None  # wall time since when bytes past `acked` have waited
    # Which file this is (tailer/identity.py): its inode, and a hash of its first head_bytes bytes.
    ino: int = 0
    head_bytes: int = 0
    head: str = ""
    # A hash of the (at most HEAD_BYTES) bytes just before `read`, and before `acked` ("": not known): the
    # file read on from an offset must still hold there what was read there (tailer/identity.py).
    read_tail: str = ""
    acked_tail: str = ""
    span_tails: deque[str] = field(default_factory=deque)  # per span in `spans`: the hash before its end
    resync: bool = False  # acked came from a checkpoint: if it is inside a line, skip to the next one
    seen_active: bool = False  # listed while a spool writer still wrote it
    kept_for_copy_in: bool = False  # shipped and checkpointed; not deleted yet: it may still be copied in
    kept_until: float = 0.0  # wall time its copy-in grace ends (may end later: a writer still holds it)
    size_seen: int = 0  # the largest size read from the open file (listings may be older)

    @property
    def size(self) -> int:
        return max(self.segment.size, self.size_seen)

    @property
    def segment_id(self) -> str:
        return self.segment.segment_id

    @property
    def is_final(self) -> bool:
        return self.segment.state is SegmentState.SEALED

    def close_fd(self) -> None:
        """Close the segment's (read-only) descriptor. An error ``close`` reports (a deferred error of
        NFS or a FUSE flush) is released with it and says nothing about data we only read."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            with contextlib.suppress(OSError):
                os.close(fd)

    def restart(self) -> None:
        """Forget every span and the file: ship what the path holds from its first byte."""
        self.close_fd()  # read the path again: it may be another file now
        self.spans.clear()
        self.span_tails.clear()
        self.acked = self.read = 0
        self.head_bytes, self.head, self.resync = 0, "", False
        self.read_tail = self.acked_tail = ""

    def new_span(self, start: int, end: int, lines: int, tail: str = "") -> Span:
        """``tail``: the hash of the bytes just before ``end`` (tailer.identity.tail_digest)."""
        span = Span(self.segment_id, start, end, lines)
        self.spans.append(span)
        self.span_tails.append(tail)
        self.read = end
        self.read_tail = tail
        return span

    def advance(self) -> bool:
        """Move ``acked`` over finished spans at the front; True if it moved."""
        moved = False
        spans = self.spans
        while spans and spans[0].pending <= 0:
            self.acked = spans.popleft().end
            self.acked_tail = self.span_tails.popleft()
            moved = True
        return moved

    def is_done(self) -> bool:
        """Sealed, read to the end and every byte acknowledged: may be deleted (once checkpointed)."""
        return self.is_final and not self.spans and self.acked == self.read == self.segment.size
