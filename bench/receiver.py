"""Receiver throughput and latency with wrk, against a bare Flask+waitress endpoint in the same run.

Contenders run alternately (best of --rounds), wrk with one thread on the other
core. Reports requests/s, p50/p99 latency and ratios. Targets (2 cores):
single-event POSTs, 1 worker >= 0.9 x bare; 2 workers >= 1.6 x 1 worker;
100-event batches >= 150,000 events/s per worker; worker RSS <= 80 MB after a
million events and while answering 503 at the cap.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: bench/receiver.py and bench/tailer.py would shadow the packages

from bench.common import progress, report  # noqa: E402

EVENT = b'{"type":"page_view","url":"https://shop.example/products/42","ref":"https://search.example/","n":1}'
# A level-2 long string: a JSON array ends in "}]", which would close a plain [[ ... ]] early.
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int) -> subprocess.Popen:
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            return process
        except requests.RequestException:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start: {cmd}")


def wrk(port: int, body: bytes, seconds: int, connections: int, script_dir: Path, *,
        expect_2xx: bool = True) -> dict:
    """Run wrk; a throughput run with any non-2xx answer is an error, not a result."""
    script = script_dir / "post.lua"
    script.write_text(LUA % body.decode())
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}/v1/events"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    if expect_2xx and errors:
        raise RuntimeError(f"{errors} non-2xx answers in a throughput run: the numbers would be meaningless")
    return {"rps": rps, "p50_ms": pct("50"), "p99_ms": pct("99"), "non_2xx": errors}


def receive_cmd(port: int, spool: Path, workers: int, threads: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "spoolship", "receive", "--spool-dir", str(spool), "--port", str(port),
            "--workers", str(workers), "--threads", str(threads), "--log-level", "error", "--min-free-bytes", "0",
            "--max-spool-bytes", str(64 * 1024**3), *extra]


def run_contender(cmd, port, body, seconds, connections, tmp) -> dict:
    process = start(cmd, port)
    try:
        wrk(port, body, 1, connections, tmp)  # warm-up
        return wrk(port, body, seconds, connections, tmp)
    finally:
        process.terminate()
        process.wait(30)


def worker_rss(parent_pid: int) -> list[float]:
    parent = psutil.Process(parent_pid)
    procs = parent.children() or [parent]
    return [p.memory_info().rss / 1024**2 for p in procs]


def memory_run(tmp: Path, threads: int) -> dict:
    """A million events in 100-event batches, then hammering at the cap: RSS per worker."""
    spool = tmp / "mem"
    port = free_port()
    batch = b"[" + b",".join([EVENT] * 100) + b"]"
    process = start(receive_cmd(port, spool, 1, threads) [:-2] + ["--max-spool-bytes", str(128 * 1024**2)], port)
    try:
        wrk(port, batch, 8, 16, tmp, expect_2xx=False)  # reaches the 128 MiB cap on the way
        after_million = worker_rss(process.pid)
        events = sum(f.stat().st_size for f in spool.iterdir() if f.is_file()) // (len(EVENT) + 60)
        at_cap = wrk(port, batch, 5, 16, tmp, expect_2xx=False)
        while_503 = worker_rss(process.pid)
    finally:
        process.terminate()
        process.wait(30)
    return {"approx_events_written": events, "rss_mib_after_load": max(after_million),
            "rss_mib_while_503": max(while_503), "responses_at_cap_non_2xx": at_cap["non_2xx"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/receiver.py needs wrk (apt-get install wrk; `make bench` does it)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-receiver-", dir=ROOT / "bench"))
    batch = b"[" + b",".join([EVENT] * 100) + b"]"
    contenders = {
        "bare": lambda port: [sys.executable, str(ROOT / "bench" / "bare_app.py"), str(port), str(args.threads)],
        "receiver_1w": lambda port: receive_cmd(port, tmp / f"s{port}", 1, args.threads),
        "receiver_2w": lambda port: receive_cmd(port, tmp / f"s{port}", 2, args.threads),
    }
    best: dict[str, dict] = {}
    try:
        for round_ in range(args.rounds):
            for name, make in contenders.items():
                progress(f"round {round_ + 1}: {name}")
                port = free_port()
                result = run_contender(make(port), port, EVENT, args.seconds, args.connections, tmp)
                if name not in best or result["rps"] > best[name]["rps"]:
                    best[name] = result
            progress(f"round {round_ + 1}: batches of 100")
            port = free_port()
            result = run_contender(receive_cmd(port, tmp / f"b{port}", 1, args.threads), port, batch,
                                   args.seconds, args.connections, tmp)
            result["events_per_s"] = result["rps"] * 100
            if "batch_1w" not in best or result["rps"] > best["batch_1w"]["rps"]:
                best["batch_1w"] = result
            for spool in tmp.iterdir():
                shutil.rmtree(spool, ignore_errors=True)
        progress("memory: a million events, then at the cap")
        memory = memory_run(tmp, args.threads)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    one_vs_bare = best["receiver_1w"]["rps"] / best["bare"]["rps"]
    two_vs_one = best["receiver_2w"]["rps"] / best["receiver_1w"]["rps"]
    for name, r in best.items():
        print(f"{name:12} {r['rps']:>10,.0f} req/s   p50 {r['p50_ms']:.2f} ms   p99 {r['p99_ms']:.2f} ms"
              + (f"   {r['events_per_s']:,.0f} events/s" if "events_per_s" in r else ""))
    print(f"1 worker / bare: {one_vs_bare:.2f} (target >= 0.9)   2 workers / 1: {two_vs_one:.2f} (target >= 1.6)")
    print(f"memory: {memory}")
    report("receiver", {
        "results": best, "memory": memory, "one_worker_over_bare": round(one_vs_bare, 3),
        "two_workers_over_one": round(two_vs_one, 3),
        "met": {
            "one_worker_ge_0_9_bare": one_vs_bare >= 0.9,
            "two_workers_ge_1_6": two_vs_one >= 1.6,
            "batch_ge_150k_events_per_s": best["batch_1w"]["events_per_s"] >= 150_000,
            "rss_le_80mb": max(memory["rss_mib_after_load"], memory["rss_mib_while_503"]) <= 80,
        },
    })


if __name__ == "__main__":
    main()
