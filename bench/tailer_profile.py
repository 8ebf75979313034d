"""Where the running tailer's CPU goes in the steady state: per thread, and optionally per C symbol or syscall.

The same work as bench/tailer.py's steady state (a 20,000-line warm-up file shipped,
then a 200,000-line file of 200-byte events, one tailer process against kinesalite
with 4 shards), measured from outside the process so that nothing in it changes:

- the tailer's CPU for the file, user and system, and each thread's (``/proc``
  through psutil: the loop, the ``--concurrency`` delivery threads, the rest);
- its CPU per second with nothing to ship (``--idle-seconds``, before the file);
- with ``--py-spy FILE``, py-spy's samples of the threads running Python (holding the GIL)
  as collapsed stacks, summarized per function (self and inclusive);
- with ``--perf FILE``, ``perf record`` sampling on CPU time (works without hardware
  counters, as on this machine's VMs: libpython, kernel, libcrypto... see
  ``perf report -i FILE --sort dso``); with ``--strace FILE``, ``strace -f -c``'s
  syscall counts (slows the tailer: read the counts, not the CPU).

Not a target and not judged: a tool for aiming a cut. Its figures vary ±10 % between
runs of the same code here, so a change's effect is shown by the per-thread split,
the symbols or the syscall counts, and judged by bench/tailer.py (docs/performance.md).

usage: bench/tailer_profile.py [--aggregate] [--lines N] [--perf FILE | --py-spy FILE | --strace FILE]
                               [--idle-seconds S]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # not bench/ first: bench/tailer.py would shadow the package
    sys.path[0] = str(ROOT)

from bench.tailer import SHARDS, tail_cmd, write_file  # noqa: E402
from tests.servers.kinesis import Kinesalite  # noqa: E402

__all__ = ["main"]


def _thread_times(ps: psutil.Process) -> dict[int, tuple[float, float]]:
    return {t.id: (t.user_time, t.system_time) for t in ps.threads()}


def _wait_shipped(spool: Path, process: subprocess.Popen, timeout_seconds: float = 600) -> None:
    deadline = time.monotonic() + timeout_seconds
    while any(spool.glob("*.ndjson")):
        if process.poll() is not None:
            raise RuntimeError(f"the tailer exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError("the file was not shipped in time")
        time.sleep(0.01)


def _recorder(args, pid: int) -> subprocess.Popen | None:
    if args.perf:
        if not shutil.which("perf"):
            raise SystemExit("perf not found (Debian: apt-get install linux-perf)")
        cmd = ["perf", "record", "-F", "1999", "-p", str(pid), "-o", args.perf]
    elif args.py_spy:
        py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if not py_spy:
            raise SystemExit("py-spy not found (it comes with the bench extras: make setup)")
        # Python-level stacks (perf sees only the eval loop on 3.11). --gil: only samples of a thread holding
        # the GIL, i.e. running Python (a thread waiting for a socket, a lock or the GIL is not sampled; C code
        # that releases the GIL — hashing, pread, sendall — is perf's to see). --nonblocking: the tailer is
        # never paused, so its CPU figures stay comparable. Raw (collapsed) stacks: summarize_stacks below.
        cmd = [py_spy, "record", "--nonblocking", "--gil", "-r", "500", "-f", "raw", "-t", "-o", args.py_spy, "-p", str(pid)]
    elif args.strace:
        if not shutil.which("strace"):
            raise SystemExit("strace not found (Debian: apt-get install strace)")
        cmd = ["strace", "-f", "-c", "-o", args.strace, "-p", str(pid)]
    else:
        return None
    recorder = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the file arrives
    return recorder


_LINE_NUMBER = re.compile(r":\d+\)$")


def summarize_stacks(path: Path, top: int = 25) -> str:
    """Samples per function, self and inclusive, from py-spy's collapsed stacks (``frame;frame;... count``)."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames[0].startswith("thread ("):  # "thread (0x7f…): put-records_0" with -t
            name = frames.pop(0).partition("): ")[2] or "?"
            name = name.rstrip("0123456789").rstrip("_-") or name  # the delivery threads together
            threads[name] = threads.get(name, 0) + int(count)
        frames = [_LINE_NUMBER.sub(")", frame) for frame in frames]  # "f (file.py:12)" -> "f (file.py)"
        total += int(count)
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + int(count)
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + int(count)
    share = ", ".join(f"{name} {100 * n / max(total, 1):.0f} %"
                      for name, n in sorted(threads.items(), key=lambda item: item[1], reverse=True))
    lines = [f"py-spy: {total} samples holding the GIL" + (f" (by thread: {share})" if share else ""),
             "self % / inclusive %, by function:"]
    for frame, count in sorted(own.items(), key=lambda item: item[1], reverse=True)[:top]:
        lines.append(f"  {100 * count / max(total, 1):5.1f} / {100 * inclusive[frame] / max(total, 1):5.1f}  {frame}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aggregate", action="store_true", help="profile the tailer with --aggregate")
    parser.add_argument("--lines", type=int, default=200_000, help="lines of the measured file")
    parser.add_argument("--warm-up-lines", type=int, default=20_000)
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="CPU measured with nothing to ship")
    recorders = parser.add_mutually_exclusive_group()
    recorders.add_argument("--perf", metavar="FILE", help="perf record (CPU-time sampling) into FILE")
    recorders.add_argument("--strace", metavar="FILE", help="strace -f -c syscall counts into FILE")
    recorders.add_argument("--py-spy", metavar="FILE", help="py-spy record (Python stacks, collapsed) into FILE")
    args = parser.parse_args(argv)
    why_not = Kinesalite.available()
    if why_not:
        raise SystemExit(f"kinesalite is needed: {why_not} (make kinesalite)")

    work = Path(tempfile.mkdtemp(prefix="tailer-profile-"))
    server = Kinesalite().start()
    process = None
    try:
        warm_up, measured, spool = work / "warm-up.ndjson", work / "measured.ndjson", work / "spool"
        write_file(warm_up, args.warm_up_lines)
        write_file(measured, args.lines)
        spool.mkdir()
        os.link(warm_up, spool / "warmup-00000001.ndjson")
        stream = server.create_stream(shards=SHARDS)
        cmd = tail_cmd(spool, stream, server.endpoint, ["--aggregate"] if args.aggregate else [])
        process = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        ps = psutil.Process(process.pid)
        _wait_shipped(spool, process)
        before = sum(ps.cpu_times()[:2])
        time.sleep(args.idle_seconds)
        idle_ms = (sum(ps.cpu_times()[:2]) - before) / args.idle_seconds * 1000

        recorder = _recorder(args, process.pid)
        threads, cpu, started = _thread_times(ps), ps.cpu_times(), time.monotonic()
        os.link(measured, spool / "measured-00000001.ndjson")  # appears whole: a sealed segment
        _wait_shipped(spool, process)
        wall = time.monotonic() - started
        after_threads, after = _thread_times(ps), ps.cpu_times()
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)  # both write their output on SIGINT
            recorder.wait(timeout=60)
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(timeout=60)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    user, system = after.user - cpu.user, after.system - cpu.system
    mode = "aggregated" if args.aggregate else "plain"
    print(f"{mode}: {args.lines:,} lines in {wall:.1f} s; CPU {user + system:.3f} s "
          f"(user {user:.3f}, system {system:.3f}), {(user + system) / args.lines * 1e6:.2f} µs a line; "
          f"idle {idle_ms:.1f} ms of CPU a second")
    per_thread = sorted(((u - threads.get(tid, (0.0, 0.0))[0], s - threads.get(tid, (0.0, 0.0))[1])
                         for tid, (u, s) in after_threads.items()), key=sum, reverse=True)
    print("threads, user+system CPU-s (the loop is usually first, then the delivery threads):")
    for u, s in per_thread:
        if u + s >= 0.005:
            print(f"  {u + s:.3f}  (user {u:.3f}, system {s:.3f})")
    if args.perf:
        print(f"perf report -i {args.perf} --stdio --sort dso   # or --sort sym")
    if args.strace:
        print(f"syscall counts: {args.strace}")
    if args.py_spy:
        print(summarize_stacks(Path(args.py_spy)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
