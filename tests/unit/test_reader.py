from __future__ import annotations

import os

from spooler import iter_chunks, read_lines, read_range


def open_bytes(tmp_path, data: bytes) -> int:
    path = tmp_path / "seg.ndjson"
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


def test_incomplete_last_line_is_never_returned(tmp_path):
    fd = open_bytes(tmp_path, b'{"a":1}\n{"b":2}\n{"c":')
    chunk = read_lines(fd, 0)
    assert chunk.data == b'{"a":1}\n{"b":2}\n'
    assert chunk.end == 16
    assert read_lines(fd, chunk.end).is_empty, "the torn tail stays unread"


def test_window_ends_at_a_newline(tmp_path):
    fd = open_bytes(tmp_path, b"aaaa\nbbbb\ncccc\n")
    chunk = read_lines(fd, 0, max_bytes=12)
    assert chunk.data == b"aaaa\nbbbb\n"


def test_a_line_longer_than_the_window_is_reported_as_oversized(tmp_path):
    long_line = b"x" * 5000 + b"\n"
    fd = open_bytes(tmp_path, b"a\n" + long_line + b"b\n")
    first = read_lines(fd, 0, max_bytes=100)
    assert first.data == b"a\n"
    big = read_lines(fd, first.end, max_bytes=100)
    assert big.oversized and big.data == b"" and big.end - big.start == len(long_line)
    assert b"".join(read_range(fd, big.start, big.end, block_bytes=64)) == long_line
    assert read_lines(fd, big.end, max_bytes=100).data == b"b\n"


def test_oversized_line_without_newline_yet_waits(tmp_path):
    fd = open_bytes(tmp_path, b"x" * 500)
    assert read_lines(fd, 0, max_bytes=100).is_empty


def test_iter_chunks_covers_the_file(tmp_path):
    lines = [b'{"n":%d}\n' % i for i in range(1000)]
    path = tmp_path / "s.ndjson"
    path.write_bytes(b"".join(lines))
    got = b"".join(c.data for c in iter_chunks(path, max_bytes=333))
    assert got == b"".join(lines)
