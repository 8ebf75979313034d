"""``--probe-port``: the probes' own waitress server, on a thread of the worker.

It shares nothing with the main port but the worker's state: its own socket,
connection table, connection limit and threads. So however many clients hold
connections on the main port (slowloris), or keep its threads busy, the
kubelet's ``/healthz`` and ``/readyz`` and Prometheus's ``/metrics`` are
answered. It can still be flooded itself: only the cluster (kubelet,
Prometheus) should reach it — a NetworkPolicy, not this code, keeps others out.
"""

from __future__ import annotations

import logging
import socket
import threading

from .app import ReceiverState, create_probe_app
from .config import ReceiverConfig
from .listener import make_server

__all__ = ["PROBE_CONNECTION_LIMIT", "PROBE_MAX_BODY_BYTES", "PROBE_THREADS", "ProbeListener"]

log = logging.getLogger(__name__)
PROBE_THREADS = 2
PROBE_CONNECTION_LIMIT = 64
PROBE_MAX_BODY_BYTES = 8 * 1024  # nothing here takes a body: a larger one gets 413 when its headers end


class ProbeListener:
    """Serves ``state``'s probes on ``sock`` from ``start()`` until ``close()``."""

    def __init__(self, state: ReceiverState, config: ReceiverConfig, sock: socket.socket) -> None:
        self.port = sock.getsockname()[1]
        self._server = make_server(create_probe_app(state), sock, config, threads=PROBE_THREADS,
                                   max_connections=PROBE_CONNECTION_LIMIT, max_body_bytes=PROBE_MAX_BODY_BYTES)
        self._thread = threading.Thread(target=self._server.run, name="probe-listener", daemon=True)

    def start(self) -> ProbeListener:
        self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        server = self._server

        def close_all() -> None:
            for dispatcher in list(server._map.values()):
                dispatcher.close()

        if self._thread.is_alive():
            server.pull_trigger_thunk(close_all)
            self._thread.join(timeout)
        server.task_dispatcher.shutdown(timeout=timeout)
