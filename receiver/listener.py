"""The receiver's waitress servers: limits, the request guard, security headers.

One place sets how waitress serves the main port and the probe port: how many
connections, how long an idle keep-alive connection lives (``--idle-timeout``,
above the keep-alive of the proxies in front), how slowly a request may arrive
(``--read-timeout``), the largest headers and body, and the guard of
receiver/guard.py. Why each number is what it is: next to it.
"""

from __future__ import annotations

import resource
import socket
import warnings
from collections.abc import Callable

from waitress.server import create_server

from .auth import ApiKeys
from .body_buffers import INBUF_OVERFLOW_BYTES, BodyBuffers
from .config import ReceiverConfig
from .connection import close_slow_requests, guarded_channel_class
from .framing import strict_chunk_lines
from .guard import NOSNIFF, GuardSettings

__all__ = ["bind_socket", "connection_limit", "make_server", "with_security_headers"]

# One send() for headers and body (waitress's default flushes the headers alone first).
SEND_BYTES = 65536
# The kernel's send buffer per connection (Linux doubles it). Answers are small; autotuning let each
# connection of a client that reads nothing take up to 4 MiB of answers (socket memory, charged to the
# container's cgroup), and kept the worker making answers for it as fast as they were taken.
SEND_BUFFER_BYTES = 16 * 1024
LISTEN_BACKLOG = 2048
# waitress's default (100, counting the listener itself) let 100 slow clients stop every other
# connection, the kubelet's probes included. Idle keep-alive pools of the proxies in front
# (ingress-nginx keeps up to 320 per nginx worker) need room too.
CONNECTION_LIMIT = 1000
MIN_CONNECTION_LIMIT = 64
RESERVED_DESCRIPTORS = 64  # segments, the spool directory, logs, the probe listener
# How often idle and slow connections are looked for (waitress's default: 30 s).
CLEANUP_INTERVAL_SECONDS = 1
# Request line and headers. Every connection may hold this much (1,000 connections: 16 MiB); waitress's
# default, 256 KiB, would be 250 MiB. nginx takes up to 4 x 8 KiB, but real requests to an ingest endpoint
# (no cookies of a web app) carry a few hundred bytes; 16 KiB is also Node.js's default.
MAX_REQUEST_HEADER_BYTES = 16 * 1024


def bind_socket(host: str, port: int, *, reuse_port: bool, listen: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)  # accepted connections inherit it
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(LISTEN_BACKLOG)
    return sock


def make_server(app, sock: socket.socket, config: ReceiverConfig, *, keys: ApiKeys | None = None,
                threads: int | None = None, max_connections: int | None = None,
                max_body_bytes: int | None = None, on_tick: Callable[[], None] | None = None):
    """A waitress server for ``app`` on ``sock`` with the receiver's limits and request guard.

    ``keys`` lets the guard refuse large unauthenticated bodies before reading them; the server's
    bodies together stay within ``--max-buffered-body-bytes`` (receiver/body_buffers.py);
    ``max_body_bytes`` overrides ``--max-body-bytes`` (the probe listener takes no bodies);
    ``on_tick`` runs on the serving loop about once a second (a liveness heartbeat).
    """
    strict_chunk_lines()  # a chunk-size line ends in CRLF, never a bare LF (receiver/framing.py)
    max_body = config.max_body_bytes if max_body_bytes is None else max_body_bytes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # send_bytes: still the only knob for this
        server = create_server(
            with_security_headers(app),
            sockets=[sock],
            threads=threads or config.threads,
            send_bytes=SEND_BYTES,
            ident="spoolship",
            channel_timeout=config.idle_timeout_seconds,
            cleanup_interval=CLEANUP_INTERVAL_SECONDS,
            connection_limit=max_connections or connection_limit(),
            # waitress refuses a Content-Length >= this at the end of the headers (>=, hence + 1).
            max_request_body_size=max_body + 1,
            max_request_header_size=MAX_REQUEST_HEADER_BYTES,
            inbuf_overflow=INBUF_OVERFLOW_BYTES,  # what the body budget counts as memory
            expose_tracebacks=False,
            backlog=LISTEN_BACKLOG,
            # waitress drops X-Forwarded-For & co. unless told otherwise; with --trusted-proxies the
            # receiver reads X-Forwarded-For itself, believing only those proxies (receiver/context.py).
            clear_untrusted_proxy_headers=not config.trusted_proxies,
        )
    buffers = BodyBuffers(config.max_buffered_body_bytes if max_body_bytes is None else max_body)
    server.channel_class = guarded_channel_class(
        GuardSettings(max_body, config.read_timeout_seconds, keys, buffers))
    _run_with_maintenance(server, on_tick)

    def pull_trigger_thunk(thunk) -> None:
        server.trigger.pull_trigger(thunk)

    server.pull_trigger_thunk = pull_trigger_thunk
    return server


def _run_with_maintenance(server, on_tick: Callable[[], None] | None) -> None:
    """Add closing slow requests (and the heartbeat) to waitress's periodic channel clean-up.

    waitress calls ``server.maintenance(now)`` from its loop every ``cleanup_interval``
    (it closes idle channels there); an instance attribute is the one hook it offers.
    """
    idle_cleanup = server.maintenance

    def maintenance(now: float) -> None:
        idle_cleanup(now)
        close_slow_requests(server)
        if on_tick is not None:
            on_tick()

    server.maintenance = maintenance


def connection_limit() -> int:
    """CONNECTION_LIMIT, or fewer when the process may not open that many descriptors."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return CONNECTION_LIMIT
    return max(MIN_CONNECTION_LIMIT, min(CONNECTION_LIMIT, soft - RESERVED_DESCRIPTORS))


def with_security_headers(app):
    """``X-Content-Type-Options: nosniff`` on every answer of ``app`` (a browser never guesses a type)."""

    def wsgi(environ, start_response):
        def start(status, headers, exc_info=None):
            headers.append(NOSNIFF)
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return wsgi
