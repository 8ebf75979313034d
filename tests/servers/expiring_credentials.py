"""A proxy in front of moto that makes AssumeRole credentials expire, as AWS does and moto does not.

moto issues STS credentials with an expiry but never enforces it. This proxy
passes every call through to moto, and:

- on an STS ``AssumeRole`` answer, replaces ``<Expiration>`` with now + ``lifetime_seconds``
  and remembers the access key it names (and when it expires);
- refuses a Kinesis or Firehose call signed with a remembered key after its
  expiry (400 ``ExpiredTokenException``, what AWS answers), and one signed with
  any key it did not issue (400 ``AccessDeniedException``: the call did not use
  the role).

``counts`` has ``assume_role``, ``calls``, ``expired`` and ``not_the_role``;
``keys_used`` the access keys that signed accepted calls.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_CREDENTIAL = re.compile(r"Credential=([A-Z0-9]+)/")
_ACCESS_KEY = re.compile(rb"<AccessKeyId>([A-Z0-9]+)</AccessKeyId>")
_EXPIRATION = re.compile(rb"<Expiration>[^<]*</Expiration>")


class ExpiringCredentialsProxy:
    def __init__(self, upstream_port: int, *, lifetime_seconds: float) -> None:
        self.upstream_port = upstream_port
        self.lifetime_seconds = lifetime_seconds
        self.expiry: dict[str, float] = {}  # access key -> time.time() it expires
        self.counts = {"assume_role": 0, "calls": 0, "expired": 0, "not_the_role": 0}
        self.keys_used: set[str] = set()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy._handle(self, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if b"Action=AssumeRole" in body:
            status, payload = self._forward(handler, body)
            if status == 200:
                payload = self._shorten(payload)
            return self._reply(handler, status, payload, "text/xml")
        if handler.headers.get("X-Amz-Target"):
            refusal = self._refusal(handler.headers.get("Authorization", ""))
            if refusal is not None:
                return self._reply(handler, 400, json.dumps(refusal).encode(), "application/x-amz-json-1.1")
        status, payload = self._forward(handler, body)
        self._reply(handler, status, payload, "application/x-amz-json-1.1")

    def _shorten(self, payload: bytes) -> bytes:
        expires = time.time() + self.lifetime_seconds
        stamp = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        key = _ACCESS_KEY.search(payload).group(1).decode()
        with self._lock:
            self.counts["assume_role"] += 1
            self.expiry[key] = int(expires)  # what the stamp says, to the second
        return _EXPIRATION.sub(b"<Expiration>" + stamp.encode() + b"</Expiration>", payload)

    def _refusal(self, authorization: str) -> dict | None:
        match = _CREDENTIAL.search(authorization)
        key = match.group(1) if match else ""
        with self._lock:
            self.counts["calls"] += 1
            expires = self.expiry.get(key)
            if expires is None:
                self.counts["not_the_role"] += 1
                return {"__type": "AccessDeniedException", "message": f"{key} is not the role's credentials"}
            if time.time() >= expires:
                self.counts["expired"] += 1
                return {"__type": "ExpiredTokenException",
                        "message": "The security token included in the request is expired"}
            self.keys_used.add(key)
        return None

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
    def _reply(handler: BaseHTTPRequestHandler, status: int, payload: bytes, content_type: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


