"""A worker's peak RSS when clients send the largest requests it accepts, 4 at a time.

For sizing memory limits (a pod's receiver container: workers × this). One
`spoolship receive` worker (8 threads, default limits); 4 client threads send
the same maximal gzip batch in a loop, retrying 503s as a client would, for a
few seconds per shape. "Maximal" is the largest body of that shape that the
worker takes (201) under the default limits: the parse-memory estimate just
under --max-parse-bytes, or --max-events / --max-event-bytes / --max-inflated-bytes,
whichever binds first. The worker's peak is the kernel's high-water mark
(VmHWM, reset per shape). Run again with a larger --max-parse-bytes (so that all
4 can be in flight at once) to see what raising it costs.

    .venv/bin/python bench/receiver_memory.py [--seconds 5] [--max-parse-mib 32 128] [--one-worker]
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import pin_env, progress, report  # noqa: E402
from receiver.config import (  # noqa: E402
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_INFLATED_BYTES,
    DEFAULT_MAX_PARSE_BYTES,
)
from receiver.cost import ParseCost, decoding_bytes, serializing_bytes  # noqa: E402

TYPICAL = {"type": "page_view", "url": "https://shop.example/products/12345?ref=abc",
           "user": {"id": "u-1234567", "tags": ["a", "b", "c"]}, "ts": 1700000000123,
           "props": {"x": 1.5, "y": 2, "z": "hello world"},
           "ua": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"}


STAMPS = ',"_id":"%s","_received_at":"2026-11-26T07:45:42.123Z"' % ("0" * 26)


def estimate(body: bytes, events: int) -> int:
    """What the worker will hold for this body (gzip, raw about a quarter of it): the most of its phases."""
    cost = ParseCost()
    cost.add(body)
    output = len(body) + events * len(STAMPS)  # compact JSON of these bodies is as long as they are
    return max(decoding_bytes(len(body) // 4, cost), serializing_bytes(cost, events, output))


def largest(make, budget: int, most: int) -> tuple[bytes, int]:
    """The largest ``make(n)`` (body, events) whose estimate fits the budget, n ≤ most, by bisection."""
    low, high = 1, most
    while low < high:
        mid = (low + high + 1) // 2
        body, events = make(mid)
        if estimate(body, events) <= budget and len(body) <= DEFAULT_MAX_INFLATED_BYTES:
            low = mid
        else:
            high = mid - 1
    return make(low)


def shapes(budget: int) -> dict[str, tuple[bytes, int]]:
    string_bytes = DEFAULT_MAX_EVENT_BYTES - 200  # room for the stamps
    return {
        "typical events": largest(lambda n: (json.dumps([TYPICAL] * n).encode(), n), budget, DEFAULT_MAX_EVENTS),
        "max events, tiny": largest(lambda n: (json.dumps([{"i": i} for i in range(n)]).encode(), n), budget,
                                    DEFAULT_MAX_EVENTS),
        "1 MB ASCII strings": largest(lambda n: (json.dumps([{"s": "x" * string_bytes}] * n).encode(), n),
                                      budget, 20),
        "1 MB non-ASCII strings": largest(
            lambda n: (json.dumps([{"s": "😀" + "x" * (string_bytes - 8)}] * n, ensure_ascii=False).encode(), n),
            budget, 20),
        "empty objects in events": largest(
            lambda n: (json.dumps([{"a": [{}] * 1000}] * n, separators=(",", ":")).encode(), n), budget, 5000),
    }


def peak(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise KeyError("VmHWM")


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise KeyError("VmRSS")


def start_worker(spool: Path, max_parse_bytes: int) -> tuple[subprocess.Popen, str, Path]:
    process = subprocess.Popen(
        [sys.executable, "-m", "spoolship", "receive", "--spool-dir", str(spool), "--port", "0",
         "--min-free-bytes", "0", "--fsync", "never", "--max-parse-bytes", str(max_parse_bytes),
         "--max-spool-bytes", str(64 * 1024**3), "--segment-bytes", str(64 * 1024**2)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=pin_env())
    for line in process.stdout:
        if '"receiver listening"' in line:
            return process, f"http://127.0.0.1:{json.loads(line)['port']}", spool
    raise RuntimeError("receiver did not start")


def stop_worker(worker: tuple[subprocess.Popen, str, Path]) -> None:
    process, _url, spool = worker
    process.terminate()
    process.wait(30)
    shutil.rmtree(spool, ignore_errors=True)


def run_shape(worker: tuple[subprocess.Popen, str, Path], mib: int, name: str, body: bytes, events: int,
              seconds: float) -> dict:
    process, url, _spool = worker
    before = rss(process.pid)
    compressed = gzip.compress(body, compresslevel=6)
    Path(f"/proc/{process.pid}/clear_refs").write_text("5")
    statuses = storm(url, compressed, seconds)
    row = {"max_parse_mib": mib, "shape": name, "events": events, "inflated_bytes": len(body),
           "gzip_bytes": len(compressed), "estimate_bytes": estimate(body, events), "rss_before_bytes": before,
           "peak_rss_bytes": peak(process.pid), "rss_after_bytes": rss(process.pid), "statuses": statuses}
    progress(f"--max-parse-bytes {mib} MiB, {name}: {len(body) / 1e6:.1f} MB in {events} events "
             f"(estimate {row['estimate_bytes'] / 1e6:.1f} MB): RSS {before / 1e6:.1f} MB before, peak "
             f"{row['peak_rss_bytes'] / 1e6:.1f}, after {row['rss_after_bytes'] / 1e6:.1f}; answers {statuses}")
    return row


def storm(url: str, body: bytes, seconds: float, clients: int = 4) -> dict[int, int]:
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        session = requests.Session()
        while time.monotonic() < deadline:
            r = session.post(url + "/v1/events", data=body, timeout=120,
                             headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
            with lock:
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 503:
                time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="storm length per shape")
    parser.add_argument("--max-parse-mib", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--one-worker", action="store_true", help="all shapes one after another on one worker")
    args = parser.parse_args()
    results = []
    default_budget = DEFAULT_MAX_PARSE_BYTES
    batches = shapes(default_budget)  # the largest the default settings take, sent to every budget
    for mib in args.max_parse_mib:
        worker = None
        try:
            for name, (body, events) in batches.items():
                if worker is None or not args.one_worker:
                    if worker is not None:
                        stop_worker(worker)
                    worker = start_worker(Path(tempfile.mkdtemp(prefix="bench-memory-", dir=Path(__file__).parent)),
                                          mib * 1024**2)
                    for _ in range(20):
                        requests.post(worker[1] + "/v1/events", json=[TYPICAL], timeout=10)
                results.append(run_shape(worker, mib, name, body, events, args.seconds))
        finally:
            if worker is not None:
                stop_worker(worker)
    worst = {mib: max(r["peak_rss_bytes"] for r in results if r["max_parse_mib"] == mib)
             for mib in args.max_parse_mib}
    for mib, value in worst.items():
        print(f"--max-parse-bytes {mib} MiB: worst peak RSS of one worker, 4 concurrent maximal gzip batches: "
              f"{value / 1e6:.1f} MB")
    report("receiver_memory", {"worst_peak_rss_bytes": {str(k): v for k, v in worst.items()}, "runs": results},
           figures(results, args.seconds))


CLIENTS = 4


def figures(results: list[dict], seconds: float) -> dict:
    """The worst peak at the default --max-parse-bytes, against the worker's RSS before the storms."""
    from bench.verdict import Baseline

    default_mib = DEFAULT_MAX_PARSE_BYTES >> 20
    runs = [r for r in results if r["max_parse_mib"] == default_mib]
    if not runs:
        return {}
    return {"receiver_memory.worst_peak_rss": (
        {"concurrent clients": CLIENTS, "--max-parse-bytes": default_mib, "seconds per shape": seconds},
        round(max(r["peak_rss_bytes"] for r in runs) / 1e6, 1),
        Baseline("the worker's RSS before the storms (warmed up)", round(min(r["rss_before_bytes"] for r in runs) / 1e6, 1),
                 "MB"))}


if __name__ == "__main__":
    main()
