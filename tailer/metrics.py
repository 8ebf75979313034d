"""The tailer's Prometheus metrics and its small HTTP endpoint (/metrics, /healthz)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["MetricsServer", "TailerMetrics"]

PUT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class TailerMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.records_shipped = Counter("spoolship_tailer_records_shipped", "Kinesis records acknowledged", registry=r)
        self.lines_shipped = Counter("spoolship_tailer_lines_shipped", "Spool lines (events) acknowledged", registry=r)
        self.bytes_shipped = Counter("spoolship_tailer_bytes_shipped", "Spool bytes acknowledged", registry=r)
        self.put_calls = Counter("spoolship_tailer_put_records_calls", "Successful PutRecords calls", registry=r)
        self.retries = Counter("spoolship_tailer_retries", "Records or calls sent again", registry=r)
        self.throttles = Counter("spoolship_tailer_throttles", "Throttled records or calls", registry=r)
        self.record_failures = Counter("spoolship_tailer_record_failures", "Records failed inside a call", registry=r)
        self.failed_calls = Counter("spoolship_tailer_failed_calls", "PutRecords calls that failed whole",
                                    ["reason"], registry=r)
        self.dead_letters = Counter("spoolship_tailer_dead_letters", "Lines moved to dead-letter/",
                                    ["reason"], registry=r)
        self.misplaced = Counter("spoolship_tailer_misplaced_aggregates",
                                 "Aggregates that landed on another shard than predicted (a reshard); stray lines sent again", registry=r)
        self.spool_errors = Counter("spoolship_tailer_spool_errors", "Spool operations that failed (retried)",
                                    ["operation"], registry=r)
        self.segments_shrunk = Counter("spoolship_tailer_segments_shrunk",
                                       "Segments found shorter than already read (shipped again from 0)", registry=r)
        self.segments_deleted = Counter("spoolship_tailer_segments_deleted", "Segments deleted or archived", registry=r)
        self.checkpoints = Counter("spoolship_tailer_checkpoints", "Checkpoint writes", registry=r)
        self.bytes_behind = Gauge("spoolship_tailer_spool_bytes_behind", "Spool bytes not yet acknowledged", registry=r)
        self.oldest_age = Gauge("spoolship_tailer_oldest_unshipped_age_seconds",
                                "Age of the oldest line not yet acknowledged", registry=r)
        self.segments = Gauge("spoolship_tailer_segments", "Segments in the spool", registry=r)
        self.inflight = Gauge("spoolship_tailer_batches_in_flight", "PutRecords batches in flight", registry=r)
        self.put_seconds = Histogram("spoolship_tailer_put_records_seconds", "PutRecords latency",
                                     buckets=PUT_BUCKETS, registry=r)
        self.heartbeat = time.monotonic()

    def beat(self) -> None:
        self.heartbeat = time.monotonic()


class MetricsServer:
    """Serves /metrics and /healthz (200 while the loop has run within ``stale_seconds``)."""

    def __init__(self, metrics: TailerMetrics, host: str, port: int, stale_seconds: float = 60.0) -> None:
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.startswith("/metrics"):
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif self.path.startswith("/healthz"):
                    fresh = time.monotonic() - metrics.heartbeat < stale_seconds
                    self._send(200 if fresh else 503, b'{"status":"%s"}' % (b"ok" if fresh else b"stalled"),
                               "application/json")
                else:
                    self._send(404, b'{"error":"not_found"}', "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="tailer-metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
