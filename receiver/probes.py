"""``/healthz``, ``/readyz`` and ``/metrics``: on the main port, and on ``--probe-port``.

A flood of slow clients on the main port must not fail the kubelet's liveness
probe (it would restart a healthy receiver), so with ``--probe-port`` the probes
also have a listener of their own, with its own connections and threads
(receiver/probe_listener.py). What they say differs by audience:

- the main port is public: ``/readyz`` names the reason in a few words ("spool
  full") without the spool's bytes, cap or free disk, and ``/metrics`` is only
  served there when there is no probe port;
- the probe port is for the cluster: ``/readyz`` gives the full reason, and
  ``/metrics`` lives there.

``/healthz`` is 200 while the process runs and its serving loop turns: on the
probe listener, a main loop that has not ticked for ``LOOP_STALL_SECONDS`` is a
503, so moving the probe off the main loop does not blind it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson
from flask import Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST

from .errors import Unavailable
from .gauges import refresh_gauges

if TYPE_CHECKING:
    from .app import ReceiverState

__all__ = ["LOOP_STALL_SECONDS", "add_probe_routes", "public_reason"]

JSON_TYPE = "application/json"
LOOP_STALL_SECONDS = 20.0


def public_reason(reason: str) -> str:
    """The words before the details: "spool full: spool holds 123 bytes; cap is 100" → "spool full"."""
    return reason.partition(":")[0].strip()


def add_probe_routes(app: Flask, state: ReceiverState, *, detailed: bool, metrics_route: bool) -> None:
    metrics = state.metrics

    @app.get("/healthz")
    def healthz() -> Response:
        seen_at = state.loop_seen_at
        if seen_at is not None and time.monotonic() - seen_at > LOOP_STALL_SECONDS:
            return Response(b'{"status":"stalled","reason":"the serving loop is not turning"}', status=503,
                            content_type=JSON_TYPE)
        return Response(b'{"status":"ok"}', status=200, content_type=JSON_TYPE)

    @app.get("/readyz")
    def readyz() -> Response:
        reason = "shutting down" if state.draining else state.writer.refusal()
        metrics.ready.set(0 if reason else 1)
        if reason:
            error = Unavailable(reason, 1.0)
            shown = reason if detailed else public_reason(reason)
            return Response(orjson.dumps({"status": "unready", "reason": shown}), status=503,
                            content_type=JSON_TYPE, headers=error.headers())
        return Response(b'{"status":"ready"}', status=200, content_type=JSON_TYPE)

    if not metrics_route:
        return

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        refresh_gauges(state)  # this worker's; every other worker refreshes its own (receiver/gauges.py)
        return Response(metrics.exposition(), status=200, content_type=CONTENT_TYPE_LATEST)
