"""Receiver throughput and latency with wrk, against a bare Flask+waitress endpoint in the same run.

Contenders run alternately, --rounds times, wrk with one thread on the other core;
each is judged on its best round, the batch rate on its worst (every round must reach
it; bench/targets.py states the conditions: workers,
waitress threads, connections, events per request, seconds and rounds, and wrk not
saturated). The bare endpoint (bench/bare_app.py) reads the body like the receiver
and runs with the receiver's waitress settings; it is measured with the single
event and with the 100-event batch, so every absolute figure has a same-run
baseline. Every ratio is printed per round (a round's figure over the same round's
baseline), next to the servers' own CPU per request, which other processes on a shared
machine move far less than the rates. Memory: RSS per worker after a million events
in 100-event batches, and while answering 503 at the spool cap.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # not bench/: bench/receiver.py and bench/tailer.py would shadow the packages
    sys.path[0] = str(ROOT)

from bench.common import Machine, OtherLoad, environment, progress, report  # noqa: E402
from bench.loadgen import wrk  # noqa: E402
from bench.verdict import Baseline  # noqa: E402

EVENT = b'{"type":"page_view","url":"https://shop.example/products/42","ref":"https://search.example/","n":1}'
BATCH = b"[" + b",".join([EVENT] * 100) + b"]"
MEMORY_EVENTS = 1_000_000
MEMORY_CAP_BYTES = 256 * 1024**2  # more than a million stamped events (~165 bytes each), then refusals


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int) -> subprocess.Popen:
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)  # any answer: it is serving
            return process
        except requests.RequestException:
            time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError(f"server did not start: {cmd}")


def bare_cmd(port: int, threads: int) -> list[str]:
    return [sys.executable, str(ROOT / "bench" / "bare_app.py"), str(port), str(threads)]


def receive_cmd(port: int, spool: Path, workers: int, threads: int, max_spool_bytes: int = 64 * 1024**3) -> list[str]:
    return [sys.executable, "-m", "spoolship", "receive", "--spool-dir", str(spool), "--port", str(port),
            "--workers", str(workers), "--threads", str(threads), "--log-level", "error", "--min-free-bytes", "0",
            "--max-spool-bytes", str(max_spool_bytes)]


def worker_rss(parent_pid: int) -> list[float]:
    parent = psutil.Process(parent_pid)
    procs = parent.children() or [parent]
    return [p.memory_info().rss / 1024**2 for p in procs]


def server_cpu_seconds(parent_pid: int) -> float:
    parent = psutil.Process(parent_pid)
    total = 0.0
    for proc in [parent, *parent.children()]:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def run_contender(cmd, port, body, seconds, connections) -> dict:
    process = start(cmd, port)
    try:
        wrk(port, body, 1, connections)  # warm-up
        others = OtherLoad([process.pid])
        cpu_before = server_cpu_seconds(process.pid)
        result = wrk(port, body, seconds, connections)
        result["others_cpu_cores"] = others.cores(result["wrk_cpu_seconds"])
        # The server's own CPU per request: other processes on the machine change it far less than the rate.
        result["server_cpu_us_per_request"] = round(
            (server_cpu_seconds(process.pid) - cpu_before) / max(1, result["requests"]) * 1e6, 1)
        result["rss_mib"] = round(max(worker_rss(process.pid)), 1)
        return result
    finally:
        process.terminate()
        process.wait(30)


def memory_run(tmp: Path, threads: int, deadline_seconds: float = 120) -> dict:
    """A million events in 100-event batches, then on to the cap and hammering at it: RSS per worker."""
    spool = tmp / "mem"
    port = free_port()
    process = start(receive_cmd(port, spool, 1, threads, MEMORY_CAP_BYTES), port)
    accepted = refused = 0
    deadline = time.monotonic() + deadline_seconds
    try:
        while accepted < MEMORY_EVENTS and time.monotonic() < deadline:
            r = wrk(port, BATCH, 5, 16, expect_2xx=False)
            accepted, refused = accepted + r["accepted"] * 100, refused + r["non_2xx"]
        after_million = worker_rss(process.pid)
        while refused == 0 and time.monotonic() < deadline:  # on to the cap
            r = wrk(port, BATCH, 5, 16, expect_2xx=False)
            accepted, refused = accepted + r["accepted"] * 100, refused + r["non_2xx"]
        at_cap = wrk(port, BATCH, 5, 16, expect_2xx=False)
        while_503 = worker_rss(process.pid)
    finally:
        process.terminate()
        process.wait(30)
    return {"events_accepted": accepted, "rss_mib_after_load": round(max(after_million), 1),
            "rss_mib_while_503": round(max(while_503), 1), "refused_at_cap": at_cap["non_2xx"],
            "accepted_while_at_cap": at_cap["accepted"], "max_spool_bytes": MEMORY_CAP_BYTES}


def contenders(args, tmp: Path) -> dict:
    """name → (command for a port, body, events per request)."""
    return {
        "bare": (lambda port: bare_cmd(port, args.threads), EVENT, 1),
        "receiver_1w": (lambda port: receive_cmd(port, tmp / f"s{port}", 1, args.threads), EVENT, 1),
        "receiver_2w": (lambda port: receive_cmd(port, tmp / f"s{port}", 2, args.threads), EVENT, 1),
        "bare_batch": (lambda port: bare_cmd(port, args.threads), BATCH, 100),
        "batch_1w": (lambda port: receive_cmd(port, tmp / f"b{port}", 1, args.threads), BATCH, 100),
    }


def figures(args, rounds: dict[str, list[dict]], best: dict[str, dict], memory: dict) -> dict:
    def load(*names: str, workers: int, per_request: int) -> dict:
        return {"workers": workers, "events per request": per_request, "connections": args.connections,
                "waitress threads": args.threads, "seconds per round": args.seconds, "rounds": args.rounds,
                "cores": os.cpu_count(),
                "wrk CPU": max(r["wrk_cpu_cores"] for name in names for r in rounds[name]),
                "socket errors": sum(r["socket_errors"] for name in names for r in rounds[name])}

    two_cores = load("receiver_2w", "receiver_1w", workers=2, per_request=1)
    two_cores["CPU of other processes"] = max(best["receiver_2w"]["others_cpu_cores"],
                                              best["receiver_1w"]["others_cpu_cores"])
    return {
        "receiver.one_worker_over_bare": (
            load("receiver_1w", "bare", workers=1, per_request=1), best["receiver_1w"]["rps"],
            Baseline("bare Flask+waitress reading the body (best round)", best["bare"]["rps"], "req/s")),
        "receiver.two_workers_over_one": (
            two_cores, best["receiver_2w"]["rps"],
            Baseline("receiver 1 worker (best round)", best["receiver_1w"]["rps"], "req/s")),
        "receiver.batch_events_per_s": (
            load("batch_1w", workers=1, per_request=100), [r["rps"] * 100 for r in rounds["batch_1w"]],
            Baseline("bare Flask+waitress reading the same batches", best["bare_batch"]["rps"] * 100, "events/s")),
        "receiver.rss_after_million": (
            {"events accepted": memory["events_accepted"]}, memory["rss_mib_after_load"],
            Baseline("bare Flask+waitress after 100-event batches", best["bare_batch"]["rss_mib"], "MiB")),
        "receiver.rss_at_cap": (
            {"refused at the cap": memory["refused_at_cap"]}, memory["rss_mib_while_503"],
            Baseline("bare Flask+waitress after 100-event batches", best["bare_batch"]["rss_mib"], "MiB")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/receiver.py needs wrk (apt-get install wrk; `make bench` does it)")
    env, machine = environment(), Machine()
    tmp = Path(tempfile.mkdtemp(prefix="bench-receiver-", dir=ROOT / "bench"))
    rounds: dict[str, list[dict]] = {}
    try:
        for round_ in range(args.rounds):
            for name, (make, body, per) in contenders(args, tmp).items():
                progress(f"round {round_ + 1}: {name}")
                port = free_port()
                result = run_contender(make(port), port, body, args.seconds, args.connections)
                result["events_per_s"] = round(result["rps"] * per)
                rounds.setdefault(name, []).append(result)
            for spool in tmp.iterdir():
                shutil.rmtree(spool, ignore_errors=True)
        progress("memory: a million events, then at the cap")
        memory = memory_run(tmp, args.threads)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    best = {name: max(runs, key=lambda r: r["rps"]) for name, runs in rounds.items()}
    for name, r in best.items():
        print(f"{name:12} {r['rps']:>10,.0f} req/s   {r['events_per_s']:>10,} events/s   p50 {r['p50_ms']:.2f} ms   "
              f"p99 {r['p99_ms']:.2f} ms   server CPU {r['server_cpu_us_per_request']:,.0f} µs/request   "
              f"wrk CPU {r['wrk_cpu_cores']:.2f}   others' CPU {r['others_cpu_cores']:.2f} cores   (rounds: "
              + ", ".join(f"{x['rps']:,.0f}" for x in rounds[name]) + ")")
    print(f"memory: {memory}")
    per_round = {name: [round(r["rps"], 1) for r in runs] for name, runs in rounds.items()}
    ratios = ratios_per_round(rounds)
    for name, values in ratios.items():
        print(f"ratio {name:34} per round: " + ", ".join(f"{v:.2f}" for v in values)
              + f"   (range {min(values):.2f}–{max(values):.2f})")
    report("receiver", {"best": best, "rounds_rps": per_round, "ratios_per_round": ratios, "memory": memory,
                        "settings": vars(args)}, figures(args, rounds, best, memory), machine, env)


# name → (contender, its baseline, the figure compared): each round's figure over the same round's baseline.
RATIOS = {
    "one_worker_over_bare": ("receiver_1w", "bare", "rps"),
    "two_workers_over_one": ("receiver_2w", "receiver_1w", "rps"),
    "batch_over_bare_batch": ("batch_1w", "bare_batch", "rps"),
    # CPU per request, bare over receiver: what the receiver adds, as load on the machine moves it least.
    "cpu_bare_over_one_worker": ("bare", "receiver_1w", "server_cpu_us_per_request"),
    "cpu_bare_batch_over_batch": ("bare_batch", "batch_1w", "server_cpu_us_per_request"),
}


def ratios_per_round(rounds: dict[str, list[dict]]) -> dict[str, list[float]]:
    return {name: [round(a[key] / b[key], 3) if b[key] else 0.0 for a, b in zip(rounds[top], rounds[bottom],
                                                                                 strict=True)]
            for name, (top, bottom, key) in RATIOS.items()}


if __name__ == "__main__":
    main()
