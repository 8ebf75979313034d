"""The hot call's own HTTP exchange over every failure of a wire, against a real socket server.

Each row is a script for tests/servers/scripted_http.py (real TCP on loopback) and
the ShipError (or the stored count) a KinesisSink call must end in. Every row runs
twice: through tailer/http_exchange.py and through botocore's session (the path
it replaced, still used behind a proxy): both must land in the same class of
tailer/errors.py, so the exchange did not change what the tailer does with any
failure. Rows where botocore is knowingly laxer say so (``botocore``).
"""

from __future__ import annotations

import socket
import time

import boto3
import orjson
import pytest

from tailer.aws_json import BotocoreExchange, _pooled_session
from tailer.errors import ShipError
from tailer.http_exchange import Exchange
from tailer.kinesis import KinesisSink
from tests.servers.scripted_http import ScriptedServer, reset

OK = orjson.dumps({"FailedRecordCount": 0, "Records": [{"SequenceNumber": "49590", "ShardId": "shardId-0"}]})
HTML = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
RECORDS = [(b"x" * 100, "k", None)]


def head(status: int = 200, *headers: str, version: str = "HTTP/1.1") -> bytes:
    return (f"{version} {status} Reason\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n").encode()


def answer(body: bytes = OK, status: int = 200, *headers: str) -> bytes:
    return head(status, f"Content-Length: {len(body)}", *headers) + body


def send(data: bytes, keep: bool = True):
    def script(_server, sock, _request) -> bool:
        sock.sendall(data)
        return keep
    return script


def then_reset(data: bytes):
    def script(_server, sock, _request) -> bool:
        sock.sendall(data)
        time.sleep(0.05)
        reset(sock)
        return False
    return script


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks)
    return head(200, "Transfer-Encoding: chunked") + body + b"0\r\n" + trailer + b"\r\n"


def sleep_then(seconds: float, data: bytes):
    def script(_server, sock, _request) -> bool:
        time.sleep(seconds)
        sock.sendall(data)
        return False
    return script


def trickle(data: bytes, every: float):
    def script(_server, sock, _request) -> bool:
        for i in range(len(data)):
            sock.sendall(data[i:i + 1])
            time.sleep(every)
        return False
    return script


def nth(*scripts):
    """The n-th request (over all connections) gets the n-th script."""
    def script(server, sock, request) -> bool:
        return scripts[min(len(server.requests), len(scripts)) - 1](server, sock, request)
    return script


STORED = "stored"
# (name, script, calls, expected outcome of the last call, botocore's when it differs)
CASES = [
    ("content-length answer", send(answer()), 1, STORED, None),
    ("chunked answer, extensions and trailers", send(chunked(OK[:10], OK[10:], trailer=b"X-T: 1\r\n")), 2, STORED, None),
    ("100 Continue before the answer", send(head(100) + answer()), 2, STORED, None),
    ("103 Early Hints before the answer", send(head(103, "Link: </>") + answer()), 1, STORED, "Unavailable"),
    ("Connection: close, then closed", send(answer(OK, 200, "Connection: close"), keep=False), 2, STORED, None),
    ("HTTP/1.0 answer, then closed", send(head(200, f"Content-Length: {len(OK)}", version="HTTP/1.0") + OK,
                                          keep=False), 2, STORED, None),
    ("no length: the body runs to the close", send(head(200) + OK, keep=False), 2, STORED, None),
    ("a load balancer's HTML 502", send(answer(HTML, 502, "Content-Type: text/html")), 1, "Unavailable", None),
    ("a proxy's HTML 403", send(answer(HTML, 403, "Content-Type: text/html")), 1, "CallRefused", None),
    ("a proxy's HTML 404", send(answer(HTML, 404)), 1, "CallRefused", None),
    ("an empty 503", send(answer(b"", 503)), 1, "Unavailable", None),
    ("413 from something in between", send(answer(HTML, 413)), 1, "RequestRejected", None),
    ("200 with garbage", send(answer(b"\x00\xffnot json")), 1, "Unavailable", None),
    ("200 with truncated JSON", send(answer(OK[:-7])), 1, "Unavailable", None),
    ("closed before an answer", send(b"", keep=False), 1, "Unavailable", None),
    ("reset before an answer", then_reset(b""), 1, "Unavailable", None),
    ("reset in the middle of the head", then_reset(b"HTTP/1.1 200 OK\r\nContent-Le"), 1, "Unavailable", None),
    ("closed in the middle of the body", send(head(200, f"Content-Length: {len(OK)}") + OK[:20], keep=False), 1,
     "Unavailable", None),
    ("reset in the middle of the body", then_reset(head(200, f"Content-Length: {len(OK)}") + OK[:20]), 1,
     "Unavailable", None),
    ("chunked, closed in the middle of a chunk", send(head(200, "Transfer-Encoding: chunked") + b"40\r\n" + OK[:9],
                                                      keep=False), 1, "Unavailable", None),
    ("chunked, a size that is not hex", send(head(200, "Transfer-Encoding: chunked") + b"zz\r\n" + OK, keep=False), 1,
     "Unavailable", None),
    ("not HTTP at all", send(b"SSH-2.0-OpenSSH_9.2\r\n", keep=False), 1, "Unavailable", None),
    ("more than 100 headers", send(head(200, *[f"X-{i}: y" for i in range(101)], f"Content-Length: {len(OK)}") + OK),
     1, "Unavailable", None),
    ("a header line over 64 KiB", send(head(200, "X-Big: " + "y" * 70000, f"Content-Length: {len(OK)}") + OK), 1,
     "Unavailable", None),
    ("an answer over 16 MiB (no length)", send(head(200) + b"x" * (17 * 1024 * 1024), keep=False), 1,
     "Unavailable", None),
    # botocore passes enforce_content_length=False: a whole JSON answer short of its length is believed there.
    ("an announced length over 16 MiB", send(head(200, "Content-Length: 17825792") + OK, keep=False), 1,
     "Unavailable", STORED),
    ("no answer within the read timeout", sleep_then(2.0, answer()), 1, "Unavailable", None),
    ("an answer trickled past the call's deadline", trickle(answer(), 0.25), 1, "Unavailable", None),
    ("a kept-alive socket the server closed between calls", send(answer(), keep=False), 3, STORED, None),
    ("the server read the request on a reused socket, then closed", nth(send(answer()), send(b"", keep=False)), 2,
     "Unavailable", None),
    # Hostile review of the exchange: the second answer stayed in the socket's reader and was believed as the
    # next call's, for records nobody stored.
    ("two answers in one write: the second is not the next call's", nth(send(answer() + answer()),
                                                                       sleep_then(2.0, answer())), 2,
     "Unavailable", None),
    ("a body longer than its Content-Length, then nothing", nth(send(answer() + b"HTTP/1.1 200 OK\r\n"),
                                                               sleep_then(2.0, answer())), 2, "Unavailable", None),
]


def make_sink(url: str, *, botocore: bool) -> KinesisSink:
    sink = KinesisSink("s", endpoint_url=url, region="us-east-1", read_timeout_seconds=1.0,
                       connect_timeout_seconds=1.0, call_deadline_seconds=1.5,
                       session=boto3.Session(aws_access_key_id="a", aws_secret_access_key="b"))
    if botocore:
        sink._api.http = BotocoreExchange(_pooled_session(sink._api.client), sink._api.url)
    assert isinstance(sink._api.http, BotocoreExchange if botocore else Exchange)
    return sink


def outcome(sink: KinesisSink) -> str:
    try:
        result = sink.put_records(RECORDS)
    except ShipError as exc:
        return type(exc).__name__
    assert result.failed == [] and result.rejected == []
    return STORED


@pytest.mark.parametrize("botocore", [False, True], ids=["exchange", "botocore"])
@pytest.mark.parametrize(("name", "script", "calls", "expected", "botocore_expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_every_wire_failure_ends_where_botocore_s_did(name, script, calls, expected, botocore_expected, botocore):
    server = ScriptedServer(script)
    sink = make_sink(server.url, botocore=botocore)
    try:
        for _ in range(calls - 1):
            assert outcome(sink) == STORED
            time.sleep(0.1)  # the server's close (if any) reaches the idle socket
        assert outcome(sink) == (botocore_expected or expected if botocore else expected)
        if name.startswith("the server read the request"):
            assert len(server.requests) == 2  # an unknown outcome: raised for the tailer to resend, not resent here
        if name.startswith("a kept-alive socket"):
            assert server.connections == calls
    finally:
        sink.close()
        server.close()


@pytest.mark.parametrize("botocore", [False, True], ids=["exchange", "botocore"])
def test_a_refused_connection_is_unavailable(botocore):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    sink = make_sink(f"http://127.0.0.1:{port}", botocore=botocore)
    try:
        assert outcome(sink) == "Unavailable"
    finally:
        sink.close()


def test_a_connect_that_never_completes_times_out():
    """A listener that never accepts, its backlog full: the kernel drops the SYN, the connect times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    sink = make_sink(f"http://127.0.0.1:{listener.getsockname()[1]}", botocore=False)
    try:
        started = time.monotonic()
        assert outcome(sink) == "Unavailable"
        assert time.monotonic() - started < 10
    finally:
        sink.close()
        listener.close()
        for filler in fillers:
            filler.close()


def test_a_failed_send_on_a_reused_socket_is_sent_once_more_on_a_fresh_one(monkeypatch):
    """The race urllib3's idle check cannot close: the server resets the kept-alive socket just after the
    check. The request was not all written, so nothing was processed: sent again once, fresh."""
    server = ScriptedServer(nth(then_reset(answer()), send(answer())))
    sink = make_sink(server.url, botocore=False)
    try:
        assert outcome(sink) == STORED
        time.sleep(0.2)  # the reset has arrived
        monkeypatch.setattr("tailer.http_exchange._Connection.dropped", lambda self: False)
        big = [(b"y" * 1_000_000, "k", None)]  # more than a socket buffer: the send fails, not the read
        result = sink.put_records(big)
        assert result.failed == []
        assert server.connections == 2 and len(server.requests) == 2
    finally:
        sink.close()
        server.close()


def test_an_idle_socket_the_server_closed_is_not_taken_from_the_pool():
    """urllib3's check before reuse: the request is never written to a socket known to be closed."""
    server = ScriptedServer(nth(send(answer()), send(answer(), keep=False)))
    exchange = Exchange(server.url, connect_timeout=1.0, read_timeout=1.0)
    try:
        request = ({"Content-Length": "2"}, b"{}")
        assert exchange.send(request).status == 200
        connection = exchange._take()
        assert connection is not None  # still open: taken
        exchange._give_back(connection)
        assert exchange.send(request).status == 200  # the server closes this one after answering
        deadline = time.monotonic() + 10
        while not exchange._idle[0].dropped() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert exchange._take() is None
    finally:
        exchange.close()
        server.close()
