"""Tailer CPU per million 200-byte lines shipped to kinesalite, plain and aggregated,
next to the naive boto3 put_records loop in the same run.

Each contender runs as its own process on the same pre-written spool; its own
user+sys CPU seconds are measured (psutil), normalized per million lines.
Targets (bench/targets.py, stated for a million 200-byte lines on 4 shards, so
that start-up does not dominate): plain <= 10 CPU-s per million (the naive loop
is the same-run baseline), aggregated <= 2 with at least 50x fewer Kinesis
records than lines; RSS below Fluent Bit's ~91 MiB. A shorter --lines run
reports its figures as "not measured at the target".
"""

from __future__ import annotations

import argparse
import math
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
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ps = psutil.Process(process.pid)
    peak = 0
    started = time.monotonic()
    cpu = None
    while True:
        try:
            peak = max(peak, ps.memory_info().rss)
            times = ps.cpu_times()
            cpu = times.user + times.system
        except psutil.NoSuchProcess:
            break
        if done() or process.poll() is not None:
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    if process.poll() is None:
        process.terminate()
    process.wait(120)
    if process.returncode not in (0, -15, 1) and not done():
        raise RuntimeError(process.stderr.read().decode()[-2000:])
    return {"cpu_seconds": cpu, "wall_seconds": elapsed, "peak_rss_mib": peak / 1024**2}


def payload_units(server: Kinesalite, stream: str) -> tuple[int, int]:
    records = server.read_records(stream)
    return len(records), sum(math.ceil((len(r["Data"]) + len(r["PartitionKey"])) / PUT_PAYLOAD_UNIT)
                             for r in records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    per_million = 1_000_000 / args.lines
    why_not = Kinesalite.available()
    if why_not:
        sys.exit(f"bench/tailer.py needs kinesalite: {why_not}")
    env_doc, machine = environment(), Machine()
    server = Kinesalite().start()
    env = pin_env()
    work = Path(tempfile.mkdtemp(prefix="bench-tailer-", dir=ROOT / "bench"))
    results = {}
    try:
        master = work / "master"
        files = write_spool(master, args.lines)
        for name, extra in [("naive", None), ("plain", []), ("aggregated", ["--aggregate"])]:
            stream = server.create_stream(shards=SHARDS)
            if name == "naive":
                progress(f"naive boto3 loop: {args.lines:,} lines ...")
                cmd = [sys.executable, str(ROOT / "bench" / "naive_put_records.py"), stream, server.endpoint,
                       *map(str, files)]
                result = measure(cmd, env, lambda: False)
            else:
                spool = work / name
                shutil.copytree(master, spool)
                progress(f"spoolship tail ({name}): {args.lines:,} lines ...")
                cmd = [sys.executable, "-m", "spoolship", "tail", "--spool-dir", str(spool), "--stream", stream,
                       "--endpoint-url", server.endpoint, "--log-level", "warning", *extra]
                result = measure(cmd, env, lambda s=spool: not any(s.glob("*.ndjson")))
            if name == "aggregated":
                records, units = payload_units(server, stream)
            else:  # one 200-byte line per record: one PUT payload unit each, by construction
                records = units = args.lines
            result["cpu_seconds_per_million_lines"] = round(result["cpu_seconds"] * per_million, 2)
            result["records"] = records
            result["lines_per_record"] = round(args.lines / records, 1)
            result["put_payload_units_per_million_lines"] = round(units * per_million)
            result["kinesis_records_per_million_lines"] = round(records * per_million)
            results[name] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()}
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    naive, plain, agg = results["naive"], results["plain"], results["aggregated"]
    print(f"{'':12} {'CPU-s/M lines':>14} {'lines/record':>13} {'records/M':>10} {'PUT units/M':>12} {'peak RSS':>9}")
    for name in ("naive", "plain", "aggregated"):
        r = results[name]
        print(f"{name:12} {r['cpu_seconds_per_million_lines']:>14} {r['lines_per_record']:>13} "
              f"{r['kinesis_records_per_million_lines']:>10,} {r['put_payload_units_per_million_lines']:>12,} "
              f"{r['peak_rss_mib']:>7.0f}MiB")
    ratio_plain = plain["cpu_seconds_per_million_lines"] / naive["cpu_seconds_per_million_lines"]
    ratio_agg = agg["cpu_seconds_per_million_lines"] / naive["cpu_seconds_per_million_lines"]
    print(f"CPU over the naive loop's: plain {ratio_plain:.2f}, aggregated {ratio_agg:.2f} (whole process, start-up "
          "included)")
    report("tailer", {"lines": args.lines, "line_bytes": LINE_BYTES, "shards": SHARDS, "results": results,
                      "plain_over_naive_cpu": round(ratio_plain, 3), "aggregated_over_naive_cpu": round(ratio_agg, 3)},
           figures(args.lines, results), machine, env_doc)


def figures(lines: int, results: dict) -> dict:
    """Per target: conditions reached, figure, same-run baseline (the naive loop, or plain for records)."""
    run = {"lines": lines, "line size": LINE_BYTES, "shards": SHARDS}
    naive = results["naive"]
    naive_cpu = Baseline("naive boto3 loop", naive["cpu_seconds_per_million_lines"], "CPU-s")
    naive_rss = Baseline("naive boto3 loop", naive["peak_rss_mib"], "MiB")
    return {
        "tailer.plain_cpu_per_million": (run, results["plain"]["cpu_seconds_per_million_lines"], naive_cpu),
        "tailer.aggregated_cpu_per_million": (run, results["aggregated"]["cpu_seconds_per_million_lines"], naive_cpu),
        "tailer.aggregated_lines_per_record": (run, results["aggregated"]["lines_per_record"],
                                               Baseline("plain", results["plain"]["lines_per_record"])),
        "tailer.plain_peak_rss": (run, results["plain"]["peak_rss_mib"], naive_rss),
        "tailer.aggregated_peak_rss": (run, results["aggregated"]["peak_rss_mib"], naive_rss),
    }


if __name__ == "__main__":
    main()
