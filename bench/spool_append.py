"""Spool append throughput vs a bare os.write loop, and group commit's fsync sharing.

Both loops run in the same invocation, alternately, best of several rounds, so the
ratio holds on a noisy shared machine. Targets (bench/targets.py, with their
conditions: 200-byte events, 100,000 appends a round, 5 rounds or more): writer
>= 0.8 x bare os.write with fsync=never; fsync=always with 16 threads makes at most
250 fsyncs per 1,000 appends (group commit shares them), next to one thread's
figure in the same run (about 1,000: nothing to share).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# Work files go under bench/bench-*/ (ignored by git) on the repository's disk, never the repo root.
WORK_DIR = Path(__file__).resolve().parent

from bench.common import Machine, environment, event_line, report  # noqa: E402
from bench.verdict import Baseline  # noqa: E402
from spooler import FsyncPolicy, SpoolWriter, WriterConfig  # noqa: E402

EVENT_BYTES = 200
GC_THREADS = 16


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
    parser.add_argument("--fsync-appends", type=int, default=4_000, help="appends in the fsync=always runs")
    args = parser.parse_args()
    env, machine = environment(), Machine()
    lines = [event_line(n, EVENT_BYTES) for n in range(args.events)]
    bare, ours = [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-spool-", dir=WORK_DIR) as d:
            bare.append(bare_loop(Path(d), lines))
        with tempfile.TemporaryDirectory(prefix="bench-spool-", dir=WORK_DIR) as d:
            ours.append(writer_loop(Path(d), lines))
    with tempfile.TemporaryDirectory(prefix="bench-spool-", dir=WORK_DIR) as d:
        gc = group_commit(Path(d), threads=GC_THREADS, per_thread=max(1, args.fsync_appends // GC_THREADS))
    with tempfile.TemporaryDirectory(prefix="bench-spool-", dir=WORK_DIR) as d:
        one = group_commit(Path(d), threads=1, per_thread=max(1, args.fsync_appends // GC_THREADS))
    ratio = max(ours) / max(bare)
    print(f"bare os.write  : {max(bare):>10,.0f} appends/s")
    print(f"SpoolWriter    : {max(ours):>10,.0f} appends/s   ratio {ratio:.2f}")
    print(f"fsync=always, {GC_THREADS} threads: {gc['fsyncs_per_1000_appends']} fsyncs per 1,000 appends "
          f"({gc['appends_per_s']:,} appends/s); 1 thread: {one['fsyncs_per_1000_appends']} "
          f"({one['appends_per_s']:,} appends/s)")
    report("spool_append", {
        "event_bytes": EVENT_BYTES, "appends_per_round": args.events, "rounds": args.rounds,
        "bare_appends_per_s": [round(x) for x in bare], "writer_appends_per_s": [round(x) for x in ours],
        "ratio_of_best": round(ratio, 3), "group_commit": gc, "group_commit_one_thread": one,
    }, figures(args.events, args.rounds, bare, ours, gc, one), machine, env)


def figures(events: int, rounds: int, bare: list[float], ours: list[float], gc: dict, one: dict) -> dict:
    """Per target: conditions reached, figure, same-run baseline."""
    return {
        "spool_append.writer_over_bare": (
            {"event size": EVENT_BYTES, "appends per round": events, "rounds": rounds},
            max(ours), Baseline("bare os.write on an O_APPEND file (best round)", max(bare), "appends/s")),
        "spool_append.fsyncs_per_1000_appends": (
            {"appending threads": GC_THREADS, "appends": gc["appends"]}, gc["fsyncs_per_1000_appends"],
            Baseline("one appending thread", one["fsyncs_per_1000_appends"])),
    }


if __name__ == "__main__":
    main()
