"""What is decided about a request at the waitress level, before (or instead of) the app.

waitress reads a whole request — headers and body — before the WSGI app runs.
Some requests must be stopped earlier than the app could, or where the app
never sees them:

- **Framing** (RFC 9112): ``Content-Length`` together with ``Transfer-Encoding``
  (§6.1, the request-smuggling shape; waitress would go by the chunking and keep
  the connection open) and obsolete line folding (§5.2) get 400, and the
  connection is closed after the answer.
- **Bodies not worth reading**: a ``Content-Length`` over ``--max-body-bytes``
  gets 413 as soon as the headers end (waitress's own limit, set to exactly the
  receiver's); with API keys, a large or chunked body without a valid key gets
  401 as soon as the headers end. Neither body is read or spilled to a temp
  file, and no ``100 Continue`` invites the client to send it.
- **Slow requests** (slowloris): a request must send its headers within
  ``--read-timeout`` of its first byte, and keep sending at
  ``MIN_REQUEST_BYTES_PER_SECOND`` after that; a connection that does not is
  closed. (An idle keep-alive connection between requests is closed after
  ``--idle-timeout``; that is waitress's own channel timeout.)
- **waitress's own errors** are JSON like the app's, labelled from one table
  (:data:`WAITRESS_ERROR_CODES`), with the client's text clipped.

This reaches into waitress's parser, channel and server maintenance (waitress is
pinned in pyproject.toml); ``tests/unit/test_waitress_hooks.py`` fails loudly if
an upgrade moves what is used here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import orjson
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.task import ErrorTask
from waitress.utilities import Error

from .auth import ApiKeys
from .errors import MAX_CLIENT_VALUE_CHARS, clip
from .throttled_log import ThrottledLog

__all__ = [
    "EARLY_KEY_CHECK_BODY_BYTES",
    "MIN_REQUEST_BYTES_PER_SECOND",
    "NOSNIFF",
    "WAITRESS_ERROR_CODES",
    "GuardSettings",
    "KeyRequired",
    "close_slow_requests",
    "guarded_channel_class",
]

log = logging.getLogger(__name__)

NOSNIFF = ("X-Content-Type-Options", "nosniff")
# A body smaller than this is read before the app's own key check (it is in the socket
# buffers already, and the client gets the app's 401 on a connection that stays open).
EARLY_KEY_CHECK_BODY_BYTES = 64 * 1024
MIN_REQUEST_BYTES_PER_SECOND = 1024
# waitress's error statuses → our `error` codes. Any status not listed is a bug in this table:
# tests/unit/test_waitress_hooks.py checks it covers every waitress error class.
WAITRESS_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    413: "too_large",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
}


class KeyRequired(Error):
    """A large or chunked body without a valid API key, refused before it is read."""

    code = 401
    reason = "Unauthorized"


@dataclass(frozen=True)
class GuardSettings:
    max_body_bytes: int
    read_timeout_seconds: float
    keys: ApiKeys | None = None
    slow_log: ThrottledLog = field(default_factory=lambda: ThrottledLog(log, "slow requests closed"))


class _JsonErrorTask(ErrorTask):
    """waitress's own answers (malformed request, body over the limit, ...) as our JSON errors."""

    def execute(self) -> None:
        error = self.request.error
        settings: GuardSettings = self.channel.guard
        code = WAITRESS_ERROR_CODES.get(error.code, "internal_error")
        if error.code == 413:
            message = f"request body exceeds {settings.max_body_bytes} bytes"
        else:
            message = f"{error.reason}: {clip(str(error.body), 2 * MAX_CLIENT_VALUE_CHARS)}"
        body = orjson.dumps({"error": code, "message": message})
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.response_headers.append(NOSNIFF)
        if error.code == 401:
            self.response_headers.append(("WWW-Authenticate", 'Bearer realm="spoolship"'))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _GuardedParser(HTTPRequestParser):
    guard: GuardSettings  # set on the subclass made by guarded_channel_class

    def received(self, data: bytes) -> int:
        consumed = super().received(data)
        if self.error is not None:
            # An answer is decided: no "100 Continue" may invite the body (waitress would send one
            # and then read the whole body after all).
            self.expect_continue = False
        return consumed

    def parse_header(self, header_plus: bytes) -> None:
        if b"\r\n " in header_plus or b"\r\n\t" in header_plus:
            raise ParsingError("obsolete line folding is not accepted (RFC 9112, section 5.2)")
        super().parse_header(header_plus)
        headers = self.headers
        if "CONTENT_LENGTH" in headers and (self.chunked or "TRANSFER_ENCODING" in headers):
            raise ParsingError("Content-Length with Transfer-Encoding is not accepted (RFC 9112, section 6.1)")
        keys = self.guard.keys
        large = self.chunked or self.content_length > EARLY_KEY_CHECK_BODY_BYTES
        if keys is not None and large and not keys.is_valid(headers.get("AUTHORIZATION"), headers.get("X_API_KEY")):
            self.error = KeyRequired("a valid API key is required before a large body is read")
            self.completed = True


class _GuardedChannel(HTTPChannel):
    error_task_class = _JsonErrorTask
    guard: GuardSettings
    _request_started_at = 0.0

    def received(self, data: bytes) -> bool:
        before = self.request
        result = super().received(data)
        if self.request is not None and self.request is not before:
            self._request_started_at = time.monotonic()
        return result

    def is_too_slow(self, now: float) -> bool:
        """A request is being received, has taken too long for the bytes it sent, and none is in service."""
        request = self.request
        if request is None or request.completed or self.requests:
            return False
        sent = request.header_bytes_received + request.body_bytes_received
        allowed = self.guard.read_timeout_seconds + sent / MIN_REQUEST_BYTES_PER_SECOND
        return now - self._request_started_at > allowed


def guarded_channel_class(settings: GuardSettings) -> type[HTTPChannel]:
    """A waitress channel class (with its parser) applying ``settings``."""
    parser = type("GuardedParser", (_GuardedParser,), {"guard": settings})
    return type("GuardedChannel", (_GuardedChannel,), {"guard": settings, "parser_class": parser})


def close_slow_requests(server) -> int:
    """Mark for closing every channel of ``server`` whose request arrives too slowly; return how many."""
    now = time.monotonic()
    closed = 0
    for channel in list(server.active_channels.values()):
        if isinstance(channel, _GuardedChannel) and not channel.will_close and channel.is_too_slow(now):
            channel.will_close = True
            closed += 1
    if closed:
        server.channel_class.guard.slow_log.add(closed)
    return closed
