"""The receiver's pod-wide gauges, as Prometheus scrapes a real `--workers 2` receiver (deploy review, finding 3).

Prometheus keeps its scrape connection open, so one worker answers every
scrape. Every worker must still report its gauges (api_keys, api_key_file_ok,
spool_bytes, spool_free_bytes, ready) by itself, and a worker that died must
drop out of them: before, the worker that was never scraped reported zeros
(SpoolshipNoApiKeys fired for ever) and a dead worker's values stayed.
"""

from __future__ import annotations

import http.client
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from receiver.gauges import GAUGE_REFRESH_SECONDS
from tests.helpers import Proc, wait_until

KEYS = "gauge-test-key-0000000001\ngauge-test-key-0000000002\n"
POD_GAUGES = ("spoolship_receiver_api_keys", "spoolship_receiver_api_key_file_ok", "spoolship_receiver_spool_bytes",
              "spoolship_receiver_spool_free_bytes", "spoolship_receiver_ready")


def gauges(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in POD_GAUGES:
            out[name] = float(value)
    return out


class Scraper:
    """GET /metrics over one kept-alive connection, as Prometheus does; reconnects if its worker died."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.reconnects = 0

    def scrape(self) -> dict[str, float]:
        try:
            self.conn.request("GET", "/metrics")
            response = self.conn.getresponse()
            body = response.read().decode()
        except (ConnectionError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self.reconnects += 1
            return self.scrape()
        assert response.status == 200
        return gauges(body)

    def close(self) -> None:
        self.conn.close()


def workers(proc: Proc) -> list[psutil.Process]:
    """The supervisor's live worker processes (not multiprocessing's resource tracker, not the dead)."""
    out = []
    for child in psutil.Process(proc.process.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(child.cmdline()):
                out.append(child)
        except psutil.Error:
            continue  # gone while we looked
    return out


@pytest.fixture
def receiver(tmp_path: Path):
    keys = tmp_path / "keys"
    keys.write_text(KEYS)
    past = time.time() - 60
    os.utime(keys, (past, past))
    spool = tmp_path / "spool"
    proc = Proc("receive", "--spool-dir", str(spool), "--port", "0", "--probe-port", "0", "--workers", "2",
                "--threads", "2", "--min-free-bytes", "0", "--fsync", "never", "--segment-bytes", "4096",
                "--api-key-file", str(keys), "--shutdown-delay", "0")
    started = proc.wait_for_log("supervisor started")
    wait_until(lambda: len([r for r in proc.logs if r.get("event") == "receiver listening"]) == 2, timeout=60,
               message="both workers listening")
    yield proc, started["port"], started["probe_port"], spool
    proc.stop()


def _post_until_spool_holds(port: int, nbytes: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = b"[" + b",".join([b'{"pad":"' + b"p" * 200 + b'"}'] * 20) + b"]"
    sent = 0
    while sent < nbytes:
        conn.request("POST", "/v1/events", body, {"Content-Type": "application/json",
                                                  "Authorization": "Bearer gauge-test-key-0000000001"})
        response = conn.getresponse()
        response.read()
        assert response.status == 201
        sent += len(body)
    conn.close()


def test_every_worker_reports_its_gauges_whichever_one_is_scraped(receiver):
    proc, _port, probe_port, _spool = receiver
    time.sleep(GAUGE_REFRESH_SECONDS + 1)  # every worker has refreshed at least once
    scraper = Scraper(probe_port)
    try:
        for _ in range(5):
            seen = scraper.scrape()
            assert seen["spoolship_receiver_api_keys"] == 2, seen
            assert seen["spoolship_receiver_api_key_file_ok"] == 1, seen
            assert seen["spoolship_receiver_ready"] == 1, seen
            assert seen["spoolship_receiver_spool_free_bytes"] > 0, seen
            time.sleep(0.2)
        assert scraper.reconnects == 0, "one kept-alive connection: one worker answered every scrape"
    finally:
        scraper.close()


def test_a_dead_workers_gauges_drop_out(receiver):
    proc, port, probe_port, spool = receiver
    _post_until_spool_holds(port, 200_000)
    scraper = Scraper(probe_port)
    try:
        wait_until(lambda: scraper.scrape()["spoolship_receiver_spool_bytes"] >= 200_000, timeout=30,
                   message="both workers see the spool's bytes")
        victim = workers(proc)[0]
        victim.send_signal(signal.SIGKILL)
        proc.wait_for_log("receiver worker restarted")
        for segment in spool.glob("*.ndjson"):  # what a tailer does once they are shipped
            segment.unlink()
        left = sum(p.stat().st_size for p in spool.glob("*.active"))
        wait_until(lambda: scraper.scrape()["spoolship_receiver_spool_bytes"] <= left + 10_000, timeout=30,
                   message="the dead worker's spool_bytes no longer counted")
        # A worker that drains (SIGTERM) says "not ready" while it does; once it is gone, the pod is ready again.
        survivor = workers(proc)[0]
        survivor.send_signal(signal.SIGTERM)
        wait_until(lambda: survivor.pid not in [w.pid for w in workers(proc)] and len(workers(proc)) == 2,
                   timeout=60, message="the drained worker replaced")
        wait_until(lambda: scraper.scrape()["spoolship_receiver_ready"] == 1, timeout=30,
                   message="ready again once the drained worker is gone")
        seen = scraper.scrape()
        assert seen["spoolship_receiver_api_keys"] == 2 and seen["spoolship_receiver_api_key_file_ok"] == 1, seen
    finally:
        scraper.close()
