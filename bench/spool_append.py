"""Spool append throughput vs a bare os.write loop, and group commit's fsync sharing.

Both loops run in the same invocation, alternately, best of several rounds, so the
ratio holds on a noisy shared machine. Targets: writer >= 0.8 x bare os.write with
fsync=never; fsync=always with 16 threads makes far fewer than 1,000 fsyncs per 1,000
appends.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# Work files go under bench/bench-*/ (ignored by git) on the repository's disk, never the repo root.
WORK_DIR = Path(__file__).resolve().parent

from bench.common import event_line, report  # noqa: E402
from spooler import FsyncPolicy, SpoolWriter, WriterConfig  # noqa: E402


def bare_loop(directory: Path, lines: list[bytes]) -> float:
    fd = os.open(directory / "bare.ndjson", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    start = time.perf_counter()
    for line in lines:
        os.write(fd, line)
    elapsed = time.perf_counter() - start
    os.close(fd)
    return len(lines) / elapsed


def writer_loop(directory: Path, lines: list[bytes]) -> float:
    config = WriterConfig(directory, "bench", segment_bytes=64 * 1024**2, max_spool_bytes=2**40,
                          min_free_bytes=0, fsync=FsyncPolicy.NEVER)
    with SpoolWriter(config) as writer:
        append = writer.append
        start = time.perf_counter()
        for line in lines:
            append(line)
        elapsed = time.perf_counter() - start
    return len(lines) / elapsed


def group_commit(directory: Path, threads: int, per_thread: int) -> dict:
    config = WriterConfig(directory, "gc", max_spool_bytes=2**40, min_free_bytes=0, fsync=FsyncPolicy.ALWAYS)
    line = event_line(0)
    with SpoolWriter(config) as writer:
        def work():
            for _ in range(per_thread):
                writer.append(line)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        start = time.perf_counter()
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        elapsed = time.perf_counter() - start
        stats = writer.stats()
    return {
        "appends": stats.appends,
        "fsyncs": stats.fsyncs,
        "fsyncs_per_1000_appends": round(1000 * stats.fsyncs / stats.appends, 1),
        "appends_per_s": round(stats.appends / elapsed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    lines = [event_line(n) for n in range(args.events)]
    bare, ours = [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-spool-", dir=WORK_DIR) as d:
            bare.append(bare_loop(Path(d), lines))
        with tempfile.TemporaryDirectory(prefix="bench-spool-", dir=WORK_DIR) as d:
            ours.append(writer_loop(Path(d), lines))
    with tempfile.TemporaryDirectory(prefix="bench-spool-", dir=WORK_DIR) as d:
        gc = group_commit(Path(d), threads=16, per_thread=250)
    ratio = max(ours) / max(bare)
    print(f"bare os.write  : {max(bare):>10,.0f} appends/s")
    print(f"SpoolWriter    : {max(ours):>10,.0f} appends/s   ratio {ratio:.2f} (target >= 0.80)")
    print(f"fsync=always, 16 threads: {gc['fsyncs_per_1000_appends']} fsyncs per 1,000 appends "
          f"({gc['appends_per_s']:,} appends/s)")
    report("spool_append", {
        "bare_appends_per_s": round(max(bare)), "writer_appends_per_s": round(max(ours)),
        "ratio": round(ratio, 3), "target_ratio": 0.8, "met": ratio >= 0.8, "group_commit": gc,
    })


if __name__ == "__main__":
    main()
