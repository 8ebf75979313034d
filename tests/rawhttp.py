"""Raw HTTP/1.1 over a socket, for tests that must send what no client library would.

``exchange`` writes bytes as given, reads one response (status line, headers, a
body framed by Content-Length) and reports whether the server then closed the
connection — the things framing and flood tests need to see.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

__all__ = ["RawResponse", "exchange", "read_response", "server_closed"]


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # names lowercased; repeated headers joined with ", "
    body: bytes
    closed: bool  # the server closed the connection after this response


def read_response(sock: socket.socket, *, head: bool = False, timeout: float = 10.0) -> RawResponse:
    """Read one response from ``sock`` (``head``: a response to HEAD has no body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a full response head: {data!r}")
        data += chunk
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    length = 0 if head or status in (204, 304) or 100 <= status < 200 else int(headers.get("content-length", 0))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    body, extra = rest[:length], rest[length:]
    closed = server_closed(sock, timeout=0.5 if headers.get("connection", "").lower() != "close" else 5.0,
                           pending=extra)
    return RawResponse(status, headers, body, closed)


def server_closed(sock: socket.socket, *, timeout: float, pending: bytes = b"") -> bool:
    """True if the server closes ``sock`` within ``timeout`` (after any bytes already read)."""
    if pending:
        return False
    sock.settimeout(timeout)
    try:
        chunk = sock.recv(65536)
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return not chunk  # more bytes would be a second response: the connection stayed open


def exchange(port: int, data: bytes, *, head: bool = False, timeout: float = 10.0) -> RawResponse:
    """Send ``data`` on a fresh connection to 127.0.0.1:``port`` and read one response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_response(sock, head=head, timeout=timeout)
