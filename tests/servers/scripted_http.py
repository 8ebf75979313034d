"""A real TCP server whose every answer is a script: for testing HTTP clients against what wires do.

Each accepted connection reads requests (head up to the blank line, then
``Content-Length`` bytes) and hands each to ``script(server, sock, request)``,
which writes whatever bytes it likes — a good answer, half an answer, garbage, a
reset — and returns whether the connection should read another request. What
was received is kept in :attr:`ScriptedServer.requests` (complete requests only)
and :attr:`ScriptedServer.connections` (how many were accepted).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable

__all__ = ["ScriptedServer", "reset"]


def reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0): what a crashed server or a load balancer's reset looks like."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class ScriptedServer:
    def __init__(self, script: Callable[[ScriptedServer, socket.socket, bytes], bool], *,
                 tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.connections = 0
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_side=True)
            reader = sock.makefile("rb")
            while True:
                request = self._read_request(reader)
                if request is None:
                    break
                with self._lock:
                    self.requests.append(request)
                if not self.script(self, sock, request):
                    break
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    @staticmethod
    def _read_request(reader) -> bytes | None:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = reader.readline()
            if not line:
                return None
            head += line
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = reader.read(length)
        return head + body if len(body) == length else None

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.close()
