"""Reading complete lines back from a segment, in bounded chunks.

A reader never holds more than ``max_bytes`` of a segment in memory, whatever
its size. A line is complete only with its ``\\n``; bytes after the last newline
are either still being written (active segment) or a torn write (sealed or
orphaned segment), and are never returned as a line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_READ_BYTES", "LineChunk", "iter_chunks", "read_lines", "read_range"]

# Large enough for any line Kinesis accepts (1 MiB) plus headroom.
DEFAULT_READ_BYTES = 2 * 1024 * 1024
_SCAN_BYTES = 1024 * 1024


@dataclass(frozen=True)
class LineChunk:
    """Bytes ``[start, end)`` of a segment.

    ``data`` holds only complete lines (each ending in ``\\n``), possibly none.
    ``oversized`` marks a single line longer than the read window: ``data`` is
    empty and ``[start, end)`` spans that line with its newline, to be dead-lettered.
    """

    start: int
    end: int
    data: bytes
    oversized: bool = False

    @property
    def is_empty(self) -> bool:
        return self.end == self.start


def read_lines(fd: int, offset: int, max_bytes: int = DEFAULT_READ_BYTES) -> LineChunk:
    """Complete lines from ``offset``: at most ``max_bytes``, ending at a newline."""
    buf = os.pread(fd, max_bytes, offset)
    cut = buf.rfind(b"\n") + 1
    if cut:
        return LineChunk(offset, offset + cut, buf[:cut])
    if len(buf) < max_bytes:
        return LineChunk(offset, offset, b"")  # an incomplete line, or nothing yet
    end = _find_line_end(fd, offset + len(buf))
    if end is None:
        return LineChunk(offset, offset, b"")
    return LineChunk(offset, end, b"", oversized=True)


def _find_line_end(fd: int, offset: int) -> int | None:
    while True:
        buf = os.pread(fd, _SCAN_BYTES, offset)
        if not buf:
            return None
        pos = buf.find(b"\n")
        if pos >= 0:
            return offset + pos + 1
        offset += len(buf)


def iter_chunks(path: Path, offset: int = 0, max_bytes: int = DEFAULT_READ_BYTES):
    """Yield every :class:`LineChunk` of a file from ``offset`` (for replay and tests)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while True:
            chunk = read_lines(fd, offset, max_bytes)
            if chunk.is_empty:
                return
            yield chunk
            offset = chunk.end
    finally:
        os.close(fd)


def read_range(fd: int, start: int, end: int, block_bytes: int = _SCAN_BYTES):
    """Yield the bytes ``[start, end)`` in blocks (for copying a torn or oversized line)."""
    while start < end:
        block = os.pread(fd, min(block_bytes, end - start), start)
        if not block:
            return
        yield block
        start += len(block)
