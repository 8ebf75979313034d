"""The hot call's HTTP/1.1 exchange: one POST on a pooled keep-alive socket, no generic HTTP stack.

Through botocore's session, urllib3 and http.client a PutRecords call costs ~1 ms
of CPU on top of the body's own work (docs/performance.md): per-call URL and proxy
resolution, retry and timeout objects, ``email.parser`` for the answer's headers.
This exchange does what that one POST needs: the request head built once per
endpoint, the signed headers appended, ``sendall``; the answer read by
:mod:`tailer.http_answer`. TLS uses botocore's own context settings, CA bundle and
verification choice (:func:`tailer.aws_json.http_settings`); an endpoint behind a
proxy, or with a client certificate, keeps botocore's session (aws_json decides).

Failures leave as the botocore exceptions botocore's session raises for them, so
tailer/kinesis_errors.py's ``translate_exception`` stays the one translation point
and every failure lands in the same class as before (all retryable):

- connect refused / unreachable / DNS → ``EndpointConnectionError``; connect or TLS
  handshake timeout → ``ConnectTimeoutError``; TLS failure → ``SSLError``;
- a timeout while sending or reading → ``ReadTimeoutError``;
- reset, early close, a malformed, truncated or oversized answer → ``ConnectionClosedError``.

A socket is pooled only if nothing past its answer has arrived, and checked again
before reuse (readable means the server closed it or sent something unasked: it
is dropped, as urllib3 does) — bytes a server sent after its answer must never
be read as the next call's answer. If sending on a reused
socket fails, nothing of the request can have been processed (the body was not all
written), so the call is sent once more on a fresh connection. (A body of up to
``JOIN_BODY_MAX_BYTES`` goes out in one send with its head, so a server that reads
part of it and resets or answers early is mostly seen after the send — as an unknown
outcome, or its own answer — rather than as a failed send.) Once the request
is written, any failure is an unknown outcome: it is raised, and the tailer sends
the call again with backoff — a duplicate at worst, never a loss. The call's
socket is registered with the per-call deadline (tailer/deadline.py), which shuts
it down when the call runs too long. Thread-safe.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from urllib.parse import urlsplit

from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    SSLError,
)

from . import deadline
from .http_answer import Answer, BrokenAnswer, read_answer
from .sigv4 import canonical_host

__all__ = ["USER_AGENT", "Exchange"]

USER_AGENT = "spoolship-tailer"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_READ_BUFFER = 65536
# A body up to this size goes out in one sendall with its head (one copy of it): one wait for the socket and
# one send fewer per call, each a GIL hand-off between the delivery threads. Larger ones (aggregates, megabytes)
# are sent after the head, not copied.
JOIN_BODY_MAX_BYTES = 256 * 1024


class _Connection:
    __slots__ = ("reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock  # tailer/deadline.py shuts it down at the call's deadline
        self.reader = sock.makefile("rb", buffering=_READ_BUFFER)

    def dropped(self) -> bool:
        """Whether the server closed it (or sent something unasked) while it was idle: urllib3's check."""
        try:
            if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
                return True
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    def holds_unread(self) -> bool:
        """Whether bytes past the answer just read are already here (in the reader's buffer, the TLS layer
        or the socket): a server that wrote one answer too many, or a body longer than its length. Such a
        socket is never reused: the next call would take those bytes for its own answer — a 200 believed
        for records nobody stored (hostile review of the exchange: 1,000 of 6,000 lines lost). http.client
        drops them with its per-answer reader; this reader lives as long as the socket, so it must ask."""
        sock = self.sock
        try:
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                return True
            timeout = sock.gettimeout()
            sock.settimeout(0)  # peek returns the buffered bytes, or reads once without waiting
            try:
                return bool(self.reader.peek(1))
            except (BlockingIOError, ssl.SSLWantReadError):
                return False  # nothing buffered, nothing waiting
            finally:
                sock.settimeout(timeout)
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            self.sock.close()


class Exchange:
    """POSTs to one endpoint (``http://`` or ``https://``, no proxy) on up to ``max_connections`` kept sockets."""

    def __init__(self, url: str, *, connect_timeout: float, read_timeout: float, max_connections: int = 10,
                 ssl_context: ssl.SSLContext | None = None, socket_options=()) -> None:
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {url!r}")
        if parts.scheme == "https" and ssl_context is None:
            raise ValueError("an https endpoint needs an SSL context")
        self.url = url
        self._address = (parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme])
        self._tls = ssl_context if parts.scheme == "https" else None
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._socket_options = list(socket_options)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # What http.client + urllib3 put before botocore's headers (tests/unit/test_http_exchange_wire.py).
        self._head = (f"POST {target} HTTP/1.1\r\nHost: {canonical_host(url)}\r\n"
                      f"Accept-Encoding: identity\r\nUser-Agent: {USER_AGENT}\r\n").encode()
        self._max_idle = max_connections
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def send(self, request: tuple[dict[str, str], bytes]) -> Answer:
        """One POST of ``(headers, body)``; raises botocore's exceptions (see the module docstring)."""
        headers, body = request
        try:
            head = self._head + "".join([f"{k}: {v}\r\n" for k, v in headers.items()]).encode("latin-1") + b"\r\n"
        except UnicodeEncodeError as exc:  # what http.client raised, through botocore's catch-all
            raise HTTPClientError(error=exc) from exc
        connection = self._take()
        if connection is not None:
            try:
                return self._exchange(connection, head, body, reused=True)
            except _NotSent:
                pass  # the reused socket was closed under us before the request was written: once, fresh
        return self._exchange(self._connect(), head, body, reused=False)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    # -- one exchange ------------------------------------------------------------------

    def _exchange(self, connection: _Connection, head: bytes, body: bytes, *, reused: bool) -> Answer:
        keep = False
        try:
            deadline.record(connection)  # raises if the call's deadline has passed: nothing is sent
            try:
                if len(body) <= JOIN_BODY_MAX_BYTES:
                    connection.sock.sendall(head + body)
                else:
                    connection.sock.sendall(head)
                    connection.sock.sendall(body)
            except TimeoutError as exc:
                raise ReadTimeoutError(endpoint_url=self.url, error=exc) from exc
            except OSError as exc:
                if reused and not isinstance(exc, ConnectionAbortedError):
                    raise _NotSent from exc
                # A server may answer (413, 400) and close before reading the whole body: read that answer.
                try:
                    answer, _ = read_answer(connection.reader)
                except (OSError, BrokenAnswer):
                    raise ConnectionClosedError(endpoint_url=self.url, error=exc) from exc
                return answer
            answer, keep = read_answer(connection.reader)
            keep = keep and not connection.holds_unread()
            return answer
        except TimeoutError as exc:
            raise ReadTimeoutError(endpoint_url=self.url, error=exc) from exc
        except ssl.SSLError as exc:
            raise SSLError(endpoint_url=self.url, error=exc) from exc
        except (OSError, BrokenAnswer) as exc:
            raise ConnectionClosedError(endpoint_url=self.url, error=exc) from exc
        finally:
            if keep:
                self._give_back(connection)
            else:
                connection.close()

    # -- the pool ----------------------------------------------------------------------

    def _take(self) -> _Connection | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                connection = self._idle.pop()
            if not connection.dropped():
                return connection
            connection.close()

    def _give_back(self, connection: _Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(connection)
                return
        connection.close()

    def _connect(self) -> _Connection:
        try:
            sock = socket.create_connection(self._address, timeout=self._connect_timeout)
        except TimeoutError as exc:
            raise ConnectTimeoutError(endpoint_url=self.url, error=exc) from exc
        except OSError as exc:  # refused, unreachable, DNS (socket.gaierror)
            raise EndpointConnectionError(endpoint_url=self.url, error=exc) from exc
        try:
            for option in self._socket_options:
                sock.setsockopt(*option)
            if self._tls is not None:  # the handshake runs under the connect timeout
                sock = self._tls.wrap_socket(sock, server_hostname=self._address[0])
            sock.settimeout(self._read_timeout)
            return _Connection(sock)
        except TimeoutError as exc:
            sock.close()
            raise ConnectTimeoutError(endpoint_url=self.url, error=exc) from exc
        except ssl.SSLError as exc:  # includes certificate verification failures
            sock.close()
            raise SSLError(endpoint_url=self.url, error=exc) from exc
        except OSError as exc:
            sock.close()
            raise EndpointConnectionError(endpoint_url=self.url, error=exc) from exc


class _NotSent(Exception):
    """Sending on a reused socket failed: the request was not all written, so nothing was processed."""
