"""The receiver's pod-wide gauges, kept current by every worker on its own.

``spool_bytes``, ``spool_free_bytes``, ``ready``, ``api_keys`` and
``api_key_file_ok`` describe the pod, not the request a worker happens to
serve. With ``--workers N`` Prometheus reads them from whichever worker
answers ``/metrics`` (always the same one: it keeps its connection), and the
multi-process exposition merges every worker's stored value. So each worker
refreshes its own values every ``GAUGE_REFRESH_SECONDS`` on a thread of its
own, whether or not it is ever scraped, and a scrape refreshes the serving
worker's values first. The gauges use prometheus_client's ``live*`` modes
(receiver/metrics.py), so a worker that died drops out of them when the
supervisor marks it dead, instead of reporting its last values for ever
(deploy review, finding 3).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import ReceiverState

__all__ = ["GAUGE_REFRESH_SECONDS", "GaugeRefresher", "refresh_gauges"]

GAUGE_REFRESH_SECONDS = 5.0  # well inside Prometheus's 30 s scrape interval


def refresh_gauges(state: ReceiverState) -> None:
    """Set this worker's pod-wide gauges from the writer, the key file and the draining flag."""
    metrics = state.metrics
    stats = state.writer.stats()
    metrics.spool_bytes.set(stats.spool_bytes)
    metrics.spool_free_bytes.set(stats.free_bytes)
    metrics.ready.set(0 if state.draining or state.writer.refusal() else 1)
    if state.keys is not None:
        state.keys.refresh()
        metrics.api_keys.set(state.keys.count)
        metrics.api_key_file_ok.set(1 if state.keys.file_ok else 0)


class GaugeRefresher:
    """Calls :func:`refresh_gauges` now and then every ``interval_seconds`` until ``close()``."""

    def __init__(self, state: ReceiverState, interval_seconds: float = GAUGE_REFRESH_SECONDS) -> None:
        self._state = state
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gauge-refresher", daemon=True)

    def start(self) -> GaugeRefresher:
        refresh_gauges(self._state)
        self._thread.start()
        return self

    def _run(self) -> None:
        # Nothing here can fail on I/O: the writer's numbers come from its own housekeeping scans, and a key
        # file reload never raises (receiver/auth.py).
        while not self._stop.wait(self._interval):
            refresh_gauges(self._state)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
