"""End to end: a real receiver and tailer in front of kinesalite, on this 2-core machine.

Phases (each reported with CPU and RSS of both processes over time):
  latency    paced single-event POSTs at --rate (1,000/s): p50/p99 from the receiver's
             _received_at to the record's arrival in the stream (ApproximateArrivalTimestamp)
  singles    wrk single-event POSTs for --seconds: sustained events/s = accepted events /
             time until the tailer has shipped them all
  batches    the same with 100-event batches (tailer plain, then --aggregate)
  backlog    Kinesis unreachable while batches pour in: RSS of both processes as the
             backlog on disk grows toward --backlog-bytes
Time series go to bench/results/end_to_end_series.json for bench/plots.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: bench/receiver.py and bench/tailer.py would shadow the packages

from bench.common import RESULTS, pin_env, progress, report  # noqa: E402
from bench.receiver import EVENT, free_port, wrk  # noqa: E402
from tests.servers.fault_proxy import FaultProxy  # noqa: E402
from tests.servers.kinesis import Kinesalite  # noqa: E402


class Stack:
    def __init__(self, server: Kinesalite, work: Path, name: str, tailer_args=(), endpoint: str | None = None):
        self.spool = work / name
        self.stream = server.create_stream(shards=4)
        self.port = free_port()
        env = pin_env()
        base = [sys.executable, "-m", "spoolship"]
        self.receiver = subprocess.Popen(base + ["receive", "--spool-dir", str(self.spool), "--port", str(self.port),
                                                 "--log-level", "error", "--min-free-bytes", "0",
                                                 "--max-spool-bytes", str(4 * 1024**3)],
                                         env=env, stderr=subprocess.DEVNULL)
        self.tailer = subprocess.Popen(base + ["tail", "--spool-dir", str(self.spool), "--stream", self.stream,
                                               "--endpoint-url", endpoint or server.endpoint, "--log-level", "error",
                                               *tailer_args], env=env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("receiver did not start")
            time.sleep(0.1)
        self.sampler = Sampler({"receiver": self.receiver.pid, "tailer": self.tailer.pid}, self.spool)
        self.sampler.start()

    def spool_empty(self) -> bool:
        return not any(self.spool.glob("*.ndjson")) and sum(f.stat().st_size for f in self.spool.glob("*.active")) == \
            self.shipped_active_bytes()

    def shipped_active_bytes(self) -> int:
        try:
            offsets = json.loads((self.spool / "checkpoint.json").read_text())["segments"]
        except (OSError, ValueError, KeyError):
            return -1
        return sum(offsets.get(p.name.rsplit(".", 1)[0], 0) for p in self.spool.glob("*.active"))

    def stop(self) -> None:
        self.sampler.stop()
        for p in (self.receiver, self.tailer):
            p.terminate()
        for p in (self.receiver, self.tailer):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


class Sampler(threading.Thread):
    def __init__(self, pids: dict[str, int], spool: Path, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.spool = spool
        self.interval = interval
        self.series: list[dict] = []
        self._stop_event = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        last = {name: sum(p.cpu_times()[:2]) for name, p in self.procs.items()}
        while not self._stop_event.wait(self.interval):
            row = {"t": round(time.monotonic() - self.t0, 2)}
            for name, p in self.procs.items():
                try:
                    cpu = sum(p.cpu_times()[:2])
                    row[f"{name}_cpu"] = round((cpu - last[name]) / self.interval, 3)
                    row[f"{name}_rss_mib"] = round(p.memory_info().rss / 1024**2, 1)
                    last[name] = cpu
                except psutil.NoSuchProcess:
                    pass
            row["spool_mib"] = round(sum(f.stat().st_size for f in self.spool.glob("*-*.*")
                                         if f.is_file()) / 1024**2, 1) if self.spool.exists() else 0
            self.series.append(row)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


def paced_load(url: str, rate: float, seconds: float, clients: int = 4) -> tuple[int, list[tuple[float, int]]]:
    """Single-event POSTs at ``rate`` per second; returns (accepted, per-second counts)."""
    sent = [0]
    per_second: dict[int, int] = {}
    lock = threading.Lock()
    start = time.monotonic()

    def client(k: int) -> None:
        session = requests.Session()
        interval = clients / rate
        next_at = start + k * interval / clients
        while True:
            now = time.monotonic()
            if now - start >= seconds:
                return
            if next_at > now:
                time.sleep(next_at - now)
            next_at += interval
            r = session.post(url + "/v1/events", data=EVENT, headers={"Content-Type": "application/json"}, timeout=10)
            if r.status_code == 201:
                with lock:
                    sent[0] += 1
                    second = int(time.monotonic() - start)
                    per_second[second] = per_second.get(second, 0) + 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sent[0], sorted(per_second.items())


def arrival_latencies(server: Kinesalite, stream: str) -> list[tuple[float, float]]:
    """(received_at epoch, seconds from _received_at to arrival) for every record."""
    from tailer.kpl import deaggregate

    out = []
    for record in server.read_records(stream):
        arrived = record["ApproximateArrivalTimestamp"].timestamp()
        for _key, data in deaggregate(record["Data"]):
            received = datetime.fromisoformat(json.loads(data)["_received_at"].replace("Z", "+00:00")).timestamp()
            out.append((received, arrived - received))
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def wait_shipped(stack: Stack, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if stack.spool_empty():
            return time.monotonic()
        time.sleep(0.1)
    raise RuntimeError("the tailer did not catch up in time")


def throughput_phase(server, work, name, body, events_per_request, seconds, tailer_args=()) -> dict:
    stack = Stack(server, work, name, tailer_args)
    try:
        start = time.monotonic()
        result = wrk(stack.port, body, seconds, 32, work)
        accepted = int(result["rps"] * seconds) * events_per_request
        done = wait_shipped(stack, 600)
        series = stack.sampler.series
    finally:
        stack.stop()
    busy = [r for r in series if r["t"] <= done - stack.sampler.t0]
    return {
        "accepted_events_per_s": round(result["rps"] * events_per_request),
        "sustained_events_per_s": round(accepted / (done - start)),
        "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"],
        "receiver_cpu_cores": round(sum(r.get("receiver_cpu", 0) for r in busy) / max(1, len(busy)), 2),
        "tailer_cpu_cores": round(sum(r.get("tailer_cpu", 0) for r in busy) / max(1, len(busy)), 2),
        "receiver_peak_rss_mib": max((r.get("receiver_rss_mib", 0) for r in series), default=0),
        "tailer_peak_rss_mib": max((r.get("tailer_rss_mib", 0) for r in series), default=0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--latency-seconds", type=float, default=20)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--backlog-bytes", type=int, default=1024**3)
    parser.add_argument("--backlog-seconds", type=float, default=60)
    args = parser.parse_args()
    if Kinesalite.available():
        sys.exit(f"bench/end_to_end.py needs kinesalite: {Kinesalite.available()}")
    if shutil.which("wrk") is None:
        sys.exit("bench/end_to_end.py needs wrk (`make bench` installs it)")
    server = Kinesalite().start()
    work = Path(tempfile.mkdtemp(prefix="bench-e2e-", dir=ROOT / "bench"))
    results, series = {}, {}
    try:
        progress(f"latency at {args.rate:.0f} events/s for {args.latency_seconds:.0f}s ...")
        stack = Stack(server, work, "latency")
        try:
            accepted, per_second = paced_load(f"http://127.0.0.1:{stack.port}", args.rate, args.latency_seconds)
            wait_shipped(stack, 120)
            time.sleep(0.5)
            latencies = arrival_latencies(server, stack.stream)
        finally:
            stack.stop()
        lat = [d for _, d in latencies]
        t0 = min(r for r, _ in latencies)
        by_second: dict[int, list[float]] = {}
        for received, delay in latencies:
            by_second.setdefault(int(received - t0), []).append(delay)
        results["latency"] = {
            "target_rate": args.rate, "achieved_rate": round(accepted / args.latency_seconds),
            "events": len(lat), "p50_ms": round(percentile(lat, 50) * 1000), "p99_ms": round(percentile(lat, 99) * 1000),
            "max_ms": round(max(lat) * 1000),
        }
        series["latency"] = {"per_second": [{"second": s, "accepted": n} for s, n in per_second],
                             "latency_by_second": [{"second": s, "p50_ms": round(percentile(v, 50) * 1000),
                                                    "p99_ms": round(percentile(v, 99) * 1000)}
                                                   for s, v in sorted(by_second.items())],
                             "processes": stack.sampler.series}

        batch = b"[" + b",".join([EVENT] * 100) + b"]"
        for name, body, per, tailer_args in [("singles", EVENT, 1, []), ("batches_plain", batch, 100, []),
                                             ("batches_aggregated", batch, 100, ["--aggregate"])]:
            progress(f"{name} for {args.seconds}s, then until shipped ...")
            results[name] = throughput_phase(server, work, name, body, per, args.seconds, tailer_args)

        progress(f"backlog: Kinesis unreachable, batches for up to {args.backlog_seconds:.0f}s ...")
        proxy = FaultProxy(server.port)
        proxy.down = True
        stack = Stack(server, work, "backlog", endpoint=proxy.endpoint)
        try:
            deadline = time.monotonic() + args.backlog_seconds
            while time.monotonic() < deadline:
                wrk(stack.port, batch, 5, 16, work)
                if sum(f.stat().st_size for f in stack.spool.glob("*-*.*")) >= args.backlog_bytes:
                    break
        finally:
            stack.stop()
            proxy.close()
        rows = stack.sampler.series
        results["backlog"] = {
            "backlog_mib": max(r["spool_mib"] for r in rows),
            "receiver_rss_mib_first_5s": max(r.get("receiver_rss_mib", 0) for r in rows if r["t"] <= 5),
            "receiver_rss_mib_peak": max(r.get("receiver_rss_mib", 0) for r in rows),
            "tailer_rss_mib_first_5s": max(r.get("tailer_rss_mib", 0) for r in rows if r["t"] <= 5),
            "tailer_rss_mib_peak": max(r.get("tailer_rss_mib", 0) for r in rows),
        }
        series["backlog"] = rows
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    singles, batches = results["singles"], results["batches_aggregated"]
    target_rate = 12_000_000 / 3600
    for name in ("singles", "batches_plain", "batches_aggregated"):
        r = results[name]
        cores = r["receiver_cpu_cores"] + r["tailer_cpu_cores"]
        r["cores_per_million_events_per_hour"] = round(cores / (r["sustained_events_per_s"] * 3600 / 1e6), 4)
    print(json.dumps(results, indent=2))
    print(f"12M events/hour = {target_rate:,.0f} events/s; one 2-core machine sustains "
          f"{singles['sustained_events_per_s']:,} (single-event POSTs) / {batches['sustained_events_per_s']:,} "
          f"(100-event batches, aggregated)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "end_to_end_series.json").write_text(json.dumps(series))
    report("end_to_end", {"results": results, "met": {
        "p99_le_1s_at_1000_per_s": results["latency"]["p99_ms"] <= 1000,
        "receiver_rss_flat_le_80mb": results["backlog"]["receiver_rss_mib_peak"] <= 80,
        "tailer_rss_flat_le_150mb": results["backlog"]["tailer_rss_mib_peak"] <= 150,
    }})


if __name__ == "__main__":
    main()
