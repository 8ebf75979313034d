"""Plots for docs/performance.md from bench/results/end_to_end_series.json (matplotlib, PNG)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERIES = ROOT / "bench" / "results" / "end_to_end_series.json"
OUT = ROOT / "docs" / "img"


def main() -> None:
    if not SERIES.exists():
        sys.exit(f"{SERIES} is missing: run bench/end_to_end.py first")
    series = json.loads(SERIES.read_text())
    OUT.mkdir(parents=True, exist_ok=True)

    latency = series["latency"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot([r["second"] for r in latency["per_second"]], [r["accepted"] for r in latency["per_second"]])
    top.set_ylabel("events accepted / s")
    top.set_title("Paced single-event POSTs: throughput and 201-to-stream latency")
    seconds = [r["second"] for r in latency["latency_by_second"]]
    bottom.plot(seconds, [r["p50_ms"] for r in latency["latency_by_second"]], label="p50")
    bottom.plot(seconds, [r["p99_ms"] for r in latency["latency_by_second"]], label="p99")
    bottom.axhline(1000, color="grey", linestyle="--", linewidth=1, label="target p99 (1 s)")
    bottom.set_ylabel("201 → readable in stream (ms)")
    bottom.set_xlabel("seconds")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(OUT / "e2e_throughput_latency.png", dpi=110)
    plt.close(fig)

    rows = series["backlog"]
    fig, left = plt.subplots(figsize=(8, 4.5))
    t = [r["t"] for r in rows]
    left.plot(t, [r.get("receiver_rss_mib", 0) for r in rows], label="receiver RSS (largest process)")
    left.plot(t, [r.get("tailer_rss_mib", 0) for r in rows], label="tailer RSS")
    left.set_ylabel("RSS (MiB)")
    left.set_xlabel("seconds with Kinesis unreachable")
    left.set_ylim(bottom=0)
    right = left.twinx()
    right.plot(t, [r["spool_mib"] for r in rows], color="grey", linestyle=":", label="backlog on disk")
    right.set_ylabel("backlog on disk (MiB)")
    lines = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = left.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    left.legend(lines, labels, loc="center right")
    left.set_title("Memory while the backlog grows (Kinesis down, 100-event batches pouring in)")
    fig.tight_layout()
    fig.savefig(OUT / "e2e_rss_backlog.png", dpi=110)
    plt.close(fig)
    print(f"wrote {OUT / 'e2e_throughput_latency.png'} and {OUT / 'e2e_rss_backlog.png'}")


if __name__ == "__main__":
    main()
