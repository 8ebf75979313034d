"""With 1 GiB of lines waiting on disk, the tailer's memory stays flat and under 150 MB."""

from __future__ import annotations

import time

import psutil

from spooler import read_checkpoint
from tests.helpers import start_tailer

GIB = 1024**3
SEGMENT_BYTES = 16 * 1024**2


def write_backlog(spool_dir, total_bytes: int) -> int:
    line = b'{"kind":"backlog","pad":"' + b"x" * 990 + b'"}\n'
    block = line * (SEGMENT_BYTES // len(line))
    written, seq = 0, 0
    while written < total_bytes:
        seq += 1
        (spool_dir / f"backlog-{seq:08d}.ndjson").write_bytes(block)
        written += len(block)
    return written


def test_rss_stays_under_150mb_with_a_1gib_backlog(kinesalite, spool_dir):
    backlog = write_backlog(spool_dir, GIB)
    stream = kinesalite.create_stream(shards=4)
    tailer = start_tailer(spool_dir, stream, kinesalite.endpoint, "--aggregate", "--drain-timeout", "1")
    process = psutil.Process(tailer.process.pid)
    samples = []
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        samples.append(process.memory_info().rss)
        time.sleep(0.1)
    shipped = sum(read_checkpoint(spool_dir).values())
    tailer.stop()
    assert backlog >= GIB
    assert shipped > 0, "it was shipping while we watched"
    peak = max(samples)
    assert peak < 150 * 1024**2, f"peak RSS {peak / 1024**2:.0f} MiB"
    # Flat: the second half of the run holds no more than the first half plus a little.
    half = len(samples) // 2
    assert max(samples[half:]) < max(samples[:half]) * 1.25 + 10 * 1024**2
    print(f"backlog {backlog / GIB:.2f} GiB, shipped {shipped / 1024**2:.0f} MiB in 8 s, "
          f"peak RSS {peak / 1024**2:.0f} MiB")
