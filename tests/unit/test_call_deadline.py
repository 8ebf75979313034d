"""Review item 6: a PutRecords call has a wall-clock deadline; a trickling answer never wedges the tailer.

A real endpoint on a real socket answers by trickling (one byte at a time, each well within the read
timeout, so no socket timeout ever fires). The class: the trickle in the status line, in the headers, in
the body. Invariant: the call fails as retryable within its deadline (the watchdog closes the
connection), nothing is lost, the drain timeout is honoured, and /healthz-facing state shows a stuck call.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from spooler import list_segments
from tailer import Shipper, TailerConfig
from tailer.errors import Unavailable
from tailer.kinesis import KinesisSink
from tests.unit.test_shipper import write_lines

BODY = json.dumps({"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1", "ShardId": "shardId-0"}]}).encode()
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: %d\r\n\r\n%s"
          % (len(BODY), BODY))


class TricklingEndpoint:
    """Reads a request, then writes the answer one byte every ``every`` seconds from ``trickle_from``."""

    def __init__(self, trickle_from: int, every: float = 0.3) -> None:
        self.trickle_from, self.every = trickle_from, every
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, rest = data.split(b"\r\n\r\n", 1)
            length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
            while len(rest) < length:
                rest += conn.recv(65536)
            conn.sendall(ANSWER[:self.trickle_from])
            for i in range(self.trickle_from, len(ANSWER)):
                if self._stop.wait(self.every):
                    return
                conn.sendall(ANSWER[i:i + 1])
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


PLACES = {"status line": 5, "headers": 40, "body": len(ANSWER) - len(BODY) + 10}


@pytest.mark.parametrize("place", list(PLACES))
def test_a_trickling_answer_fails_the_call_at_its_deadline(place):
    endpoint = TricklingEndpoint(PLACES[place])
    sink = KinesisSink("s", endpoint_url=endpoint.url, region="us-east-1", read_timeout_seconds=1.0,
                       call_deadline_seconds=1.5)
    outcome = []

    def call():
        started = time.monotonic()
        try:
            sink.put_records([(b"{}\n", "k", None)])
            outcome.append(("ok", time.monotonic() - started))
        except Unavailable as exc:
            outcome.append(("unavailable", time.monotonic() - started, str(exc)))

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(10)
    endpoint.close()
    sink.close()
    assert outcome, "the call was still running 10 s later (1.5 s deadline)"
    assert outcome[0][0] == "unavailable" and outcome[0][1] < 5, outcome


def test_the_drain_timeout_is_honoured_while_a_call_trickles(spool_dir):
    endpoint = TricklingEndpoint(40, every=0.5)
    write_lines(spool_dir, "a", 50)
    sink = KinesisSink("s", endpoint_url=endpoint.url, region="us-east-1", read_timeout_seconds=2.0,
                       call_deadline_seconds=600.0)
    shipper = Shipper(TailerConfig(spool_dir=spool_dir, stream="s", drain_timeout_seconds=1.0,
                                   linger_seconds=0.01, quiet_seconds=0.05), sink)
    stop = threading.Event()
    result = []
    runner = threading.Thread(target=lambda: result.append(shipper.run(stop)), daemon=True)
    runner.start()
    deadline = time.monotonic() + 10
    while endpoint.connections == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert shipper.metrics.longest_call_seconds() > 0.3, "a call in flight is visible (metric, /healthz)"
    stopped = time.monotonic()
    stop.set()
    runner.join(15)
    took = time.monotonic() - stopped
    endpoint.close()
    sink.close()
    assert result == [1], "exits 1 at the drain timeout: data left"
    assert took < 4, f"stopped {took:.1f} s after SIGTERM with --drain-timeout 1"
    assert list_segments(spool_dir, probe=False), "nothing deleted that was not acknowledged"


def test_healthz_reports_a_call_stuck_longer_than_the_stale_period():
    import urllib.error
    import urllib.request

    from tailer.metrics import MetricsServer, TailerMetrics

    metrics = TailerMetrics()
    server = MetricsServer(metrics, "127.0.0.1", 0, stale_seconds=0.3)
    try:
        url = f"http://127.0.0.1:{server.port}/healthz"
        metrics.beat()
        assert urllib.request.urlopen(url, timeout=5).status == 200
        threading.Thread(target=metrics.call_started, daemon=True).start()  # a call from a delivery thread
        time.sleep(0.4)
        metrics.beat()  # the loop itself still turns
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(url, timeout=5)
        assert answer.value.code == 503 and b"call stuck" in answer.value.read()
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read()
        assert b"spoolship_tailer_longest_call_seconds" in scraped
    finally:
        server.close()


@pytest.mark.parametrize("deadlines", [(30.0,), (1.0,), (120.0,), (5.0, 300.0, 30.0)])
def test_healthz_never_calls_a_call_within_its_deadline_stuck(tmp_path, deadlines):
    """Review 2: /healthz said "call stuck" after a fixed 60 s, so `--call-deadline 120` got a tailer waiting
    for a slow but legitimate answer restarted by the kubelet. The period follows the longest deadline."""
    from spoolship.commands.tail import HEALTH_MARGIN_SECONDS, health_stale_seconds
    from tailer.config import TailerConfig

    configs = [TailerConfig(spool_dir=tmp_path, stream="s", call_deadline_seconds=d) for d in deadlines]
    assert health_stale_seconds(configs) == max(deadlines) + HEALTH_MARGIN_SECONDS
    assert health_stale_seconds(configs) > max(deadlines)
