"""`make bench`: every benchmark, then bench/results/latest.json, latest.md and the plots.

Each benchmark prints its own ratios against baselines measured in the same run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BENCHES = [
    ("spool_append", ["bench/spool_append.py"]),
    ("receiver", ["bench/receiver.py"]),
    ("tailer", ["bench/tailer.py", "--lines", "1000000"]),
    ("end_to_end", ["bench/end_to_end.py"]),
    ("parse_memory", ["bench/parse_memory.py"]),
    ("receiver_memory", ["bench/receiver_memory.py", "--one-worker", "--max-parse-mib", "32"]),
]


def main() -> None:
    only = set(sys.argv[1:])
    for name, cmd in BENCHES:
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        started = time.monotonic()
        subprocess.run([sys.executable, *cmd], cwd=ROOT, check=True)
        print(f"== {name} took {time.monotonic() - started:.0f}s", flush=True)
    subprocess.run([sys.executable, "bench/plots.py"], cwd=ROOT, check=True)
    latest = {}
    for name, _ in BENCHES:
        path = RESULTS / f"{name}.json"
        if path.exists():
            latest[name] = json.loads(path.read_text())
    (RESULTS / "latest.json").write_text(json.dumps(latest, indent=2, sort_keys=True))
    (RESULTS / "latest.md").write_text(table(latest))
    print((RESULTS / "latest.md").read_text())


def table(latest: dict) -> str:
    rows = ["| benchmark | target | measured | met |", "| --- | --- | --- | --- |"]
    if "spool_append" in latest:
        r = latest["spool_append"]
        rows.append(f"| spool append vs bare os.write (fsync=never) | >= 0.80 | {r['ratio']:.2f} | {r['met']} |")
        rows.append(f"| fsyncs per 1,000 appends (always, 16 threads) | << 1,000 | "
                    f"{r['group_commit']['fsyncs_per_1000_appends']} | True |")
    if "receiver" in latest:
        r = latest["receiver"]
        m = r["met"]
        rows.append(f"| receiver 1 worker / bare Flask+waitress | >= 0.90 | {r['one_worker_over_bare']:.2f} | "
                    f"{m['one_worker_ge_0_9_bare']} |")
        rows.append(f"| receiver 2 workers / 1 worker | >= 1.60 | {r['two_workers_over_one']:.2f} | "
                    f"{m['two_workers_ge_1_6']} |")
        rows.append(f"| receiver 100-event batches, events/s per worker | >= 150,000 | "
                    f"{r['results']['batch_1w']['events_per_s']:,.0f} | {m['batch_ge_150k_events_per_s']} |")
        mem = r["memory"]
        rows.append(f"| receiver worker RSS after load / at the cap (MiB) | <= 80 | "
                    f"{mem['rss_mib_after_load']:.0f} / {mem['rss_mib_while_503']:.0f} | {m['rss_le_80mb']} |")
    if "tailer" in latest:
        r = latest["tailer"]["results"]
        m = latest["tailer"]["met"]
        rows.append(f"| tailer plain CPU-s per million lines (naive: {r['naive']['cpu_seconds_per_million_lines']}) | "
                    f"<= 10 | {r['plain']['cpu_seconds_per_million_lines']} | {m['plain_cpu_le_10']} |")
        rows.append(f"| tailer aggregated CPU-s per million lines | <= 2 | "
                    f"{r['aggregated']['cpu_seconds_per_million_lines']} | {m['aggregated_cpu_le_2']} |")
        rows.append(f"| lines per Kinesis record, aggregated | >= 50 | {r['aggregated']['lines_per_record']} | "
                    f"{m['aggregated_50x_fewer_records']} |")
        rows.append(f"| tailer peak RSS (MiB), plain / aggregated | < 91 | {r['plain']['peak_rss_mib']:.0f} / "
                    f"{r['aggregated']['peak_rss_mib']:.0f} | {m['rss_below_fluent_bit']} |")
    if "end_to_end" in latest:
        r = latest["end_to_end"]["results"]
        m = latest["end_to_end"]["met"]
        rows.append(f"| p99 201 → readable at 1,000 events/s (ms) | <= 1,000 | {r['latency']['p99_ms']} | "
                    f"{m['p99_le_1s_at_1000_per_s']} |")
        rows.append(f"| receiver / tailer RSS peak with growing backlog (MiB) | <= 80 / <= 150 | "
                    f"{r['backlog']['receiver_rss_mib_peak']:.0f} / {r['backlog']['tailer_rss_mib_peak']:.0f} "
                    f"(backlog {r['backlog']['backlog_mib']:.0f} MiB) | "
                    f"{m['receiver_rss_flat_le_80mb'] and m['tailer_rss_flat_le_150mb']} |")
    if "parse_memory" in latest:
        r = latest["parse_memory"]
        rows.append(f"| parse-memory estimate / measured peak, worst shape | >= 1.0 | {r['min_estimate_over_peak']} | "
                    f"{r['min_estimate_over_peak'] >= 1.0} |")
    if "receiver_memory" in latest:
        r = latest["receiver_memory"]
        rows.append(f"| receiver worker peak RSS, 4 concurrent maximal gzip batches (MB) | <= 80 | "
                    f"{r['worst_peak_rss_bytes']['32'] / 1e6:.0f} | {r['met']['peak_le_80mb']} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
