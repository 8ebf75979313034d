"""Review 2, item 4: --drain-timeout holds even while a delivery thread waits for AssumeRole credentials from an
STS that trickles its answer (200 headers, then one byte every second: no read ever times out).

A real `spoolship tail` process, a real socket: the credential fetch runs under the call deadline, an expired
call sends no retry, and after the drain timeout the process leaves with os._exit so no hung pool thread can
hold the exit.
"""

from __future__ import annotations

import socket
import threading
import time

from tests.helpers import start_tailer, write_segments


class TricklingSts:
    """Accepts every connection, answers 200 with a long Content-Length, then one byte a second."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self.connections = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 100000\r\n\r\n")
                while not self._stop.wait(1.0):
                    conn.sendall(b" ")
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._server.close()


def test_the_drain_timeout_holds_while_sts_trickles_its_answer(moto, spool_dir):
    stream = moto.create_stream(shards=1)
    write_segments(spool_dir, "w", 20)
    sts = TricklingSts()
    try:
        tailer = start_tailer(spool_dir, stream, moto.endpoint, "--role-arn", "arn:aws:iam::123456789012:role/x",
                              "--sts-endpoint-url", sts.url, "--drain-timeout", "2", "--call-deadline", "3")
        deadline = time.monotonic() + 30
        while sts.connections == 0 and time.monotonic() < deadline:  # a delivery is waiting on STS now
            time.sleep(0.05)
        assert sts.connections, "the tailer never asked STS"
        time.sleep(1.0)
        started = time.monotonic()
        code = tailer.stop(timeout=60)
        took = time.monotonic() - started
    finally:
        sts.close()
    assert code == 1, "gave up at the drain timeout with data left"
    assert took < 2 + 5 + 4, f"exited {took:.1f} s after SIGTERM with --drain-timeout 2"


def test_a_trickled_list_shards_neither_wedges_the_loop_nor_the_exit(moto, spool_dir):
    """Review 2, item 5: with --aggregate and per-line keys the first ListShards ran on the loop's thread
    with no deadline: nothing shipped, SIGTERM ignored. Now it ends at the call deadline, lines are grouped
    per key meanwhile, and the exit keeps to the drain timeout."""
    from tests.servers.fault_proxy import FaultProxy

    stream = moto.create_stream(shards=2)
    lines = write_segments(spool_dir, "w", 50)
    proxy = FaultProxy(moto.port)
    proxy.trickle_targets = ("ListShards",)
    try:
        tailer = start_tailer(spool_dir, stream, proxy.endpoint, "--aggregate", "--partition-key", "hash",
                              "--drain-timeout", "2", "--call-deadline", "3")
        deadline = time.monotonic() + 60
        while len(moto.read_lines(stream)) < len(lines) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert sorted(moto.read_lines(stream)) == sorted(lines), "shipped while ListShards trickles"
        started = time.monotonic()
        tailer.stop(timeout=60)
        took = time.monotonic() - started
    finally:
        proxy.close()
    assert took < 2 + 5 + 4, f"exited {took:.1f} s after SIGTERM with --drain-timeout 2"
