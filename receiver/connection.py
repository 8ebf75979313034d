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
- **What a closed connection held** of its body budget is given back.
- waitress's "Client disconnected while serving" is counted, not logged each time.

This reaches into waitress's channel and server maintenance (pinned in
pyproject.toml); ``tests/unit/test_waitress_hooks.py`` fails loudly if an
upgrade moves what is used here.
"""

from __future__ import annotations

import logging
import time

from waitress.channel import HTTPChannel

from .guard import GuardedParser, GuardSettings, JsonErrorTask
from .throttled_log import ThrottledLog

__all__ = ["MAX_QUEUED_REQUESTS", "MIN_REQUEST_BYTES_PER_SECOND", "close_slow_requests", "guarded_channel_class"]

MAX_QUEUED_REQUESTS = 2  # parsed and waiting for (or in) service on one connection
MIN_REQUEST_BYTES_PER_SECOND = 1024
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
        self._feed_held()
        return super().readable()

    def handle_write(self) -> None:
        super().handle_write()
        self._feed_held()

    def handle_close(self) -> None:
        super().handle_close()
        request = self.request  # one still arriving: what its body held is given back
        if request is not None:
            request.close()

    # -- slow requests -----------------------------------------------------------------------------

    def is_too_slow(self, now: float) -> bool:
        """A request is arriving, none is in service, and it missed its header deadline or its body's rate."""
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
