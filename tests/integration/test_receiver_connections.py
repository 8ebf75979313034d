"""What one connection can make a worker hold, through a real waitress socket (docs/http-api.md, "Security").

- Pipelined requests whose answers are never read: at most a few are parsed
  and answered ahead; the rest of the bytes wait, unparsed, until the client
  reads. Nothing is lost: a client that reads late gets every answer, in order.
- Request bodies waiting to be read or served: counted against the worker's
  ``--max-buffered-body-bytes``; a Content-Length that would pass it gets 503 +
  ``Retry-After`` when the headers end (nothing of the body read), a chunked body
  is counted as it arrives. Small bodies are never counted, and what a closed
  connection held is given back.
- ``Expect: 100-continue`` on a request without a body is answered, not left hanging.
"""

from __future__ import annotations

import json
import select
import socket
import time

import pytest
import requests

from receiver.body_buffers import SMALL_BODY_BYTES
from receiver.connection import MAX_QUEUED_REQUESTS
from tests.helpers import LiveReceiver, spool_lines, wait_until
from tests.rawhttp import read_response

EVENT = b'{"n":1}'




def _channels(server: LiveReceiver) -> list:
    return list(server.server.active_channels.values())


def _steady(read, *, quiet_seconds: float = 1.0, timeout: float = 30.0):
    """The value of ``read()`` once it has not changed for ``quiet_seconds``."""
    deadline = time.monotonic() + timeout
    last, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_seconds:
            return now
    raise AssertionError(f"never steady: {last}")


def _recv_responses(sock: socket.socket, count: int, timeout: float = 30.0) -> list[str]:
    """Read ``count`` HTTP/1.1 responses with Content-Length bodies; their status lines."""
    sock.settimeout(timeout)
    data, statuses = b"", []
    while len(statuses) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode("latin-1")
            length = int(next(line.split(":", 1)[1] for line in head.split("\r\n")
                              if line.lower().startswith("content-length:")))
            if len(data) >= head_end + 4 + length:
                statuses.append(head.split("\r\n", 1)[0])
                data = data[head_end + 4 + length:]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(statuses)} of {count} responses")
        data += chunk
    return statuses


# -- pipelined requests (security review, finding 3) -------------------------------------------------


def test_pipelined_requests_are_answered_a_few_at_a_time_and_none_is_lost(live):
    server = live()
    # Accepted connections inherit a small send buffer: the kernel takes a few answers, not the megabytes
    # loopback's autotuning would (with many connections, the kernel's TCP memory runs out just the same).
    server.server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    one = b"GET /openapi.json HTTP/1.1\r\nHost: r\r\n\r\n"
    count = 8192 // len(one)  # one recv's worth, as the review sent
    answer = len(requests.get(server.url + "/openapi.json", timeout=5).content) + 300  # body + headers
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", server.port))
    try:
        client.sendall(one * count)  # and read nothing for now
        wait_until(lambda: len(_channels(server)) == 1, timeout=30, message="the connection accepted")
        [channel] = _channels(server)
        buffered = _steady(lambda: channel.total_outbufs_len)
        # Before: all 200+ answers were made at once, ~1 MB waiting in this one connection's buffers.
        assert buffered <= MAX_QUEUED_REQUESTS * answer, f"{buffered} bytes of answers held for an unread client"
        # Meanwhile another client is served.
        assert requests.post(server.url + "/v1/events", data=EVENT, headers={"Content-Type": "application/json"},
                             timeout=10).status_code == 201
        statuses = _recv_responses(client, count)
    finally:
        client.close()
    assert [line.split()[1] for line in statuses] == ["200"] * count, "every pipelined request answered"


def test_pipelined_posts_are_all_written_once(live, spool_dir):
    server = live()
    one = (b"POST /v1/events HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(EVENT)) + EVENT
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(one * 50)
        statuses = _recv_responses(sock, 50)
    assert [line.split()[1] for line in statuses] == ["201"] * 50
    assert len(spool_lines(spool_dir)) == 50


# -- bodies held while they arrive (security review, finding 4) -----------------------------------------

BUFFERED = 1024 * 1024


def _head(length: int | None = None, *extra: str) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    lines = ["POST /v1/events HTTP/1.1", "Host: r", "Content-Type: application/json", framing, *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _body(length: int) -> bytes:
    return b'{"pad":"' + b"x" * (length - 10) + b'"}'


def _holding(port: int, length: int, sent: int = 1000) -> socket.socket:
    """A connection that announces ``length`` bytes of body and sends only ``sent`` of them."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(_head(length) + _body(length)[:sent])
    return sock


@pytest.fixture
def buffered(live):
    return live(max_body_bytes=512 * 1024, max_buffered_body_bytes=BUFFERED)


def test_a_body_that_would_pass_the_buffered_budget_gets_503_when_its_headers_end(buffered):
    server = buffered
    holders = [_holding(server.port, 400_000) for _ in range(2)]
    try:
        wait_until(lambda: server.server.channel_class.guard.buffers.used_bytes == 800_000, timeout=10,
                   message="both bodies counted")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(_head(300_000, "Expect: 100-continue"))  # headers only: the answer needs no body
            refused = read_response(sock)
        assert refused.status == 503, refused
        assert int(refused.headers["retry-after"]) >= 1
        body = json.loads(refused.body)
        assert body["error"] == "unavailable" and body["written"] == "none", body
        assert refused.closed
        # A small body is never counted: it is served while the budget is full.
        small = _body(SMALL_BODY_BYTES)
        r = requests.post(server.url + "/v1/events", data=small, headers={"Content-Type": "application/json"},
                          timeout=10)
        assert r.status_code == 201, r.text
        # Once a holder finishes, its share comes back and the same upload fits.
        holders[0].sendall(_body(400_000)[1000:])
        assert read_response(holders[0]).status == 201
        wait_until(lambda: server.server.channel_class.guard.buffers.used_bytes == 400_000, timeout=10,
                   message="the finished body given back")
        r = requests.post(server.url + "/v1/events", data=_body(300_000), headers={"Content-Type": "application/json"},
                          timeout=10)
        assert r.status_code == 201, r.text
    finally:
        for sock in holders:
            sock.close()
    wait_until(lambda: server.server.channel_class.guard.buffers.used_bytes == 0, timeout=10,
               message="what closed connections held, given back")


def test_a_chunked_body_is_counted_as_it_arrives(buffered):
    server = buffered
    holders = [_holding(server.port, 400_000) for _ in range(2)]  # 250 KB left, below --max-body-bytes
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(_head(None))
            # One chunk per read of the server's, each read before the next is sent: the refusal then leaves
            # nothing unread, so the server's close is a FIN, not a reset that could discard the answer.
            piece = b"x" * 7000
            for _ in range(75):  # 525 KB: past what is left, within --max-body-bytes
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                if select.select([sock], [], [], 0.05)[0]:
                    break
            refused = read_response(sock)
        assert refused.status == 503, refused
        assert refused.closed
    finally:
        for holder in holders:
            holder.close()
    wait_until(lambda: server.server.channel_class.guard.buffers.used_bytes == 0, timeout=10,
               message="everything given back")


def test_the_budget_never_admits_more_than_it_holds(buffered):
    """Many connections at once: what is admitted stays within the budget; the rest get 503, none hangs."""
    server = buffered
    holders, refused = [], 0
    try:
        for _ in range(12):
            sock = _holding(server.port, 200_000, sent=0)  # headers only: a refusal leaves nothing unread
            sock.settimeout(0.5)
            try:
                response = read_response(sock, timeout=0.5)
            except TimeoutError:
                holders.append(sock)
                continue
            assert response.status == 503
            refused += 1
            sock.close()
        guard = server.server.channel_class.guard
        assert guard.buffers.used_bytes <= BUFFERED
        assert len(holders) == BUFFERED // 200_000 and refused == 12 - len(holders)
        assert guard.buffers.peak_bytes <= BUFFERED
    finally:
        for sock in holders:
            sock.close()


# -- Expect: 100-continue without a body (security review, finding 9) -------------------------------------


@pytest.mark.parametrize(("raw", "status"), [
    (b"GET /healthz HTTP/1.1\r\nHost: r\r\nExpect: 100-continue\r\n\r\n", 200),
    (b"POST /v1/events HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\nContent-Length: 0\r\n"
     b"Expect: 100-continue\r\n\r\n", 400),
], ids=["get-healthz", "post-content-length-0"])
def test_expect_100_continue_without_a_body_is_answered_at_once(live, raw, status):
    server = live()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(raw)
        response = read_response(sock, timeout=5)
        elapsed = time.monotonic() - started
    assert response.status == status, response  # before: "100 Continue", then nothing until the slow guard closed it
    assert elapsed < 3.0


# -- refused before the body is read, while the client still sends it ------------------------------------

LARGE = 4 * 1024 * 1024  # more than the socket buffers take: the client is still sending when it is refused


def _send_all_then_read(port: int, data: bytes):
    """As nginx forwards a buffered body: send all of it, then read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(data)  # before: the receiver closed with bytes unread; the reset broke this send
        return read_response(sock, timeout=20)


@pytest.mark.parametrize("case", ["401-no-key", "413-too-large", "503-buffers-full"])
def test_an_early_refusal_reaches_a_client_that_is_still_sending_its_body(live, tmp_path, case):
    """The connection lingers: shut for writing after the answer, what still arrives read and dropped."""
    key_file = tmp_path / "keys"
    key_file.write_text("right-key-0123456789ab\n")
    server = live(api_key_file=key_file, max_body_bytes=5 * 1024 * 1024, max_buffered_body_bytes=6 * 1024 * 1024)
    key = "X-Api-Key: right-key-0123456789ab"
    holders = []
    if case == "401-no-key":
        request, status = _head(LARGE) + _body(LARGE), 401
    elif case == "413-too-large":
        # Over --max-body-bytes, within what a lingering close drops (--max-body-bytes + 64 KiB): a larger
        # body is cut off by design, and whether its sender saw the 413 then depended on the socket buffers.
        too_large = 5 * 1024 * 1024 + 32 * 1024
        request, status = _head(too_large, key) + _body(too_large), 413
    else:
        holders = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(2)]
        for sock in holders:
            sock.sendall(_head(1536 * 1024, key))
        wait_until(lambda: server.server.channel_class.guard.buffers.used_bytes == 3 * 1024 * 1024, timeout=10,
                   message="both bodies counted")
        request, status = _head(LARGE, key) + _body(LARGE), 503
    try:
        response = _send_all_then_read(server.port, request)
        assert response.status == status, response
        assert response.closed
    finally:
        for sock in holders:
            sock.close()


def test_a_lingering_connection_drops_at_most_about_a_body_before_it_closes(live):
    """Lingering is bounded by bytes too, not only by time: a client streaming without end is cut off."""
    server = live(max_body_bytes=100 * 1024, max_buffered_body_bytes=1024 * 1024)
    piece = b" " * 65536
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(_head(10 * 1024 * 1024))  # over --max-body-bytes: 413 when the headers end
        try:
            while sent < 2 * 1024**3:
                sock.sendall(piece)
                sent += len(piece)
        except OSError:
            pass  # closed once ~--max-body-bytes more were dropped (plus what the socket buffers took)
    # Without the bound the receiver dropped bytes for 2 s: gigabytes at loopback speed.
    assert sent < 32 * 1024**2, sent
