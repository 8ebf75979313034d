"""Prometheus metrics of one receiver (all workers, in multi-process mode).

With ``--workers N`` the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before the
workers start, and ``/metrics`` on any worker aggregates every worker's values.
The pod-wide gauges use ``live*`` modes: a dead worker's values leave them
when the supervisor marks it dead (``multiprocess.mark_process_dead``); every
worker keeps its own values current (receiver/gauges.py).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["ReceiverMetrics"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ReceiverMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_accepted = Counter(
            "spoolship_receiver_events_accepted", "Events written to the spool", registry=r
        )
        self.bytes_accepted = Counter(
            "spoolship_receiver_bytes_accepted", "Bytes written to the spool", registry=r
        )
        self.requests_rejected = Counter(
            "spoolship_receiver_requests_rejected", "Requests refused, by reason", ["reason"], registry=r
        )
        self.request_seconds = Histogram(
            "spoolship_receiver_request_seconds", "POST /v1/events latency", buckets=LATENCY_BUCKETS, registry=r
        )
        self.spool_bytes = Gauge(
            "spoolship_receiver_spool_bytes", "Bytes in the spool as last measured",
            multiprocess_mode="livemax", registry=r,
        )
        self.spool_free_bytes = Gauge(
            "spoolship_receiver_spool_free_bytes", "Free bytes on the spool's disk",
            multiprocess_mode="livemin", registry=r,
        )
        self.ready = Gauge(
            "spoolship_receiver_ready", "1 when accepting appends", multiprocess_mode="livemin", registry=r
        )
        self.api_keys = Gauge(
            "spoolship_receiver_api_keys", "API keys in use (0 with --api-key-file: every request is refused)",
            multiprocess_mode="livemin", registry=r,
        )
        self.api_key_file_ok = Gauge(
            "spoolship_receiver_api_key_file_ok",
            "0 while the API key file cannot be read and the last good keys stay in use",
            multiprocess_mode="livemin", registry=r,
        )

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)
