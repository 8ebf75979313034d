"""One client holding many slow connections (slowloris) cannot knock the receiver over.

Against a real `spoolship receive` process: while 150 connections dribble one
header byte at a time, the kubelet's probes on ``--probe-port`` keep answering,
and a fresh client still gets its POST accepted on the main port. In-process:
slow requests are closed after ``--read-timeout`` (a steady slow upload is not),
and idle keep-alive connections after ``--idle-timeout``.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import requests

from receiver.config import DEFAULT_IDLE_TIMEOUT_SECONDS, ReceiverConfig
from tests.helpers import spool_lines, start_receiver, wait_until
from tests.rawhttp import read_response, server_closed

SLOW_CONNECTIONS = 150
PROBE_TIMEOUT_SECONDS = 5.0  # generous for a loaded 2-core box; the kubelet's default is 1 s


class Slowloris:
    """``count`` connections that each send a request line, then one header byte per ``interval``."""

    def __init__(self, port: int, count: int, interval: float = 1.0) -> None:
        self.sockets = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: receiver\r\nX-Slow: ")
            self.sockets.append(sock)
        self.closed_by_server = 0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._dribble, daemon=True)
        self._thread.start()

    def _dribble(self) -> None:
        while not self._stop.wait(self._interval):
            for sock in list(self.sockets):
                try:
                    sock.sendall(b"x")
                except OSError:
                    self.sockets.remove(sock)
                    self.closed_by_server += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self.sockets:
            sock.close()


def test_probes_and_fresh_clients_are_served_through_a_slowloris_flood(spool_dir):
    proc, url = start_receiver(spool_dir, "--probe-port", "0", "--threads", "4")
    probe_url = f"http://127.0.0.1:{proc.wait_for_log('receiver listening')['probe_port']}"
    port = int(url.rsplit(":", 1)[1])
    flood = Slowloris(port, SLOW_CONNECTIONS)
    try:
        time.sleep(2.0)  # every slow connection accepted and dribbling
        for round_ in range(3):
            for path in ("/healthz", "/readyz", "/metrics"):
                started = time.monotonic()
                r = requests.get(probe_url + path, timeout=PROBE_TIMEOUT_SECONDS)
                assert r.status_code == 200, (path, r.text)
                assert time.monotonic() - started < PROBE_TIMEOUT_SECONDS
            fresh = requests.post(url + "/v1/events", json={"round": round_}, timeout=10,
                                  headers={"Connection": "close"})
            assert fresh.status_code == 201, fresh.text
            assert requests.get(url + "/healthz", timeout=PROBE_TIMEOUT_SECONDS).status_code == 200
            time.sleep(0.5)
        assert len(flood.sockets) == SLOW_CONNECTIONS, "still within --read-timeout: all slow connections open"
    finally:
        flood.close()
    assert len(spool_lines(spool_dir)) == 3
    assert proc.stop() == 0




def test_slow_requests_are_closed_after_the_read_timeout_but_a_steady_upload_is_not(live, spool_dir):
    server = live(read_timeout_seconds=1.0)
    flood = Slowloris(server.port, 20, interval=0.3)
    body = b'{"pad":"' + b"z" * 6000 + b'"}'
    steady = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        steady.sendall(b"POST /v1/events HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(body))
        started = time.monotonic()
        for offset in range(0, len(body), 500):  # ~2.5 s at ~2.5 KiB/s: past the timeout, above the minimum rate
            steady.sendall(body[offset:offset + 500])
            time.sleep(0.2)
        assert time.monotonic() - started > 2.0
        assert read_response(steady).status == 201
        wait_until(lambda: flood.closed_by_server == 20, timeout=15, interval=0.1,
                   message="every slowloris connection closed by the server")
    finally:
        steady.close()
        flood.close()
    assert len(spool_lines(spool_dir)) == 1


def _closed_within(sock: socket.socket, seconds: float, feed) -> float | None:
    """Call ``feed(sock)`` every 0.1 s until the server closes ``sock``; how long that took (None: not closed)."""
    started = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - started < seconds:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except ConnectionResetError:
            return time.monotonic() - started
        try:
            feed(sock)
        except OSError:
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def test_headers_must_arrive_within_the_read_timeout_however_fast_they_drip(live):
    """A fixed deadline: before, each header byte bought more time (1 s per KiB), so 2 KiB/s never ran out."""
    server = live(read_timeout_seconds=1.0)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: r\r\nX-Drip: ")
        took = _closed_within(sock, 6.0, lambda s: s.sendall(b"a" * 200))  # 2 KiB/s, under the header cap for 6 s
    assert took is not None and took < 3.5, took


def test_a_burst_buys_no_credit_for_a_trickle_after_it(live):
    """The body's rate counts over each --read-timeout window, not over the whole request."""
    server = live(read_timeout_seconds=1.0)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 200000\r\n\r\n" + b" " * 60_000)
        # Before: 60 KB bought ~59 s at the 1 KiB/s minimum, whatever came after.
        took = _closed_within(sock, 10.0, lambda s: s.sendall(b" "))
    assert took is not None and took < 4.0, took


def test_idle_keep_alive_connections_live_for_the_idle_timeout(live):
    server = live(idle_timeout_seconds=2.0)
    assert server.server.adj.channel_timeout == 2.0
    request = b"GET /healthz HTTP/1.1\r\nHost: r\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        assert read_response(sock).status == 200
        time.sleep(1.0)
        # Idle from when the request went out: read_response itself waits 0.5 s after the answer to see
        # whether the server closes, so a clock started after it would run late (a flaky 1.5 s bound).
        idle_from = time.monotonic()
        sock.sendall(request)  # still open after 1 s idle (waitress's old 30 s would be shorter than a proxy's 60 s)
        response = read_response(sock)
        assert response.status == 200 and not response.closed
        assert server_closed(sock, timeout=10.0), "an idle connection is closed after --idle-timeout"
        assert 1.9 < time.monotonic() - idle_from < 6.0


def test_the_default_idle_timeout_outlasts_the_proxies_keep_alive():
    ingress_nginx_upstream_keepalive_seconds = 60
    aws_alb_idle_seconds = 60
    assert max(ingress_nginx_upstream_keepalive_seconds, aws_alb_idle_seconds) < DEFAULT_IDLE_TIMEOUT_SECONDS
    assert ReceiverConfig(spool_dir=Path("x")).idle_timeout_seconds == DEFAULT_IDLE_TIMEOUT_SECONDS
