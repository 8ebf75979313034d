"""A fault-injecting HTTP proxy in front of a Kinesis-API server.

It withholds the records it reports as failed (they never reach the server), so
the stream holds exactly what a real partial failure leaves behind. Kinesis
PutRecords and Firehose PutRecordBatch calls get the same faults, each in its
service's words. Faults:
- ``record_failure_rate``: share of PutRecords records answered
  ProvisionedThroughputExceededException / InternalFailure;
- ``call_error_rate``: share of calls answered 500 InternalFailure (not forwarded);
- ``call_throttle_rate``: share of calls answered 400 ProvisionedThroughputExceeded;
- ``call_reset_rate``: share of calls whose connection is reset (not forwarded);
- ``first_faults``: call faults (``"reset"``, ``"error"``, ``"throttle"``) the first calls get, one each
  in order, before the rates take over — so that a test asserting a fault happened does not hang on a
  random draw (with a few dozen calls, a 10 % rate misses every one of them now and then);
- ``down``: every connection is reset at once (the endpoint "went away");
- ``answers``: a list of ``(status, body)`` (or ``(status, body, headers)``): while set, every
  PutRecords call gets the next one in turn and is not forwarded — any status, any body: a proxy's
  HTML 404, an empty 502, truncated JSON, a Kinesis error document (see :func:`garbage_answers`).

- ``trickle_targets``: calls whose ``X-Amz-Target`` ends with one of these are forwarded, and the
  answer is sent back one byte every ``trickle_seconds`` (no read ever times out).

``call_times`` keeps the monotonic time of every PutRecords call, to measure calls per second.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# What an endpoint that is not (or not only) Kinesis may answer: proxies, load balancers, VPC endpoints.
_HTML_404 = b"<html><head><title>404 Not Found</title></head><body><center><h1>404 Not Found</h1></center></body></html>"


def garbage_answers() -> list[tuple[int, bytes]]:
    """Every status 300-599, each with one of the body shapes in turn (and Kinesis error documents that
    name no record); ordered with a stride so that any few consecutive answers mix 3xx, 4xx and 5xx."""
    shapes = [_HTML_404, b"", b'{"__type":"ValidationException","message":"1 validation error detected: Val',
              b"upstream connect error or disconnect/reset before headers", b"\x00\xff" * 8,
              json.dumps({"__type": "MissingAuthenticationTokenException", "message": "Missing token"}).encode(),
              json.dumps({"__type": "ValidationException", "message": "1 validation error detected: Value 'x' at "
                          "'streamName' failed to satisfy constraint: Member must satisfy regular expression "
                          "pattern: [a-zA-Z0-9_.-]+"}).encode(),
              json.dumps({"__type": "InvalidArgumentException", "message": "Records size exceeds 5 MB limit"}).encode(),
              json.dumps({"__type": "InternalFailure", "message": "We encountered an internal error."}).encode()]
    statuses = [300 + (i * 37) % 300 for i in range(300)]  # 37 is prime to 300: each status once
    return [(status, shapes[i % len(shapes)]) for i, status in enumerate(statuses)]


class FaultProxy:
    def __init__(self, upstream_port: int, *, seed: int = 1) -> None:
        self.upstream_port = upstream_port
        self.record_failure_rate = 0.0
        self.call_error_rate = 0.0
        self.call_throttle_rate = 0.0
        self.call_reset_rate = 0.0
        self.down = False
        self.first_faults: list[str] = []
        self.answers: list[tuple] | None = None
        self.trickle_targets: tuple[str, ...] = ()
        self.trickle_seconds = 1.0
        self.call_times: list[float] = []
        self._next_answer = 0
        self.counts = {"calls": 0, "records_failed": 0, "errors": 0, "throttles": 0, "resets": 0, "refused": 0,
                       "answered": 0}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy._handle(self, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _roll(self, rate: float) -> bool:
        with self._lock:
            return rate > 0 and self._rng.random() < rate

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        target = handler.headers.get("X-Amz-Target", "")
        if self.down:
            self._count("refused")
            return self._reset(handler)
        firehose = target.endswith("PutRecordBatch")  # Firehose: the same faults, in its own words
        if target.endswith("PutRecords") or firehose:
            self._count("calls")
            with self._lock:
                self.call_times.append(time.monotonic())
            answer = self._take_answer()
            if answer is not None:
                return self._answer(handler, *answer)
            fault = self._next_fault()
            if fault == "reset":
                self._count("resets")
                return self._reset(handler)
            if fault == "error":
                self._count("errors")
                return self._reply(handler, 500, {"__type": "InternalFailure", "message": "injected"})
            if fault == "throttle":
                self._count("throttles")
                if firehose:
                    return self._reply(handler, 500, {"__type": "ServiceUnavailableException", "message": "Slow down."})
                return self._reply(handler, 400, {"__type": "ProvisionedThroughputExceededException",
                                                  "message": "injected"})
            if self.record_failure_rate > 0:
                return self._partial(handler, body, firehose=firehose)
        status, payload = self._forward(handler, body)
        if self.trickle_targets and target.endswith(self.trickle_targets):
            return self._trickle(handler, status, payload)
        self._reply_raw(handler, status, payload)

    def _trickle(self, handler: BaseHTTPRequestHandler, status: int, payload: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/x-amz-json-1.1")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.flush()
        try:
            for byte in payload:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(self.trickle_seconds)
        except OSError:
            pass
        handler.close_connection = True

    def _next_fault(self) -> str | None:
        """The next of ``first_faults``, else one drawn by the rates (reset, error, throttle, in that order)."""
        with self._lock:
            if self.first_faults:
                return self.first_faults.pop(0)
        for fault, rate in (("reset", self.call_reset_rate), ("error", self.call_error_rate),
                            ("throttle", self.call_throttle_rate)):
            if self._roll(rate):
                return fault
        return None

    def _take_answer(self) -> tuple | None:
        with self._lock:
            answers = self.answers
            if not answers:
                return None
            answer = answers[self._next_answer % len(answers)]
            self._next_answer += 1
            self.counts["answered"] += 1
            return answer

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict | None = None) -> None:
        if status in (204, 304) or status < 200:
            body = b""  # HTTP forbids a body here; sending one would garble the next answer on the connection
        handler.send_response(status)
        for name, value in (headers or {"Content-Type": "text/html"}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _partial(self, handler: BaseHTTPRequestHandler, body: bytes, *, firehose: bool = False) -> None:
        request = json.loads(body)
        records = request["Records"]
        failing = {i for i in range(len(records)) if self._roll(self.record_failure_rate)}
        self._count("records_failed", len(failing))
        kept = [r for i, r in enumerate(records) if i not in failing]
        upstream_entries = []
        if kept:
            status, payload = self._forward(handler, json.dumps({**request, "Records": kept}).encode())
            if status != 200:
                return self._reply_raw(handler, status, payload)
            upstream_entries = json.loads(payload)["RequestResponses" if firehose else "Records"]
        merged, it = [], iter(upstream_entries)
        throttled = "ServiceUnavailableException" if firehose else "ProvisionedThroughputExceededException"
        for i in range(len(records)):
            if i in failing:
                code = throttled if i % 2 else "InternalFailure"
                merged.append({"ErrorCode": code, "ErrorMessage": "injected"})
            else:
                merged.append(next(it))
        failed = sum(1 for e in merged if "ErrorCode" in e)
        if firehose:
            return self._reply(handler, 200, {"FailedPutCount": failed, "Encrypted": False,
                                              "RequestResponses": merged})
        self._reply(handler, 200, {"FailedRecordCount": failed, "Records": merged})

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("content-length", "connection")}
        try:
            conn.request("POST", handler.path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, doc: dict) -> None:
        FaultProxy._reply_raw(handler, status, json.dumps(doc).encode())

    @staticmethod
    def _reply_raw(handler: BaseHTTPRequestHandler, status: int, payload: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/x-amz-json-1.1")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    @staticmethod
    def _reset(handler: BaseHTTPRequestHandler) -> None:
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.close_connection = True
        handler.connection.close()
