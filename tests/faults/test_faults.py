"""Every event that got a 201 reaches the stream, whatever breaks in between.

Each scenario drives real load through real processes, breaks something on
purpose, and accounts for every acknowledged ``_id`` (see harness.py).
"""

from __future__ import annotations

import gzip
import os
import random
import signal
import socket
import threading
import time

import psutil
import pytest
import requests

from tests.faults.harness import Load, Pipeline, account
from tests.helpers import wait_until


def assert_nothing_lost(result, load) -> None:
    assert not result.lost, f"{len(result.lost)} acknowledged events lost, e.g. {result.lost[:5]}"
    assert not result.mismatched, f"{len(result.mismatched)} delivered events differ from what was accepted"
    assert load.server_errors == 0, f"server errors: {load.statuses}"
    assert result.acknowledged > 100, "the scenario carried real load"


def test_tailer_kill9_repeatedly_under_load(kinesis, spool_dir):
    pipeline = Pipeline(kinesis, spool_dir, tailer_args=["--checkpoint-interval", "0.5"]).start()
    load = Load(lambda: pipeline.url).start()
    rng = random.Random(11)
    for _ in range(4):
        time.sleep(rng.uniform(0.8, 2.0))
        pipeline.kill9_tailer_and_restart()
    time.sleep(1)
    load.stop()
    codes = pipeline.stop()
    result = account("tailer kill -9 x4", pipeline, load)
    assert_nothing_lost(result, load)
    assert codes == {"receiver": 0, "tailer": 0}


def test_receiver_worker_kill9_then_whole_receiver_kill9(kinesis, spool_dir):
    pipeline = Pipeline(kinesis, spool_dir).start()
    load = Load(lambda: pipeline.url).start()
    time.sleep(1.5)
    os.kill(pipeline.worker_pids()[0], signal.SIGKILL)
    pipeline.notes.append("one worker kill -9")
    pipeline.receiver.wait_for_log("receiver worker restarted", timeout=30)
    time.sleep(1.5)
    pipeline.kill9_receiver()
    time.sleep(0.5)  # clients see connection errors meanwhile and retry
    pipeline.start_receiver()  # same spool: the dead writers' segments are orphans now
    pipeline.notes.append("receiver restarted")
    time.sleep(1.5)
    load.stop()
    codes = pipeline.stop()
    result = account("receiver kill -9 (worker, then all)", pipeline, load)
    assert_nothing_lost(result, load)
    assert any(r.get("event") == "orphaned segment sealed" for r in pipeline.tailer.logs)
    assert codes["tailer"] == 0


def test_kinesis_endpoint_goes_away_and_comes_back(kinesis, spool_dir):
    pipeline = Pipeline(kinesis, spool_dir).start()
    load = Load(lambda: pipeline.url).start()
    time.sleep(1)
    pipeline.proxy.down = True
    pipeline.notes.append("endpoint down 4s")
    time.sleep(4)
    assert pipeline.proxy.counts["refused"] > 0
    pipeline.proxy.down = False
    time.sleep(1.5)
    load.stop()
    pipeline.stop()
    result = account("kinesis endpoint away 4s", pipeline, load)
    assert_nothing_lost(result, load)


@pytest.mark.parametrize("aggregate", [False, True], ids=["plain", "aggregated"])
def test_throttling_partial_failures_500s_and_resets(kinesis, spool_dir, aggregate):
    tailer_args = ["--aggregate"] if aggregate else []
    pipeline = Pipeline(kinesis, spool_dir, tailer_args=tailer_args).start()
    proxy = pipeline.proxy
    proxy.record_failure_rate, proxy.call_error_rate = 0.3, 0.1
    proxy.call_throttle_rate, proxy.call_reset_rate = 0.1, 0.05
    proxy.first_faults = ["error", "reset", "throttle"]  # each at least once, whatever the draws
    load = Load(lambda: pipeline.url).start()
    time.sleep(5)
    load.stop()
    pipeline.stop()
    pipeline.notes.append(f"proxy {dict(proxy.counts)}")
    result = account(f"throttling and errors ({'aggregated' if aggregate else 'plain'})", pipeline, load)
    assert_nothing_lost(result, load)
    assert proxy.counts["records_failed"] > 0 and proxy.counts["errors"] > 0 and proxy.counts["resets"] > 0


def test_spool_full_gives_503_never_500_and_recovers_by_itself(kinesis, spool_dir):
    pipeline = Pipeline(kinesis, spool_dir, receiver_args=["--max-spool-bytes", "300KiB", "--segment-bytes",
                                                           "32KiB"]).start()
    pipeline.proxy.down = True
    load = Load(lambda: pipeline.url, rate_per_client=200).start()
    wait_until(lambda: load.statuses.get(503, 0) > 20, timeout=60, message="the spool filled up")
    ready = requests.get(pipeline.url + "/readyz", timeout=5)
    assert ready.status_code == 503 and "full" in ready.json()["reason"]
    time.sleep(1)
    pipeline.proxy.down = False
    pipeline.notes.append("endpoint down until the spool filled")
    wait_until(lambda: requests.get(pipeline.url + "/readyz", timeout=5).status_code == 200, timeout=60,
               message="ready again once the tailer freed space")
    before = load.statuses[201]
    wait_until(lambda: load.statuses[201] > before + 50, timeout=60, message="accepting again")
    load.stop()
    pipeline.stop()
    result = account("spool full (503) then recovery", pipeline, load)
    assert_nothing_lost(result, load)
    assert load.statuses[503] > 0


def test_graceful_rollout_sigterm_to_receiver_and_tailer_together(kinesis, spool_dir):
    pipeline = Pipeline(kinesis, spool_dir, receiver_args=["--shutdown-delay", "0.5"]).start()
    load = Load(lambda: pipeline.url).start()
    time.sleep(3)
    # As Kubernetes does at pod deletion: both containers get SIGTERM at the same moment.
    os.kill(pipeline.receiver.process.pid, signal.SIGTERM)
    os.kill(pipeline.tailer.process.pid, signal.SIGTERM)
    receiver_code = pipeline.receiver.process.wait(60)
    tailer_code = pipeline.tailer.process.wait(120)
    load.stop()
    pipeline.notes.append("SIGTERM to both")
    pipeline.rss.stop()
    pipeline.proxy.close()
    assert (receiver_code, tailer_code) == (0, 0)
    result = account("graceful rollout (SIGTERM both)", pipeline, load)
    assert_nothing_lost(result, load)
    assert not list(spool_dir.glob("*.ndjson")) and not list(spool_dir.glob("*.active")), "tailer left data behind"


HOSTILE = [
    (b'{"a":', "application/json", {}),
    (b'[{"a":1},', "application/json", {}),
    (b'{"a":1}\n{broken', "application/x-ndjson", {}),
    (b'"a string"', "application/json", {}),
    (b"[1,2,3]", "application/json", {}),
    (b'{"a":"\xff\xfe\xfd"}', "application/json", {}),
    (b"[" * 5000 + b"]" * 5000, "application/json", {}),
    (b'{"a":' * 100 + b"1" + b"}" * 100, "application/json", {}),
    (b'{"big":"' + b"x" * (6 * 1024 * 1024) + b'"}', "application/json", {}),
    (gzip.compress(b'{"bomb":"' + b"0" * (60 * 1024 * 1024) + b'"}'), "application/json", {"Content-Encoding": "gzip"}),
    (b"\x1f\x8b\x08garbage", "application/json", {"Content-Encoding": "gzip"}),
    (b'{"a":1}', "application/xml", {}),
    (b'{"a":1}', "application/json", {"Content-Encoding": "br"}),
    (b'{"a":1}', "application/json; charset=utf-16", {}),
    (b'{"a":1}', "application/json", {"X-Absurd": "x" * 300_000}),  # over waitress's header limit
    (b"", "application/json", {}),
]


def slow_client(url: str, seconds: float) -> None:
    """Sends a request one byte at a time, then gives up (slowloris), bounded in time."""
    host, port = url.split("//")[1].split(":")
    request = b'POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{"slow":'
    deadline = time.monotonic() + seconds
    try:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            for byte in request:
                if time.monotonic() > deadline:
                    return
                sock.sendall(bytes([byte]))
                time.sleep(0.05)
    except OSError:
        pass


def test_bad_input_storm_mixed_with_valid_traffic(kinesis, spool_dir):
    pipeline = Pipeline(kinesis, spool_dir).start()
    load = Load(lambda: pipeline.url).start()
    storm_statuses: dict[int, int] = {}
    stop = threading.Event()

    def storm():
        session = requests.Session()
        rng = random.Random(3)
        while not stop.is_set():
            body, content_type, headers = rng.choice(HOSTILE)
            try:
                r = session.post(pipeline.url + "/v1/events", data=body,
                                 headers={"Content-Type": content_type, **headers}, timeout=15)
                storm_statuses[r.status_code] = storm_statuses.get(r.status_code, 0) + 1
            except requests.RequestException:
                session = requests.Session()

    stormers = [threading.Thread(target=storm) for _ in range(2)]
    slow = [threading.Thread(target=slow_client, args=(pipeline.url, 6)) for _ in range(10)]
    for t in stormers + slow:
        t.start()
    time.sleep(2)
    early_rss = max(pipeline.rss.receiver_samples[-5:])
    time.sleep(6)
    stop.set()
    for t in stormers + slow:
        t.join(30)
    late_rss = max(pipeline.rss.receiver_samples[-5:])
    assert all(p in psutil.pids() for p in pipeline.receiver_pids())
    load.stop()
    pipeline.stop()
    pipeline.notes.append(f"hostile answers {storm_statuses}")
    result = account("bad input storm", pipeline, load)
    assert_nothing_lost(result, load)
    assert sum(storm_statuses.values()) > 50
    assert all(400 <= code < 500 for code in storm_statuses), storm_statuses
    assert late_rss < early_rss + 40 * 1024**2, f"receiver RSS grew from {early_rss >> 20} to {late_rss >> 20} MiB"
    assert pipeline.rss.receiver_peak < 150 * 1024**2
