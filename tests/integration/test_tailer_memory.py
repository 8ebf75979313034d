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
    # Watch 8 s of shipping, counted from its first checkpoint: on a busy machine start-up alone can take
    # longer than that (a fixed 8 s from the start once saw nothing shipped yet).
    everything = []  # start-up included, for the peak
    started_by = time.monotonic() + 120
    deadline = None
    while deadline is None or time.monotonic() < deadline:
        rss = process.memory_info().rss
        everything.append(rss)
        if deadline is None and sum(read_checkpoint(spool_dir).values()):
            deadline = time.monotonic() + 8
        if deadline is not None:
            samples.append(rss)  # the flatness below compares halves of the shipping, not start-up with it
        assert deadline is not None or time.monotonic() < started_by, "the tailer never started shipping"
        time.sleep(0.1)
    shipped = sum(read_checkpoint(spool_dir).values())
    tailer.stop()
    assert backlog >= GIB
    assert shipped > 0, "it was shipping while we watched"
    peak = max(everything)
    assert peak < 150 * 1024**2, f"peak RSS {peak / 1024**2:.0f} MiB"
    # Flat: the second half of the run holds no more than the first half plus a little.
    half = len(samples) // 2
    assert max(samples[half:]) < max(samples[:half]) * 1.25 + 10 * 1024**2
    print(f"backlog {backlog / GIB:.2f} GiB, shipped {shipped / 1024**2:.0f} MiB in 8 s, "
          f"peak RSS {peak / 1024**2:.0f} MiB")


KEYS = 4096
# The figure docs/tailer.md states for aggregated per-key records, whatever the number of keys.
MANY_KEYS_RSS_LIMIT = 150 * 1024**2


def write_keyed_backlog(spool_dir, total_bytes: int) -> int:
    pad = b"x" * 900
    lines = [b'{"user":"user-%05d","pad":"%s"}\n' % (i % KEYS, pad) for i in range(16 * KEYS)]
    block = b"".join(lines)
    written, seq = 0, 0
    while written < total_bytes:
        seq += 1
        (spool_dir / f"keyed-{seq:08d}.ndjson").write_bytes(block)
        written += len(block)
    return written


def test_rss_stays_bounded_with_4096_keys_aggregated_at_the_largest_record_size(kinesalite, spool_dir):
    """Defect 7: open aggregates (one per key while the endpoint is away) did not count toward the read limit;
    with 4,096 keys the tailer read the whole backlog into them."""
    from tests.servers.fault_proxy import FaultProxy

    backlog = write_keyed_backlog(spool_dir, 256 * 1024**2)
    stream = kinesalite.create_stream(shards=4)
    proxy = FaultProxy(kinesalite.port)
    proxy.down = True  # nothing is acknowledged, and ListShards fails: lines are grouped per key
    tailer = start_tailer(spool_dir, stream, proxy.endpoint, "--aggregate", "--partition-key", "field:user",
                          "--aggregate-max-bytes", str(1024 * 1024 - 256), "--drain-timeout", "1")
    process = psutil.Process(tailer.process.pid)
    samples = []
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        samples.append(process.memory_info().rss)
        time.sleep(0.1)
    proxy.down = False
    time.sleep(3)  # and shipping for a while, by shard now
    samples.append(process.memory_info().rss)
    tailer.stop()
    proxy.close()
    peak = max(samples)
    print(f"{KEYS} keys, backlog {backlog >> 20} MiB: peak RSS {peak / 1024**2:.0f} MiB")
    assert peak < MANY_KEYS_RSS_LIMIT, f"peak RSS {peak / 1024**2:.0f} MiB with {KEYS} keys"
