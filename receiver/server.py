"""Serving one receiver worker with waitress, and stopping it without losing a request.

SIGTERM (or SIGINT): ``/readyz`` turns 503 at once; after ``shutdown_delay`` the
listening socket closes; requests in flight and queued finish (bounded by
``shutdown_timeout``); then the waitress loop ends, the writer seals its active
segment, and the process exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

from .app import ReceiverState, create_app, open_spool
from .config import ReceiverConfig
from .gauges import GaugeRefresher
from .listener import bind_socket, make_server
from .probe_listener import ProbeListener

__all__ = ["bind_socket", "make_server", "serve"]

log = logging.getLogger(__name__)


class _GracefulStop:
    """Turns a signal into: unready → (delay) → stop accepting → drain → end the loop."""

    def __init__(self, server, state: ReceiverState, config: ReceiverConfig) -> None:
        self._server = server
        self._state = state
        self._config = config
        self._started = threading.Event()

    def on_signal(self, signum: int, _frame: object) -> None:
        if self._started.is_set():
            return
        self._started.set()
        self._state.draining = True
        log.info("receiver stopping", extra={"signal": signal.Signals(signum).name})
        threading.Thread(target=self._drain, name="receiver-drain", daemon=True).start()

    def _drain(self) -> None:
        time.sleep(self._config.shutdown_delay_seconds)
        self._server.pull_trigger_thunk(self._stop_accepting)
        deadline = time.monotonic() + self._config.shutdown_timeout_seconds
        while time.monotonic() < deadline and self._busy():
            time.sleep(0.02)
        if self._busy():
            log.warning("receiver drain timed out with requests in flight")
        self._server.pull_trigger_thunk(self._close_all)

    def _busy(self) -> bool:
        dispatcher = self._server.task_dispatcher
        if dispatcher.queue or dispatcher.active_count > 0:
            return True
        return any(ch.requests or ch.total_outbufs_len for ch in list(self._server.active_channels.values()))

    def _stop_accepting(self) -> None:
        self._server.accepting = False
        self._server.del_channel()
        self._server.socket.close()

    def _close_all(self) -> None:
        for dispatcher in list(self._server._map.values()):
            dispatcher.close()


PARENT_CHECK_SECONDS = 0.5


def _stop_when_parent_dies(stopper: _GracefulStop) -> None:
    """A worker whose supervisor was SIGKILLed stops like on SIGTERM (sealing), not lingering on the port."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        log.warning("receiver supervisor is gone; stopping this worker")
        stopper.on_signal(signal.SIGTERM, None)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve(config: ReceiverConfig, *, worker: str | int = "0", sock: socket.socket | None = None,
          supervised: bool = False) -> int:
    """Run one worker until SIGTERM/SIGINT (or, if ``supervised``, its parent's death); return the exit code."""
    writer = open_spool(config, worker)  # the spool's writer, or one per route (receiver/route_spools.py)
    probes: ProbeListener | None = None
    gauges: GaugeRefresher | None = None
    try:
        app = create_app(config, writer=writer)
        state: ReceiverState = app.extensions["spoolship"]
        shared = config.workers > 1
        if sock is None:
            sock = bind_socket(config.host, config.port, reuse_port=shared)
        server = make_server(app, sock, config, keys=state.keys, on_tick=lambda: _tick(state))
        if config.probe_port is not None:
            probes = ProbeListener(state, config, bind_socket(config.host, config.probe_port, reuse_port=shared))
        stopper = _GracefulStop(server, state, config)
        signal.signal(signal.SIGTERM, stopper.on_signal)
        signal.signal(signal.SIGINT, stopper.on_signal)
        if supervised:
            _stop_when_parent_dies(stopper)
        host, port = sock.getsockname()[:2]
        _tick(state)
        gauges = GaugeRefresher(state).start()  # before the first scrape can reach this worker
        if probes is not None:
            probes.start()
        log.info("receiver listening", extra={"host": host, "port": port, "worker": str(worker),
                                              "probe_port": probes.port if probes else None,
                                              "writer": writer.config.writer_id, "threads": config.threads})
        server.run()
        server.task_dispatcher.shutdown(cancel_pending=False, timeout=config.shutdown_timeout_seconds)
    finally:
        if probes is not None:
            probes.close()  # after the drain: the kubelet saw "unready: shutting down" until the end
        if gauges is not None:
            gauges.close()
        writer.close()
    log.info("receiver stopped", extra={"worker": str(worker), "writer": writer.config.writer_id})
    return 0


def _tick(state: ReceiverState) -> None:
    state.loop_seen_at = time.monotonic()
