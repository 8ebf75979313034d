"""One destination down while another keeps flowing: the healthy one does not slow, the down one loses nothing.

Two routes in one receiver (2 workers) and one tailer process (a loop per route), each route's stream behind
a fault proxy of its own on the same Kinesis-API server. A baseline with both up, then the "flaky" route's
endpoint goes down (every connection reset) for ``OUTAGE_SECONDS`` — the issue's minute (``SPOOLSHIP_OUTAGE_SECONDS``
sets another) — then comes back. The flaky route's spool has a small
cap, so during the outage its requests get 503 with Retry-After (its clients wait and send again) while the
steady route's keep getting 201s.

Shown: the steady route's p99 from 201 to readable in its stream during the outage is within 2× its own
baseline p99 + 0.5 s (measured in the same run; a coupling through a shared pool, lock or backoff would add
seconds), and so is its POST latency; every acknowledged event of both routes arrives, the flaky route's after
the recovery; no 5xx but 503s, and those only for the flaky route.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import threading
import time

import requests

from tests.faults.harness import SUMMARIES
from tests.helpers import Proc, segments_left, wait_until
from tests.servers.fault_proxy import FaultProxy
from tests.servers.kinesis import kinesis_client

OUTAGE_SECONDS = float(os.environ.get("SPOOLSHIP_OUTAGE_SECONDS") or 60)
BASELINE_SECONDS = 15.0


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values)


class Arrivals(threading.Thread):
    """Follows a stream (every shard, from the start) and notes when each ``_id`` is first readable."""

    def __init__(self, endpoint: str, stream: str) -> None:
        super().__init__(daemon=True)
        self.client = kinesis_client(endpoint)
        self.stream = stream
        self.seen: dict[str, float] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        import orjson

        iterators = {s["ShardId"]: self.client.get_shard_iterator(StreamName=self.stream, ShardId=s["ShardId"],
                                                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
                     for s in self.client.list_shards(StreamName=self.stream)["Shards"]}
        while not self.stop_event.is_set():
            for shard, iterator in list(iterators.items()):
                page = self.client.get_records(ShardIterator=iterator, Limit=10000)
                now = time.monotonic()
                iterators[shard] = page["NextShardIterator"]
                for record in page["Records"]:
                    self.seen.setdefault(orjson.loads(record["Data"])["_id"], now)
            time.sleep(0.05)


class RouteClients:
    """Clients posting single events of one type; a 503 waits Retry-After (at most 0.5 s) and sends again."""

    def __init__(self, url: str, kind: str, clients: int = 2, rate: float = 40.0) -> None:
        self.url, self.kind, self.rate = url, kind, rate
        self.acked: dict[str, float] = {}  # _id -> when its 201 arrived
        self.post_seconds: list[tuple[float, float]] = []  # (when, how long) of each 201
        self.statuses: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(c,), daemon=True) for c in range(clients)]

    def start(self) -> RouteClients:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _run(self, client: int) -> None:
        rng = random.Random(f"{self.kind}{client}")
        session = requests.Session()
        n = 0
        while not self._stop.is_set():
            event = {"_id": f"{self.kind}-{client}-{n}", "type": self.kind, "pad": "p" * rng.randint(50, 400)}
            n += 1
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    r = session.post(self.url + "/v1/events", json=event, timeout=10)
                except requests.RequestException:
                    session = requests.Session()
                    continue
                done = time.monotonic()
                with self._lock:
                    self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
                if r.status_code == 201:
                    with self._lock:
                        self.acked[event["_id"]] = done
                        self.post_seconds.append((done, done - started))
                    break
                assert r.status_code == 503 and "Retry-After" in r.headers, r.text
                time.sleep(min(0.5, float(r.headers["Retry-After"])))
            time.sleep(rng.expovariate(self.rate))


def test_one_destination_down_does_not_slow_another_and_loses_nothing(kinesis, tmp_path):
    spool = tmp_path / "spool"
    streams = {route: kinesis.create_stream(shards=2) for route in ("steady", "flaky")}
    proxies = {route: FaultProxy(kinesis.port, seed=7) for route in streams}
    config = tmp_path / "routes.toml"
    config.write_text(f"""
spool_dir = "{spool}"
[routing]
field = "type"
default = "steady"
[routes.steady]
destination = "steady"
[routes.flaky]
destination = "flaky"
values = ["flaky"]
max_spool_bytes = "160KiB"
[destinations.steady]
type = "kinesis"
stream = "{streams['steady']}"
endpoint_url = "{proxies['steady'].endpoint}"
[destinations.flaky]
type = "kinesis"
stream = "{streams['flaky']}"
endpoint_url = "{proxies['flaky'].endpoint}"
""")
    receiver = Proc("receive", "--config", str(config), "--port", "0", "--workers", "2", "--min-free-bytes", "0",
                    "--segment-bytes", "32KiB")
    url = f"http://127.0.0.1:{receiver.wait_for_log('supervisor started')['port']}"
    wait_until(lambda: sum(1 for r in receiver.logs if r.get("event") == "receiver listening") >= 2, timeout=60)
    tailer = Proc("tail", "--config", str(config), "--linger", "0.05", "--poll-interval", "0.5",
                  "--checkpoint-interval", "0.2", "--max-backoff", "0.5")
    wait_until(lambda: sum(1 for r in tailer.logs if r.get("event") == "tailer started") == 2, timeout=60)
    arrivals = Arrivals(kinesis.endpoint, streams["steady"])
    arrivals.start()
    steady = RouteClients(url, "steady").start()
    flaky = RouteClients(url, "flaky").start()

    time.sleep(BASELINE_SECONDS)
    outage_started = time.monotonic()
    proxies["flaky"].down = True
    time.sleep(OUTAGE_SECONDS)
    outage_ended = time.monotonic()
    proxies["flaky"].down = False
    time.sleep(3)
    steady.stop()
    flaky.stop()
    assert receiver.stop(signal.SIGTERM) == 0
    for route in streams:
        wait_until(lambda r=route: segments_left(spool / r) == 0, timeout=120, message=f"{route} drained")
    wait_until(lambda: set(steady.acked) <= set(arrivals.seen), timeout=60, message="steady events all read back")
    arrivals.stop_event.set()
    assert tailer.stop(signal.SIGTERM) == 0
    for proxy in proxies.values():
        proxy.close()

    def latencies(start: float, end: float) -> list[float]:
        return [arrivals.seen[i] - at for i, at in steady.acked.items() if start + 2 <= at < end]

    def posts(start: float, end: float) -> list[float]:
        return [took for at, took in steady.post_seconds if start + 2 <= at < end]

    baseline = latencies(outage_started - BASELINE_SECONDS + 3, outage_started)
    during = latencies(outage_started, outage_ended)
    post_baseline, post_during = posts(outage_started - BASELINE_SECONDS + 3, outage_started), posts(
        outage_started, outage_ended)
    flaky_delivered = {line.split(b'"_id":"')[1].split(b'"')[0].decode()
                       for line in kinesis.read_lines(streams["flaky"])}
    lost = set(flaky.acked) - flaky_delivered
    summary = (f"destination down {OUTAGE_SECONDS:.0f}s: steady p99 201->readable {p99(baseline) * 1000:.0f} ms "
               f"baseline, {p99(during) * 1000:.0f} ms during ({len(baseline)}/{len(during)} events); POST p99 "
               f"{p99(post_baseline) * 1000:.0f}/{p99(post_during) * 1000:.0f} ms; flaky acknowledged "
               f"{len(flaky.acked)}, lost {len(lost)}, statuses steady {steady.statuses} flaky {flaky.statuses}")
    SUMMARIES.append(summary)
    print(summary)
    assert not lost, f"{len(lost)} acknowledged events of the down destination lost, e.g. {sorted(lost)[:5]}"
    assert set(steady.acked) <= set(arrivals.seen)
    assert len(baseline) > 100 and len(during) > 100, summary
    assert p99(during) <= 2 * p99(baseline) + 0.5, summary
    assert p99(post_during) <= 2 * p99(post_baseline) + 0.5, summary
    assert flaky.statuses.get(503, 0) > 0, "the down destination's route reached its cap and refused (503)"
    assert set(steady.statuses) == {201}, "the steady route never got a refusal"
    assert proxies["flaky"].counts["refused"] > 0
    late = [at for i, at in flaky.acked.items() if at > outage_ended]
    assert late, "the flaky route took events again after the recovery"
