"""Reading one segment on: the next bounded chunk of complete lines, checked, into the packer.

One step of :meth:`SegmentReader.read` opens the segment if needed, checks that
it is still the file being read (:mod:`tailer.identity`: byte ``read - 1`` is
still a newline), reads at most ``read_bytes`` *and* at most
``READ_LINES_MAX`` lines (so a spool of tiny lines does not turn one chunk into
hundreds of thousands of objects), and hands the lines to the packer. What can
never be shipped goes to dead letters: a line longer than the read window, a
torn tail of a sealed segment (once its file has stopped changing), a line with
NUL bytes (a hole). Not thread-safe: the shipper's loop owns it.
"""

from __future__ import annotations

import logging
import time

from .deadletters import DeadLetters
from .lines import split_lines
from .progress import SegmentProgress
from .spoolio import FAILED, GuardedSpool, SpoolOps
from .tracker import SegmentTracker

__all__ = ["READ_LINES_MAX", "SegmentReader"]

log = logging.getLogger(__name__)
# Lines per chunk: ~20 batches of 500 records; bounds the objects one chunk makes whatever the line size.
READ_LINES_MAX = 10_000


class SegmentReader:
    def __init__(self, tracker: SegmentTracker, io: GuardedSpool, ops: SpoolOps, dead: DeadLetters, packer,
                 read_bytes: int, lines_max: int = READ_LINES_MAX) -> None:
        self._tracker = tracker
        self._io = io
        self._ops = ops
        self._dead = dead
        self._packer = packer
        self._read_bytes = read_bytes
        self._lines_max = lines_max

    def read(self, progress: SegmentProgress) -> bool:
        """One chunk of ``progress``'s segment into the packer; True if anything moved."""
        segment_id = progress.segment_id
        tracker = self._tracker
        fd = tracker.open(progress)
        if fd is None:
            tracker.needs_rescan = True
            return False
        size = self._io.run("read", segment_id, self._ops.size_of, fd, clears=False)
        if size is FAILED:
            return False
        if size < progress.read:
            tracker.shrunk(progress, size)
            return True
        progress.size_seen = size
        if progress.read >= size:
            return False
        if progress.unshipped_since is None:
            progress.unshipped_since = time.time()
        boundary = tracker.identity.continues(progress)
        if boundary is None:
            return False
        if not boundary:
            return self._off_boundary(progress, fd)
        progress.resync = False  # the checkpoint's offset is proven a line start of this very file
        chunk = self._io.run("read", segment_id, self._ops.read_lines, fd, progress.read, self._read_bytes)
        if chunk is FAILED:
            return False
        if chunk.oversized:
            return self._dead_letter_range(progress, chunk.start, chunk.end, "line longer than the read window")
        if chunk.is_empty:
            if progress.is_final and size > progress.read and tracker.identity.is_quiet(progress):
                return self._dead_letter_range(progress, progress.read, size, "torn write: no newline at the end")
            return False
        data, end = chunk.data, chunk.end
        newlines = data.count(b"\n")  # every line of it ends in one: read_lines cuts at the last
        if newlines > self._lines_max:
            cut = _nth_line_end(data, self._lines_max, newlines)
            data, end, newlines = data[:cut], chunk.start + cut, self._lines_max
        span = progress.new_span(chunk.start, end, newlines, tracker.identity.tail_digest(progress, end, data))
        tracker.identity.note_read(progress, data if chunk.start == 0 else None)
        if b"\0" in data:  # one memchr per chunk; compact JSON never holds a NUL byte
            self._packer.pack(span, self._dead_letter_holes(span, split_lines(data)))
        else:
            self._packer.pack_chunk(span, data)  # the packer splits it (the aggregating one without line objects)
        if span.pending <= 0:  # every line of it went to dead letters: nothing will acknowledge it
            tracker.advance(segment_id, size)
        return True

    def _off_boundary(self, progress: SegmentProgress, fd: int) -> bool:
        """The bytes before ``read`` are not the ones read there: the file was rewritten — or, right after
        a start, a checkpoint without a tail hash points inside a line of this very file (its inode was
        checked by adopt): then skip to the next line start."""
        if not progress.resync or progress.read_tail:
            self._tracker.identity.replaced(progress, "rewritten", progress.ino)
            self._tracker.dirty = True
            return True
        chunk = self._io.run("read", progress.segment_id, self._ops.read_lines, fd, progress.read, self._read_bytes)
        if chunk is FAILED or chunk.is_empty:
            return False  # the rest of that line is not written yet
        end = chunk.end if chunk.oversized else chunk.start + chunk.data.index(b"\n") + 1
        self._tracker.identity.skipped_mid_line(progress, end)
        data = chunk.data[:end - chunk.start] if not chunk.oversized else b""
        progress.new_span(progress.read, end, 0, self._tracker.identity.tail_digest(progress, end, data))
        progress.resync = False
        self._tracker.advance(progress.segment_id)
        return True

    def _dead_letter_holes(self, span, lines: list[bytes]) -> list[bytes]:
        """Lines with a NUL byte go to dead letters (a hole in the file: see tailer.deadletters)."""
        for line in lines:
            if b"\0" in line:
                self._dead.line(span, line, f"line holds {line.count(0)} NUL bytes: a hole left by the disk "
                                            "(a failed fsync?), not an event", kind="hole")
        return [line for line in lines if b"\0" not in line]

    def _dead_letter_range(self, progress: SegmentProgress, start: int, end: int, reason: str) -> bool:
        if not self._dead.range(progress, start, end, reason):
            return False  # not read past: tried again after the backoff
        progress.new_span(start, end, 0, self._tracker.identity.tail_digest(progress, end, b""))
        self._tracker.advance(progress.segment_id)
        return True


def _nth_line_end(data: bytes, n: int, newlines: int | None = None) -> int:
    """The offset just past the ``n``-th newline of ``data`` (which holds more than ``n``).

    One count up to a guess in proportion to the lines' mean length, then a walk of ``find`` / ``rfind``
    calls (each a C memchr) to the exact newline: lines of one size land within a few lines of the guess.
    A binary search of counts from the start scanned each 2 MiB chunk about seven times over — 14 ms a
    chunk, 1.4 µs a line of 200 bytes (docs/performance.md); whatever the lengths, the walk is at most
    ``n`` calls. ``newlines``: how many ``data`` holds, if the caller counted them already.
    tests/unit/test_nth_line_end.py checks it exactly, under hypothesis.
    """
    if newlines is None:
        newlines = data.count(b"\n")
    guess = min(len(data), len(data) * n // max(1, newlines))
    # data[:guess] holds ``seen`` newlines, counted from the nearer end (a chunk just over the cap: its tail)
    if guess > len(data) // 2:
        seen = newlines - data.count(b"\n", guess)
    else:
        seen = data.count(b"\n", 0, guess)
    if seen >= n:  # step back from the last newline before ``guess`` (the seen-th) to the n-th
        position = data.rfind(b"\n", 0, guess)
        for _ in range(seen - n):
            position = data.rfind(b"\n", 0, position)
    else:
        position = guess - 1
        for _ in range(n - seen):
            position = data.index(b"\n", position + 1)
    return position + 1
