"""Counting dead-letter/ toward the cap: a full walk (the old way, the baseline) vs TreeUsage.

A spool holding many dead letters (200,000 by default, as in the hostile review of
the spool) is measured, in the same run:
- the baseline: a walk that stats every file (what every writer did every 2 s);
- TreeUsage on the unchanged, settled folder (one stat), and after one new dead letter
  (one readdir, one stat);
- the interval fsync's window: with a writer appending every 2 ms under
  ``--fsync interval`` (1 s) beside that folder, the oldest acknowledged append not yet
  fsynced, sampled every 5 ms (the review measured 4.0 s with 200,000 files).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
WORK_DIR = Path(__file__).resolve().parent  # work files under bench/bench-*/ (ignored by git)

from bench.common import progress, report  # noqa: E402
from spooler import FsyncPolicy, SpoolWriter, WriterConfig  # noqa: E402
from spooler.tree_usage import SETTLED_SECONDS, TreeUsage  # noqa: E402


def full_walk(path: str) -> int:
    total = 0
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                total += full_walk(entry.path)
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total


def best_of(rounds: int, fn) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def interval_window(spool: Path, seconds: float) -> tuple[float, int]:
    writer = SpoolWriter(WriterConfig(spool, "bench", fsync=FsyncPolicy.INTERVAL, fsync_interval_seconds=1.0,
                                      min_free_bytes=0, max_spool_bytes=2**40))
    acked: list[tuple[float, int]] = []
    stop = threading.Event()

    def append() -> None:
        while not stop.is_set():
            writer.append(b'{"x":1}\n')
            acked.append((time.monotonic(), writer.stats().bytes_appended))
            time.sleep(0.002)

    thread = threading.Thread(target=append)
    thread.start()
    worst, i = 0.0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.005)
        durable, now = writer._commit.durable_seq, time.monotonic()
        while i < len(acked) and acked[i][1] <= durable:
            i += 1
        if i < len(acked):
            worst = max(worst, now - acked[i][0])
    stop.set()
    thread.join()
    fsyncs = writer.stats().fsyncs
    writer.close()
    return worst, fsyncs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dead-letters", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window-seconds", type=float, default=8.0)
    args = parser.parse_args()
    work = WORK_DIR / "bench-capacity"
    shutil.rmtree(work, ignore_errors=True)
    folder = work / "spool" / "dead-letter"
    folder.mkdir(parents=True)
    progress(f"writing {args.dead_letters:,} dead letters")
    for i in range(args.dead_letters):
        (folder / f"w-00000001@{i}.bin").write_bytes(b'{"torn":')
    time.sleep(SETTLED_SECONDS + 0.2)  # quiet long enough to be trusted

    walk = best_of(args.rounds, lambda: full_walk(str(folder)))
    counter = TreeUsage(folder)
    counter.measure()
    unchanged = best_of(args.rounds, counter.measure)

    def one_more() -> None:
        name = folder / f"new-{time.monotonic_ns()}@0.bin"
        name.write_bytes(b"x")
        counter.measure()

    changed = best_of(args.rounds, one_more)
    progress("measuring the interval fsync's window")
    window, fsyncs = interval_window(work / "spool", args.window_seconds)
    shutil.rmtree(work, ignore_errors=True)
    results = {
        "dead_letters": args.dead_letters,
        "full_walk_seconds": round(walk, 4),
        "unchanged_seconds": round(unchanged, 6),
        "one_new_file_seconds": round(changed, 4),
        "walk_over_unchanged": round(walk / unchanged),
        "walk_over_one_new_file": round(walk / changed, 1),
        "interval_window_seconds": round(window, 3),
        "interval_fsyncs": fsyncs,
    }
    print(f"{args.dead_letters:,} dead letters: full walk {walk:.3f}s; unchanged {unchanged * 1e6:.0f}µs "
          f"({walk / unchanged:,.0f}x less); one new file {changed:.3f}s ({walk / changed:.1f}x less); "
          f"interval fsync window {window:.2f}s with --fsync-interval 1", file=sys.stderr)
    report("capacity_scan", results)


if __name__ == "__main__":
    main()
