"""End to end: a real receiver and tailer in front of kinesalite, on this 2-core machine.

Phases (each reported with CPU and RSS of both processes over time):
  baseline   the same loads against a bare Flask+waitress endpoint (bench/bare_app.py),
             in this run: the pacer alone at --rate, and wrk's single events and batches
  latency    single-event POSTs paced at --rate (1,000/s) by wrk with a pacing script
             (bench/loadgen.py), 16 connections: p50/p99 from the receiver's _received_at
             to the record's arrival in the stream (ApproximateArrivalTimestamp). The rate
             the receiver accepted and the pacer's own CPU are measured, and the p99 target
             is judged only when that rate reached the target's (bench/targets.py)
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
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # not bench/: bench/receiver.py and bench/tailer.py would shadow the packages
    sys.path[0] = str(ROOT)

from bench.common import RESULTS, Machine, OtherLoad, environment, progress, report  # noqa: E402
from bench.e2e_stack import Stack, wait_shipped  # noqa: E402
from bench.loadgen import wrk, wrk_paced  # noqa: E402
from bench.receiver import BATCH, EVENT, bare_cmd, free_port, start  # noqa: E402
from bench.verdict import Baseline  # noqa: E402
from tests.servers.fault_proxy import FaultProxy  # noqa: E402
from tests.servers.kinesis import Kinesalite  # noqa: E402

PACER_CONNECTIONS = 16
WRK_CONNECTIONS = 32


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


def baseline_phase(args, work: Path) -> dict:
    """The pacer alone and wrk's loads against the bare endpoint: what this machine does right now."""
    port = free_port()
    bare = start(bare_cmd(port, 8), port)
    try:
        wrk(port, EVENT, 1, WRK_CONNECTIONS)  # warm-up
        pacer = wrk_paced(port, EVENT, args.rate, min(args.latency_seconds, 10), PACER_CONNECTIONS)
        singles = wrk(port, EVENT, args.seconds, WRK_CONNECTIONS)
        batches = wrk(port, BATCH, args.seconds, WRK_CONNECTIONS)
    finally:
        bare.terminate()
        bare.wait(30)
    return {"pacer_alone": pacer, "bare_singles": singles, "bare_batches": batches}


def latency_phase(server, work: Path, rate: float, seconds: float) -> tuple[dict, dict]:
    stack = Stack(server, work, "latency")
    try:
        others = OtherLoad([stack.receiver.pid, stack.tailer.pid, server.process.pid])
        load = wrk_paced(stack.port, EVENT, rate, seconds, PACER_CONNECTIONS)
        others_cores = others.cores(load["wrk_cpu_seconds"])
        wait_shipped(stack, 120)
        time.sleep(0.5)
        latencies = arrival_latencies(server, stack.stream)
    finally:
        stack.stop()
    if not latencies:
        raise RuntimeError("no records reached the stream in the latency phase")
    lat = [d for _, d in latencies]
    t0 = min(r for r, _ in latencies)
    by_second: dict[int, list[float]] = {}
    for received, delay in latencies:
        by_second.setdefault(int(received - t0), []).append(delay)
    full_seconds = [len(v) for s, v in sorted(by_second.items()) if 0 < s < max(by_second)]
    result = {
        "target_rate": rate, "achieved_rate": load["achieved_rate"], "seconds": load["seconds"],
        "accepted": load["accepted"], "non_2xx": load["non_2xx"], "socket_errors": load["socket_errors"],
        "events_read_back": len(lat), "read_back_of_accepted": round(len(lat) / max(1, load["accepted"]), 4),
        "slowest_full_second_events": min(full_seconds, default=None), "others_cpu_cores": others_cores,
        "pacer": {"tool": "wrk + bench/loadgen.py pacing script", "connections": PACER_CONNECTIONS,
                  "cpu_seconds": load["wrk_cpu_seconds"], "cpu_cores": load["wrk_cpu_cores"],
                  "client_p50_ms": load["p50_ms"], "client_p99_ms": load["p99_ms"]},
        "p50_ms": round(percentile(lat, 50) * 1000), "p99_ms": round(percentile(lat, 99) * 1000),
        "max_ms": round(max(lat) * 1000),
    }
    series = {"per_second": [{"second": s, "accepted": len(v)} for s, v in sorted(by_second.items())],
              "latency_by_second": [{"second": s, "p50_ms": round(percentile(v, 50) * 1000),
                                     "p99_ms": round(percentile(v, 99) * 1000)} for s, v in sorted(by_second.items())],
              "processes": stack.sampler.series}
    return result, series


def throughput_phase(server, work, name, body, events_per_request, seconds, tailer_args=()) -> dict:
    stack = Stack(server, work, name, tailer_args)
    try:
        start_at = time.monotonic()
        result = wrk(stack.port, body, seconds, WRK_CONNECTIONS)
        accepted = result["accepted"] * events_per_request
        done = wait_shipped(stack, 600)
        series = stack.sampler.series
    finally:
        stack.stop()
    busy = [r for r in series if r["t"] <= done - stack.sampler.t0]
    return {
        "accepted_events_per_s": round(result["rps"] * events_per_request),
        "sustained_events_per_s": round(accepted / (done - start_at)),
        "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"], "wrk_cpu_cores": result["wrk_cpu_cores"],
        "socket_errors": result["socket_errors_by_kind"],
        "receiver_cpu_cores": round(sum(r.get("receiver_cpu", 0) for r in busy) / max(1, len(busy)), 2),
        "tailer_cpu_cores": round(sum(r.get("tailer_cpu", 0) for r in busy) / max(1, len(busy)), 2),
        "receiver_peak_rss_mib": max((r.get("receiver_rss_mib", 0) for r in series), default=0),
        "tailer_peak_rss_mib": max((r.get("tailer_rss_mib", 0) for r in series), default=0),
    }


def backlog_phase(server, work: Path, backlog_bytes: int, seconds: float) -> tuple[dict, list]:
    proxy = FaultProxy(server.port)
    proxy.down = True
    stack = Stack(server, work, "backlog", endpoint=proxy.endpoint)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and stack.spool_bytes() < backlog_bytes:
            wrk(stack.port, BATCH, 5, 16, expect_2xx=False)
        reached = stack.spool_bytes()
    finally:
        stack.stop()
        proxy.close()
    rows = stack.sampler.series
    first = [r for r in rows if r["t"] <= 5] or rows[:1]
    return {
        "backlog_mib_target": round(backlog_bytes / 1024**2), "backlog_mib": round(reached / 1024**2, 1),
        "receiver_rss_mib_first_5s": max(r.get("receiver_rss_mib", 0) for r in first),
        "receiver_rss_mib_peak": max(r.get("receiver_rss_mib", 0) for r in rows),
        "tailer_rss_mib_first_5s": max(r.get("tailer_rss_mib", 0) for r in first),
        "tailer_rss_mib_peak": max(r.get("tailer_rss_mib", 0) for r in rows),
    }, rows


def figures(results: dict) -> dict:
    lat, base, backlog = results["latency"], results["baseline"], results["backlog"]
    pacer_alone = base["pacer_alone"]
    reached_backlog = {"backlog on disk": backlog["backlog_mib"]}
    return {
        "end_to_end.p99_201_to_stream": (
            {"rate": lat["achieved_rate"], "seconds": lat["seconds"],
             "accepted events read back": lat["read_back_of_accepted"], "receiver workers": 1,
             "pacer CPU": lat["pacer"]["cpu_cores"]},
            lat["p99_ms"],
            Baseline(f"the pacer alone against bare Flask+waitress at {pacer_alone['achieved_rate']:,.0f}/s: "
                     "client p99", pacer_alone["p99_ms"], "ms")),
        "end_to_end.receiver_rss_backlog": (reached_backlog, backlog["receiver_rss_mib_peak"],
                                            Baseline("first 5 s", backlog["receiver_rss_mib_first_5s"], "MiB")),
        "end_to_end.tailer_rss_backlog": (reached_backlog, backlog["tailer_rss_mib_peak"],
                                          Baseline("first 5 s", backlog["tailer_rss_mib_first_5s"], "MiB")),
        "end_to_end.receiver_rss_flat": (reached_backlog, backlog["receiver_rss_mib_peak"],
                                         Baseline("first 5 s", backlog["receiver_rss_mib_first_5s"], "MiB")),
        "end_to_end.tailer_rss_flat": (reached_backlog, backlog["tailer_rss_mib_peak"],
                                       Baseline("first 5 s", backlog["tailer_rss_mib_first_5s"], "MiB")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--latency-seconds", type=float, default=20)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--backlog-bytes", type=int, default=1024**3)
    parser.add_argument("--backlog-seconds", type=float, default=120)
    args = parser.parse_args()
    why_not = Kinesalite.available()
    if why_not:
        sys.exit(f"bench/end_to_end.py needs kinesalite: {why_not}")
    if shutil.which("wrk") is None:
        sys.exit("bench/end_to_end.py needs wrk (`make bench` installs it)")
    env, machine = environment(), Machine()
    server = Kinesalite().start()
    work = Path(tempfile.mkdtemp(prefix="bench-e2e-", dir=ROOT / "bench"))
    results, series = {}, {}
    try:
        progress("baseline: the same loads against bare Flask+waitress ...")
        results["baseline"] = baseline_phase(args, work)
        progress(f"latency at {args.rate:,.0f} events/s for {args.latency_seconds:.0f}s ...")
        results["latency"], series["latency"] = latency_phase(server, work, args.rate, args.latency_seconds)
        for name, body, per, tailer_args in [("singles", EVENT, 1, []), ("batches_plain", BATCH, 100, []),
                                             ("batches_aggregated", BATCH, 100, ["--aggregate"])]:
            progress(f"{name} for {args.seconds}s, then until shipped ...")
            results[name] = throughput_phase(server, work, name, body, per, args.seconds, tailer_args)
            bare = results["baseline"]["bare_singles" if per == 1 else "bare_batches"]
            results[name]["baseline_bare_events_per_s"] = round(bare["rps"] * per)
        progress(f"backlog: Kinesis unreachable, batches for up to {args.backlog_seconds:.0f}s ...")
        results["backlog"], series["backlog"] = backlog_phase(server, work, args.backlog_bytes, args.backlog_seconds)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    for name in ("singles", "batches_plain", "batches_aggregated"):
        r = results[name]
        cores = r["receiver_cpu_cores"] + r["tailer_cpu_cores"]
        r["cores_per_million_events_per_hour"] = round(cores / (r["sustained_events_per_s"] * 3600 / 1e6), 4)
    lat = results["latency"]
    print(f"latency: {lat['achieved_rate']:,.0f} of {lat['target_rate']:,.0f} events/s accepted over "
          f"{lat['seconds']:.0f}s; pacer CPU {lat['pacer']['cpu_cores']:.3f} cores; "
          f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms (201 -> readable)")
    singles, batches = results["singles"], results["batches_aggregated"]
    print(f"12M events/hour = {12_000_000 / 3600:,.0f} events/s; one 2-core machine sustains "
          f"{singles['sustained_events_per_s']:,} (single-event POSTs; bare endpoint "
          f"{singles['baseline_bare_events_per_s']:,}) / {batches['sustained_events_per_s']:,} "
          f"(100-event batches, aggregated)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "end_to_end_series.json").write_text(json.dumps(series))
    report("end_to_end", results, figures(results), machine, env)


if __name__ == "__main__":
    main()
