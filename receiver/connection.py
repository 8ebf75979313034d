"""What one connection may make a worker hold, and for how long: the waitress channel of the receiver.

- **Pipelining**: a client may send many requests before reading an answer;
  waitress parsed every request of each read (hundreds of small ones in 8 KiB)
  and made all their answers, which waited in memory for a client that never
  read them (900 connections: 255 MB). Here at most ``MAX_QUEUED_REQUESTS`` are
  parsed ahead; the rest of the bytes wait as they came (one read's worth) and
  are parsed once every answer before them has been sent. Nothing is dropped: a
  client that reads late gets every answer, in order.
- **Slow requests** (slowloris): a request's headers must be complete within
  ``--read-timeout`` of its first byte (a fixed deadline: before, each byte
  bought more time), and its body must then arrive at ``MIN_REQUEST_BYTES_PER_SECOND``
  or more over each window of ``--read-timeout`` (before, the average over the
  whole request, so a burst bought credit for a trickle). A connection that
  falls behind is closed. (An idle keep-alive connection between requests is
  closed after ``--idle-timeout``: waitress's own channel timeout.)
- **Lingering close**: a request refused before its body was read (401, 413,
  503, bad framing) is answered and the connection closed, but a client that
  sends its body without waiting for ``100 Continue`` may still be sending it.
  Closing a socket with unread bytes sends a reset, which can make the client's
  kernel discard the answer before it is read (a "connection reset" instead of
  the 503 and its Retry-After). So the connection is shut for writing after the
  answer and what still arrives is read and dropped, for at most
  ``LINGER_SECONDS`` or ``--max-body-bytes``, as Apache and nginx do.
- **What a closed connection held** of its body budget is given back.
- waitress's "Client disconnected while serving" is counted, not logged each time.

This reaches into waitress's channel and server maintenance (pinned in
pyproject.toml); ``tests/unit/test_waitress_hooks.py`` fails loudly if an
upgrade moves what is used here.
"""

from __future__ import annotations

import logging
import socket
import time

from waitress.channel import HTTPChannel

from .guard import GuardedParser, GuardSettings, JsonErrorTask
from .throttled_log import ThrottledLog

__all__ = ["LINGER_SECONDS", "MAX_QUEUED_REQUESTS", "MIN_REQUEST_BYTES_PER_SECOND", "close_slow_requests",
           "guarded_channel_class"]

MAX_QUEUED_REQUESTS = 2  # parsed and waiting for (or in) service on one connection
MIN_REQUEST_BYTES_PER_SECOND = 1024
LINGER_SECONDS = 2.0  # Apache's lingering close; enough for a proxy on the same network to finish sending
_DISCARD_BYTES = 65536
_DISCONNECTED = "Client disconnected while serving"


class _ChannelLogger(logging.LoggerAdapter):
    """waitress's channel logger, except that a client leaving before its answer is only counted."""

    def __init__(self, logger: logging.Logger, disconnects: ThrottledLog) -> None:
        super().__init__(logger, {})
        self._disconnects = disconnects

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        if isinstance(msg, str) and msg.startswith(_DISCONNECTED):
            self._disconnects.add()
            return
        super().log(level, msg, *args, **kwargs)


class _GuardedChannel(HTTPChannel):
    error_task_class = JsonErrorTask
    guard: GuardSettings  # these two are set on the subclass made per server
    parser_type: type[GuardedParser]
    _request_started_at = 0.0
    _held = b""  # pipelined bytes not parsed yet
    _body_window: tuple[float, int, GuardedParser] | None = None  # (started at, body bytes then, request)
    _linger_on_close = False  # a request was refused before its body was read
    _lingering_until: float | None = None
    _discarded = 0

    def parser_class(self, adj) -> GuardedParser:  # waitress calls self.parser_class(self.adj)
        return self.parser_type(adj, self)

    # -- pipelining --------------------------------------------------------------------------------

    def should_hold(self) -> bool:
        return len(self.requests) >= MAX_QUEUED_REQUESTS

    def hold(self, data: bytes) -> None:
        self._held += data

    def received(self, data: bytes) -> bool:
        if self._held:  # never happens (not readable while holding), but order must be kept if it did
            data, self._held = self._held + data, b""
        before = self.request
        result = super().received(data)
        with self.requests_lock:
            request = self.request
            if request is not None and not request.header_plus and not request.header_bytes_received:
                self.request = request = None  # the parser that held bytes back; a fresh one parses them later
        if request is not None and request is not before:
            self._request_started_at = time.monotonic()
        return result

    def _feed_held(self) -> None:
        """Parse held bytes once every answer before them is sent (on the serving loop, like a read)."""
        if self._held and not (self.will_close or self.close_when_flushed or self.requests or self.total_outbufs_len):
            held, self._held = self._held, b""
            self.received(held)

    def readable(self) -> bool:
        if self.lingering:
            return not self.will_close
        self._feed_held()
        return super().readable()

    def writable(self) -> bool:
        if self.lingering:
            return self.will_close  # nothing more is sent; closing goes through handle_write
        return super().writable()

    def handle_write(self) -> None:
        if self.lingering:
            if self.will_close:
                self.handle_close()
            return
        super().handle_write()
        self._feed_held()

    def handle_close(self) -> None:
        if self._linger_on_close and self._lingering_until is None and self.connected and self._start_lingering():
            return
        super().handle_close()
        request = self.request  # one still arriving: what its body held is given back
        if request is not None:
            request.close()

    # -- lingering close -----------------------------------------------------------------------------

    def refused_unread(self) -> None:
        """A request is refused (answer, then close) while its body may still be on its way."""
        self._linger_on_close = True

    def _start_lingering(self) -> bool:
        try:
            self.socket.shutdown(socket.SHUT_WR)  # the answer, then FIN; the client's bytes are still read
        except OSError:
            return False
        self._lingering_until = time.monotonic() + LINGER_SECONDS
        self.will_close = self.close_when_flushed = False
        return True

    @property
    def lingering(self) -> bool:
        return self._lingering_until is not None

    def handle_read(self) -> None:
        if not self.lingering:
            super().handle_read()
            return
        data = self.recv(_DISCARD_BYTES)  # the client closing (an empty read, a reset) closes, in recv()
        self._discarded += len(data)
        if data and self._discarded > self.guard.max_body_bytes + _DISCARD_BYTES:
            self.handle_close()

    def linger_expired(self, now: float) -> bool:
        return self._lingering_until is not None and now >= self._lingering_until

    # -- slow requests -----------------------------------------------------------------------------

    def is_too_slow(self, now: float) -> bool:
        """A request is arriving, none is in service, and it missed its header deadline or its body's rate."""
        if self.lingering:
            return False
        request = self.request
        if request is None or request.completed or self.requests:
            self._request_started_at = now  # the clocks start when the connection is free to read again
            self._body_window = None
            return False
        timeout = self.guard.read_timeout_seconds
        if not request.headers_finished:
            return now - self._request_started_at > timeout
        received = request.body_bytes_received
        window = self._body_window
        if window is None or window[2] is not request:
            self._body_window = (now, received, request)
            return False
        started, received_then, _ = window
        if now - started < timeout:
            return False
        if received - received_then < MIN_REQUEST_BYTES_PER_SECOND * (now - started):
            return True
        self._body_window = (now, received, request)
        return False


def guarded_channel_class(settings: GuardSettings) -> type[HTTPChannel]:
    """A waitress channel class (with its parser) applying ``settings``."""
    parser = type("GuardedParser", (GuardedParser,), {"guard": settings})
    return type("GuardedChannel", (_GuardedChannel,), {
        "guard": settings, "parser_type": parser,
        "logger": _ChannelLogger(logging.getLogger("waitress"), settings.disconnect_log)})


def close_slow_requests(server) -> int:
    """Mark for closing every channel of ``server`` whose request arrives too slowly (return how many),
    and every one that has lingered long enough."""
    now = time.monotonic()
    closed = 0
    for channel in list(server.active_channels.values()):
        if not isinstance(channel, _GuardedChannel) or channel.will_close:
            continue
        if channel.linger_expired(now):
            channel.will_close = True
        elif channel.is_too_slow(now):
            channel.will_close = True
            closed += 1
    if closed:
        server.channel_class.guard.slow_log.add(closed)
    return closed
