"""What is decided about a request at the waitress level, before (or instead of) the app.

waitress reads a whole request — headers and body — before the WSGI app runs.
Some requests must be stopped earlier than the app could, or where the app
never sees them; this module's parser does it when a request's headers end:

- **Framing** (RFC 9112; receiver/framing.py): ambiguous or faulty framing gets
  400 (505 for an HTTP version other than 1.0 and 1.1), and the connection is
  closed after the answer.
- **Bodies not worth reading**: a ``Content-Length`` over ``--max-body-bytes``
  gets 413 (waitress's own limit, set to exactly the receiver's); with API
  keys, a body over ``EARLY_KEY_CHECK_BODY_BYTES`` or a chunked one without a
  valid key gets 401; a body that would pass the worker's
  ``--max-buffered-body-bytes`` (receiver/body_buffers.py) gets 503 +
  ``Retry-After`` — a chunked one as soon as what has arrived does. None of the
  refused body is read, no ``100 Continue`` invites it, and the connection is
  closed.
- **Expect: 100-continue** on a request that has no body to send (or that is
  already decided) is answered at once: waitress sent "100 Continue" and then
  waited for a body that never came.
- **waitress's own errors** are JSON like the app's, labelled from one table
  (:data:`WAITRESS_ERROR_CODES`), repeating at most 64 characters of the request.

The connection-level rules (pipelining, slow requests) are receiver/connection.py's.
This reaches into waitress's parser (waitress is pinned in pyproject.toml);
``tests/unit/test_waitress_hooks.py`` fails loudly if an upgrade moves what is used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import orjson
from waitress.parser import HTTPRequestParser
from waitress.task import ErrorTask
from waitress.utilities import Error

from .auth import ApiKeys
from .body_buffers import SMALL_BODY_BYTES, BodyBuffers
from .errors import MAX_CLIENT_VALUE_CHARS, MAX_MESSAGE_CHARS, clip
from .framing import check_raw_framing, framing_error, transfer_encodings
from .throttled_log import ThrottledLog

__all__ = [
    "EARLY_KEY_CHECK_BODY_BYTES",
    "NOSNIFF",
    "RETRY_AFTER_SECONDS",
    "WAITRESS_ERROR_CODES",
    "BuffersFull",
    "GuardSettings",
    "GuardedParser",
    "JsonErrorTask",
    "KeyRequired",
]

log = logging.getLogger(__name__)

NOSNIFF = ("X-Content-Type-Options", "nosniff")
# A body of at most this is read before the app's own key check (it is in the socket buffers already, and
# the client gets the app's 401 on a connection that stays open). It is also what the body budget never counts.
EARLY_KEY_CHECK_BODY_BYTES = SMALL_BODY_BYTES
RETRY_AFTER_SECONDS = 1
# waitress's error statuses → our `error` codes. Any status not listed is a bug in this table:
# tests/unit/test_waitress_hooks.py checks it covers every waitress error class (ours included).
WAITRESS_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    413: "too_large",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
    505: "http_version_not_supported",
}


class KeyRequired(Error):
    """A large or chunked body without a valid API key, refused before it is read."""

    code = 401
    reason = "Unauthorized"


class BuffersFull(Error):
    """A body that would pass the worker's --max-buffered-body-bytes, refused before (more of) it is read."""

    code = 503
    reason = "Service Unavailable"


@dataclass(frozen=True)
class GuardSettings:
    max_body_bytes: int
    read_timeout_seconds: float
    keys: ApiKeys | None = None
    buffers: BodyBuffers = field(default_factory=BodyBuffers)
    slow_log: ThrottledLog = field(default_factory=lambda: ThrottledLog(log, "slow requests closed"))
    disconnect_log: ThrottledLog = field(
        default_factory=lambda: ThrottledLog(log, "clients disconnected before their answer", level=logging.INFO))


def _clip_request_text(text: str) -> str:
    """waitress quotes the offending request text last, between double quotes: cut it to 64 characters.

    (Everything after the first quote counts as the quote: the client's text may hold quotes itself.)
    """
    head, quote, rest = text.partition('"')
    if quote:
        text = head + quote + clip(rest.removesuffix('"'), MAX_CLIENT_VALUE_CHARS) + quote
    return clip(text, MAX_MESSAGE_CHARS)


class JsonErrorTask(ErrorTask):
    """waitress's own answers (malformed request, body over the limit, ...) as our JSON errors; always closes."""

    def execute(self) -> None:
        error = self.request.error
        settings: GuardSettings = self.channel.guard
        doc: dict[str, object] = {"error": WAITRESS_ERROR_CODES.get(error.code, "internal_error")}
        if error.code == 413:
            doc["message"] = f"request body exceeds {settings.max_body_bytes} bytes"
        else:
            doc["message"] = _clip_request_text(f"{error.reason}: {error.body}")
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.response_headers.append(NOSNIFF)
        if error.code == 401:
            self.response_headers.append(("WWW-Authenticate", 'Bearer realm="spoolship"'))
        if error.code == 503:
            doc.update(retry_after_seconds=float(RETRY_AFTER_SECONDS), written="none")
            self.response_headers.append(("Retry-After", str(RETRY_AFTER_SECONDS)))
        body = orjson.dumps(doc)
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class GuardedParser(HTTPRequestParser):
    """waitress's request parser with the checks above. ``channel`` (if given) may hold back pipelined bytes."""

    guard: GuardSettings  # set on the subclass made per server (receiver/connection.py)

    def __init__(self, adj, channel=None) -> None:
        super().__init__(adj)
        self.channel = channel
        self.held_bytes = 0  # what this request's body counts for in guard.buffers

    def received(self, data: bytes) -> int:
        channel = self.channel
        if channel is not None and not self.header_plus and not self.header_bytes_received and channel.should_hold():
            channel.hold(data)  # pipelined ahead of the answers: parsed once the client has read them
            return len(data)
        consumed = super().received(data)
        if self.headers_finished:
            self.header_plus = b""  # waitress keeps the last partial block (up to 16 KiB) for the request's life
        if self.chunked and self.error is None and self.body_rcv is not None:
            self._count_chunked_body()
        if self.completed:
            # Nothing is left to invite (no body, the whole body is here, or the answer is decided): waitress
            # would send "100 Continue" anyway, mark the request incomplete again and wait for a body.
            self.expect_continue = False
        if self.error is not None:
            if channel is not None:
                channel.refused_unread()  # close without a reset: see receiver/connection.py
            return len(data)  # the connection closes after the error: what follows is never parsed
        return consumed

    def parse_header(self, header_plus: bytes) -> None:
        check_raw_framing(header_plus)
        te_values = transfer_encodings(header_plus)
        super().parse_header(header_plus)
        error = framing_error(te_values, self.version, self.headers)
        if error is not None:
            self._refuse(error)
        else:
            self._admit_body()

    def close(self) -> None:
        super().close()
        held, self.held_bytes = self.held_bytes, 0
        self.guard.buffers.give_back(held)

    def _refuse(self, error: Error) -> None:
        self.error = error
        self.completed = True

    def _admit_body(self) -> None:
        guard, headers = self.guard, self.headers
        large = self.chunked or self.content_length > EARLY_KEY_CHECK_BODY_BYTES
        if guard.keys is not None and large and not guard.keys.is_valid(headers.get("AUTHORIZATION"),
                                                                        headers.get("X_API_KEY")):
            self._refuse(KeyRequired("a valid API key is required before a large body is read"))
        elif not self.chunked and 0 < self.content_length <= guard.max_body_bytes:
            if guard.buffers.grow(0, self.content_length):
                self.held_bytes = guard.buffers.counted(self.content_length)
            else:
                self._refuse(self._full())
        # A larger Content-Length gets waitress's own 413 right after this.

    def _count_chunked_body(self) -> None:
        buffers = self.guard.buffers
        if buffers.grow(self.held_bytes, self.body_bytes_received):
            self.held_bytes = max(self.held_bytes, buffers.counted(self.body_bytes_received))
        else:
            self._refuse(self._full())

    def _full(self) -> BuffersFull:
        return BuffersFull(f"this worker holds as many request bodies as it may ({self.guard.buffers.capacity_bytes} "
                           "bytes, --max-buffered-body-bytes); retry shortly")
