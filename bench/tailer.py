"""The tailer's CPU next to a naive boto3 put_records loop in the same run, against kinesalite.

Two measurements, each contender (the naive loop, the tailer plain, the tailer
with ``--aggregate``) in its own process, its own user+sys CPU read from
/proc (psutil):

- **Steady state** (the targets; a sidecar runs for weeks, start-up is not its
  cost): each process first ships a warm-up file (imports, clients, connection
  pools, the first calls); its CPU is read when that file is shipped (for the
  tailer: deleted from the spool), then a file of ``--steady-lines`` 200-byte
  lines arrives (hard-linked into the spool under a segment name, atomically),
  and the CPU is read again when it is shipped. The ratio is the tailer's CPU
  for the file over the naive loop's for the same file, round by round
  (``--rounds``): plain <= 0.20, aggregated <= 0.08 (bench/targets.py).
- **Whole process** (reported, not judged — absolute CPU-seconds vary about 2x
  between machines here): a spool of ``--lines`` lines shipped from start to
  exit, CPU-seconds per million lines and peak RSS (target < 91 MiB, Fluent
  Bit's), and the Kinesis records and PUT payload units it took (aggregated:
  at least 50 lines per record).

Shorter runs (``--lines``, ``--steady-lines``) report their figures as "not
measured at the target".
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # not bench/: bench/receiver.py and bench/tailer.py would shadow the packages
    sys.path[0] = str(ROOT)

from bench.common import Machine, environment, event_line, pin_env, progress, report  # noqa: E402
from bench.verdict import Baseline  # noqa: E402
from tests.servers.kinesis import Kinesalite  # noqa: E402

PUT_PAYLOAD_UNIT = 25 * 1024
LINE_BYTES = 200
SHARDS = 4


def write_spool(spool: Path, lines: int, segment_bytes: int = 16 * 1024**2) -> list[Path]:
    spool.mkdir(parents=True, exist_ok=True)
    paths, buf, seq = [], [], 0
    size = 0
    for n in range(lines):
        line = event_line(n, LINE_BYTES)
        buf.append(line)
        size += len(line)
        if size >= segment_bytes or n == lines - 1:
            seq += 1
            path = spool / f"bench-{seq:08d}.ndjson"
            path.write_bytes(b"".join(buf))
            paths.append(path)
            buf, size = [], 0
    return paths


def measure(cmd: list[str], env: dict, done) -> dict:
    """Whole process: CPU and peak RSS from start until ``done()`` (or its exit)."""
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ps = psutil.Process(process.pid)
    peak = 0
    started = time.monotonic()
    cpu = None
    while True:
        try:
            peak = max(peak, ps.memory_info().rss)
            cpu = _cpu(ps)
        except psutil.NoSuchProcess:
            break
        if done() or process.poll() is not None:
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    _stop(process, done)
    return {"cpu_seconds": cpu, "wall_seconds": elapsed, "peak_rss_mib": peak / 1024**2}


def _cpu(ps: psutil.Process) -> float:
    times = ps.cpu_times()  # /proc/<pid>/stat: every thread of the process, not its children
    return times.user + times.system


def _stop(process: subprocess.Popen, done) -> None:
    if process.poll() is None:
        process.terminate()
    process.wait(120)
    if process.returncode not in (0, -15, 1) and not done():
        raise RuntimeError(process.stderr.read().decode()[-2000:])


def _wait_for(condition, process: subprocess.Popen, ps: psutil.Process, peak: list[int],
              timeout_seconds: float = 1800) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        if process.poll() is not None:
            raise RuntimeError(f"exited early ({process.returncode}): {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"not done after {timeout_seconds:.0f} s")
        peak[0] = max(peak[0], ps.memory_info().rss)
        time.sleep(0.01)


def tail_cmd(spool: Path, stream: str, endpoint: str, extra: list[str]) -> list[str]:
    """The tailer as every measurement here runs it (bench/tailer_profile.py too)."""
    return [sys.executable, "-m", "spoolship", "tail", "--spool-dir", str(spool), "--stream", stream,
            "--endpoint-url", endpoint, "--log-level", "warning", *extra]


def steady_tailer(spool: Path, stream: str, endpoint: str, extra: list[str], warm_up: Path, steady: Path,
                  env: dict) -> dict:
    """The tailer's CPU for ``steady`` alone: from the warm-up file shipped to ``steady`` shipped."""
    spool.mkdir(parents=True)
    os.link(warm_up, spool / "warmup-00000001.ndjson")
    process = subprocess.Popen(tail_cmd(spool, stream, endpoint, extra), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    ps, peak = psutil.Process(process.pid), [0]
    try:
        def shipped() -> bool:
            return not any(spool.glob("*.ndjson"))

        _wait_for(shipped, process, ps, peak)
        cpu_before, started = _cpu(ps), time.monotonic()
        os.link(steady, spool / "steady-00000001.ndjson")  # appears whole: a sealed segment
        _wait_for(shipped, process, ps, peak)
        cpu, elapsed = _cpu(ps) - cpu_before, time.monotonic() - started
    finally:
        _stop(process, lambda: True)
    return {"cpu_seconds": cpu, "wall_seconds": elapsed, "peak_rss_mib": peak[0] / 1024**2}


def steady_naive(stream: str, endpoint: str, warm_up: Path, steady: Path, env: dict) -> dict:
    """The naive loop's CPU for ``steady`` alone (it pauses after the warm-up file and at the end)."""
    cmd = [sys.executable, str(ROOT / "bench" / "naive_put_records.py"), "--pause", stream, endpoint,
           str(warm_up), str(steady)]
    process = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    ps = psutil.Process(process.pid)
    try:
        _expect(process, "warm")
        cpu_before, started = _cpu(ps), time.monotonic()
        process.stdin.write("\n")
        process.stdin.flush()
        _expect(process, "done")
        cpu, elapsed = _cpu(ps) - cpu_before, time.monotonic() - started
        peak = ps.memory_info().rss
        process.stdin.write("\n")
        process.stdin.flush()
    finally:
        _stop(process, lambda: True)
    return {"cpu_seconds": cpu, "wall_seconds": elapsed, "peak_rss_mib": peak / 1024**2}


def _expect(process: subprocess.Popen, word: str) -> None:
    line = process.stdout.readline().strip()
    if line != word:
        raise RuntimeError(f"naive loop said {line!r}, not {word!r}: {process.stderr.read()[-2000:]}")


def payload_units(server: Kinesalite, stream: str) -> tuple[int, int]:
    records = server.read_records(stream)
    return len(records), sum(math.ceil((len(r["Data"]) + len(r["PartitionKey"])) / PUT_PAYLOAD_UNIT)
                             for r in records)


CONTENDERS = [("naive", None), ("plain", []), ("aggregated", ["--aggregate"])]


def run_steady(server: Kinesalite, work: Path, args, env: dict) -> dict:
    """``--rounds`` rounds of naive, plain, aggregated on the same steady file; per contender, a list per round."""
    warm_up, steady = work / "warm-up.ndjson", work / "steady.ndjson"
    write_file(warm_up, args.warm_up_lines)
    write_file(steady, args.steady_lines)
    rounds: dict[str, list[dict]] = {name: [] for name, _ in CONTENDERS}
    for n in range(args.rounds):
        for name, extra in CONTENDERS:
            progress(f"steady state, round {n + 1}/{args.rounds}, {name}: {args.steady_lines:,} lines "
                     f"after {args.warm_up_lines:,} ...")
            stream = server.create_stream(shards=SHARDS)
            if name == "naive":
                result = steady_naive(stream, server.endpoint, warm_up, steady, env)
            else:
                result = steady_tailer(work / f"steady-{name}-{n}", stream, server.endpoint, extra, warm_up, steady,
                                       env)
            result["cpu_us_per_line"] = result["cpu_seconds"] / args.steady_lines * 1e6
            rounds[name].append({k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()})
    for name in ("plain", "aggregated"):
        for mine, naive in zip(rounds[name], rounds["naive"], strict=True):
            mine["over_naive_cpu"] = round(mine["cpu_seconds"] / naive["cpu_seconds"], 3)
    return rounds


def write_file(path: Path, lines: int) -> None:
    with open(path, "wb") as f:
        for start in range(0, lines, 10_000):
            f.write(b"".join(event_line(n, LINE_BYTES) for n in range(start, min(lines, start + 10_000))))


def run_whole(server: Kinesalite, work: Path, lines: int, env: dict) -> dict:
    per_million = 1_000_000 / lines
    master = work / "master"
    files = write_spool(master, lines)
    results = {}
    for name, extra in CONTENDERS:
        stream = server.create_stream(shards=SHARDS)
        if name == "naive":
            progress(f"whole process, naive boto3 loop: {lines:,} lines ...")
            cmd = [sys.executable, str(ROOT / "bench" / "naive_put_records.py"), stream, server.endpoint,
                   *map(str, files)]
            result = measure(cmd, env, lambda: False)
        else:
            spool = work / name
            shutil.copytree(master, spool)
            progress(f"whole process, spoolship tail ({name}): {lines:,} lines ...")
            result = measure(tail_cmd(spool, stream, server.endpoint, extra), env, lambda s=spool: not any(s.glob("*.ndjson")))
        if name == "aggregated":
            records, units = payload_units(server, stream)
        else:  # one 200-byte line per record: one PUT payload unit each, by construction
            records = units = lines
        result["cpu_seconds_per_million_lines"] = round(result["cpu_seconds"] * per_million, 2)
        result["records"] = records
        result["lines_per_record"] = round(lines / records, 1)
        result["put_payload_units_per_million_lines"] = round(units * per_million)
        result["kinesis_records_per_million_lines"] = round(records * per_million)
        results[name] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000, help="whole-process runs (start-up included)")
    parser.add_argument("--steady-lines", type=int, default=200_000, help="the steady-state file")
    parser.add_argument("--warm-up-lines", type=int, default=20_000, help="shipped before the steady-state file")
    parser.add_argument("--rounds", type=int, default=3, help="steady-state rounds")
    args = parser.parse_args()
    why_not = Kinesalite.available()
    if why_not:
        sys.exit(f"bench/tailer.py needs kinesalite: {why_not}")
    env_doc, machine = environment(), Machine()
    server = Kinesalite().start()
    env = pin_env()
    work = Path(tempfile.mkdtemp(prefix="bench-tailer-", dir=ROOT / "bench"))
    try:
        steady = run_steady(server, work, args, env)
        results = run_whole(server, work, args.lines, env)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print_tables(args, steady, results)
    whole = {name: round(results[name]["cpu_seconds_per_million_lines"]
                         / results["naive"]["cpu_seconds_per_million_lines"], 3) for name in ("plain", "aggregated")}
    report("tailer", {"lines": args.lines, "steady_lines": args.steady_lines, "warm_up_lines": args.warm_up_lines,
                      "line_bytes": LINE_BYTES, "shards": SHARDS, "results": results, "steady": steady,
                      "plain_over_naive_cpu": whole["plain"], "aggregated_over_naive_cpu": whole["aggregated"],
                      "steady_plain_over_naive_cpu": [r["over_naive_cpu"] for r in steady["plain"]],
                      "steady_aggregated_over_naive_cpu": [r["over_naive_cpu"] for r in steady["aggregated"]]},
           figures(args.lines, results, args.steady_lines, steady), machine, env_doc)


def print_tables(args, steady: dict, results: dict) -> None:
    print(f"Steady state: {args.steady_lines:,} lines after a warm-up of {args.warm_up_lines:,}, "
          f"{args.rounds} round(s)")
    print(f"{'':12} {'CPU-s':>14} {'µs/line':>14} {'× naive':>14} {'wall s':>14}")
    for name in ("naive", "plain", "aggregated"):
        runs = steady[name]

        def span(key: str, fmt: str, runs=runs) -> str:
            values = [r[key] for r in runs if key in r]
            if not values:
                return "—"
            low, high = min(values), max(values)
            return format(low, fmt) if low == high else f"{low:{fmt}}–{high:{fmt}}"

        print(f"{name:12} {span('cpu_seconds', '.2f'):>14} {span('cpu_us_per_line', '.2f'):>14} "
              f"{span('over_naive_cpu', '.3f'):>14} {span('wall_seconds', '.1f'):>14}")
    print(f"Whole process: {args.lines:,} lines, start-up included")
    print(f"{'':12} {'CPU-s/M lines':>14} {'lines/record':>13} {'records/M':>10} {'PUT units/M':>12} {'peak RSS':>9}")
    for name in ("naive", "plain", "aggregated"):
        r = results[name]
        print(f"{name:12} {r['cpu_seconds_per_million_lines']:>14} {r['lines_per_record']:>13} "
              f"{r['kinesis_records_per_million_lines']:>10,} {r['put_payload_units_per_million_lines']:>12,} "
              f"{r['peak_rss_mib']:>7.0f}MiB")
    naive = results["naive"]["cpu_seconds_per_million_lines"]
    print(f"whole-process CPU over the naive loop's: plain {results['plain']['cpu_seconds_per_million_lines'] / naive:.3f}, "
          f"aggregated {results['aggregated']['cpu_seconds_per_million_lines'] / naive:.3f} (start-up included; "
          "reported, not judged)")


def figures(lines: int, results: dict, steady_lines: int, steady: dict) -> dict:
    """Per target: conditions reached, figure, same-run baseline (the naive loop, or plain for records)."""
    run = {"lines": lines, "line size": LINE_BYTES, "shards": SHARDS}
    steady_run = {"steady-state lines": steady_lines, "line size": LINE_BYTES, "shards": SHARDS,
                  "rounds": len(steady["naive"])}
    naive_steady = Baseline("naive boto3 loop, same file, same round",
                            [r["cpu_seconds"] for r in steady["naive"]], "CPU-s")
    naive_rss = Baseline("naive boto3 loop", results["naive"]["peak_rss_mib"], "MiB")
    return {
        "tailer.plain_steady_over_naive": (steady_run, [r["cpu_seconds"] for r in steady["plain"]], naive_steady),
        "tailer.aggregated_steady_over_naive": (steady_run, [r["cpu_seconds"] for r in steady["aggregated"]],
                                                naive_steady),
        "tailer.aggregated_lines_per_record": (run, results["aggregated"]["lines_per_record"],
                                               Baseline("plain", results["plain"]["lines_per_record"])),
        "tailer.plain_peak_rss": (run, results["plain"]["peak_rss_mib"], naive_rss),
        "tailer.aggregated_peak_rss": (run, results["aggregated"]["peak_rss_mib"], naive_rss),
    }


if __name__ == "__main__":
    main()
