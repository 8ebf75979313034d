"""Helpers shared by the benchmarks: one JSON line of results, ratios, process sampling."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def report(name: str, results: dict) -> None:
    """Print one JSON line and keep it for bench/run_all.py's table."""
    results = {"bench": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **results}
    line = json.dumps(results, sort_keys=True)
    print(line)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(line + "\n")


def cpu_seconds_of(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def event_line(n: int, size: int = 200) -> bytes:
    """A compact JSON line of exactly ``size`` bytes (with its newline)."""
    head = b'{"n":%d,"type":"page_view","pad":"' % n
    pad = size - len(head) - 3
    return head + b"x" * pad + b'"}\n'


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pin_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("AWS_ACCESS_KEY_ID", "bench")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return env
