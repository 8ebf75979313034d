"""Review item 10: a read chunk is bounded by its line count too, so tiny lines do not make a flood of objects.

A 2 MiB chunk of ``{}`` lines is ~700,000 lines: one bytes object, one record tuple and one key each, and
~1,400 batches waiting at once. Whatever the line size, one step holds at most ``READ_LINES_MAX`` lines of a
chunk, and the batches waiting stay near ``concurrency`` plus what one such chunk makes.
"""

from __future__ import annotations

import pytest

from tailer.reading import READ_LINES_MAX, _nth_line_end
from tests.unit.test_shipper import FakeSink, make_shipper


@pytest.mark.parametrize("line", [b"{}\n", b'{"n":1}\n', b'{"p":"' + b"x" * 190 + b'"}\n'], ids=["3 B", "8 B", "200 B"])
@pytest.mark.parametrize("aggregate", [False, True], ids=["plain", "aggregated"])
def test_lines_held_in_memory_are_bounded_whatever_the_line_size(spool_dir, line, aggregate):
    (spool_dir / "w1-00000001.ndjson").write_bytes(line * (6 * 1024 * 1024 // len(line)))
    sink = FakeSink()
    sink.gate.clear()  # Kinesis hangs: everything read stays in memory
    shipper = make_shipper(spool_dir, sink, aggregate=aggregate, concurrency=2)
    for _ in range(50):
        shipper.ship_once()
    chunks = [span.pending for progress in shipper._progress.values() for span in progress.spans]
    assert chunks and max(chunks) <= READ_LINES_MAX, f"a chunk of {max(chunks)} lines"
    waiting = shipper._ready
    assert len(waiting) <= 2 + READ_LINES_MAX // 500 + 1, f"{len(waiting)} batches waiting"
    if not aggregate:  # plain: one object per line; aggregated lines are bytes inside a few records
        lines = sum(b.lines for b in waiting) + sum(b.lines for b in shipper._inflight.values())
        assert lines <= 2 * READ_LINES_MAX + 4 * 500, f"{lines} lines held"
    sink.gate.set()
    shipper.close()


@pytest.mark.parametrize("n", [1, 2, 999, 1000, 4095, 4096, 50_000])
def test_the_nth_line_end_is_found_exactly(n):
    data = b"".join(b"%d\n" % i if i % 7 else b"x" * (i % 5000) + b"\n" for i in range(60_000))
    cut = _nth_line_end(data, n)
    assert data[:cut].count(b"\n") == n and data[cut - 1:cut] == b"\n"
