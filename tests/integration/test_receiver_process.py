"""The receiver as real processes: SIGTERM under load, --workers 2, kill -9 of a worker."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import psutil
import requests

from spooler import SegmentState, list_segments
from tests.helpers import spool_events, start_receiver
from tests.load import Load


def test_sigterm_under_load_finishes_requests_seals_and_exits_zero(spool_dir):
    proc, url = start_receiver(spool_dir, "--threads", "4")
    load = Load(lambda: url).start()
    time.sleep(1.0)
    assert proc.stop(signal.SIGTERM) == 0
    load.stop()
    assert load.acked, "the load got some 201s"
    assert set(load.statuses) == {201}, load.statuses
    ids = [e["_id"] for e in spool_events(spool_dir)]
    assert set(load.acked) <= set(ids), "every acknowledged event is in the spool"
    assert len(ids) == len(set(ids))
    assert {s.state for s in list_segments(spool_dir)} == {SegmentState.SEALED}


def test_two_workers_share_the_port_restart_after_kill9_and_seal_on_sigterm(spool_dir):
    proc, url = start_receiver(spool_dir, "--workers", "2", "--threads", "4")
    deadline = time.monotonic() + 30
    while sum(1 for r in proc.logs if r.get("event") == "receiver listening") < 2:
        assert time.monotonic() < deadline, "".join(proc.raw)
        time.sleep(0.05)
    load = Load(lambda: url, clients=6, keepalive=False).start()
    time.sleep(1.0)
    parent = psutil.Process(proc.process.pid)
    workers = [c for c in parent.children() if "spawn" in " ".join(c.cmdline())]
    assert len(workers) == 2, [c.cmdline() for c in parent.children()]
    os.kill(workers[0].pid, signal.SIGKILL)
    proc.wait_for_log("receiver worker restarted", timeout=30)
    while sum(1 for r in proc.logs if r.get("event") == "receiver listening") < 3:
        assert time.monotonic() < deadline + 30, "".join(proc.raw)
        time.sleep(0.05)
    time.sleep(1.0)
    # Both live workers take traffic: each writes its own segments.
    metrics = requests.get(url + "/metrics", timeout=5).text
    assert "spoolship_receiver_events_accepted_total" in metrics
    assert proc.stop(signal.SIGTERM) == 0
    load.stop()

    writers = {s.name.writer for s in list_segments(spool_dir)}
    assert len(writers) >= 3, f"two workers plus the restarted one wrote segments: {writers}"
    states = {s.name.writer: s.state for s in list_segments(spool_dir)}
    killed = [w for w, st in states.items() if st is SegmentState.ORPHANED]
    assert len(killed) <= 1, "only the SIGKILLed worker leaves an orphan; the rest are sealed"
    ids = [e["_id"] for e in spool_events(spool_dir)]
    missing = set(load.acked) - set(ids)
    assert not missing, f"{len(missing)} acknowledged events missing"
    # A worker killed after its write but before its answer leaves a copy the client then
    # sends again; any other duplicate is a bug.
    twice = {i for i, n in Counter(ids).items() if n > 1}
    assert twice <= load.resent, f"duplicated without a resend: {sorted(twice - load.resent)[:5]}"


def test_sigterm_turns_readiness_off_while_requests_are_still_served(spool_dir):
    proc, url = start_receiver(spool_dir, "--shutdown-delay", "2")
    assert requests.get(url + "/readyz", timeout=5).status_code == 200
    os.kill(proc.process.pid, signal.SIGTERM)
    time.sleep(0.3)
    ready = requests.get(url + "/readyz", timeout=5)
    assert ready.status_code == 503 and ready.json()["reason"] == "shutting down"
    assert requests.post(url + "/v1/events", json={"late": 1}, timeout=5).status_code == 201
    assert proc.process.wait(30) == 0
    assert [e["late"] for e in spool_events(spool_dir)] == [1]


def test_two_workers_share_the_probe_port_and_it_aggregates_their_metrics(spool_dir):
    proc, url = start_receiver(spool_dir, "--workers", "2", "--threads", "2", "--probe-port", "0")
    probe_port = proc.wait_for_log("supervisor started")["probe_port"]
    assert probe_port and probe_port != int(url.rsplit(":", 1)[1])
    deadline = time.monotonic() + 30
    while sum(1 for r in proc.logs if r.get("event") == "receiver listening") < 2:
        assert time.monotonic() < deadline, "".join(proc.raw)
        time.sleep(0.05)
    assert {r["probe_port"] for r in proc.logs if r.get("event") == "receiver listening"} == {probe_port}
    for n in range(20):
        r = requests.post(url + "/v1/events", json={"n": n}, headers={"Connection": "close"}, timeout=10)
        assert r.status_code == 201
    probe = f"http://127.0.0.1:{probe_port}"
    assert requests.get(probe + "/healthz", timeout=5).json() == {"status": "ok"}
    assert requests.get(probe + "/readyz", timeout=5).status_code == 200
    metrics = requests.get(probe + "/metrics", timeout=5).text
    assert "spoolship_receiver_events_accepted_total 20.0" in metrics, "both workers' counts, merged"
    assert requests.get(url + "/metrics", timeout=5).status_code == 404
    assert proc.stop(signal.SIGTERM) == 0
