"""The tailer's Prometheus metrics and its small HTTP endpoint (/metrics, /healthz).

/healthz is 200 while every shipping loop of the process has turned within ``stale_seconds`` and
no call of theirs has been in flight for that long (a call the deadline watchdog failed to end).
"""

from __future__ import annotations

import threading
import time
import weakref
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


class _Bound:
    """A labelled family with the ``route`` label already given: ``.labels(reason)`` → that route's child."""

    __slots__ = ("_family", "_route")

    def __init__(self, family, route: str) -> None:
        self._family = family
        self._route = route

    def labels(self, *values: str):
        return self._family.labels(self._route, *values)


# The metric families of each registry, so that several loops (one TailerMetrics each) share them.
_FAMILIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class TailerMetrics:
    """The metrics of one shipping loop.

    A lone loop (``route=None``, ``spoolship tail --stream``) exposes them without labels beyond
    their own, as always; the loops of ``tail --config`` share one registry and add ``route``.
    """

    def __init__(self, route: str | None = None, registry: CollectorRegistry | None = None) -> None:
        self.route = route
        self.registry = r = registry or CollectorRegistry(auto_describe=True)
        self._families = _FAMILIES.setdefault(r, {})
        c, g = self._counter, self._gauge
        self.records_shipped = c("spoolship_tailer_records_shipped", "Kinesis records acknowledged")
        self.lines_shipped = c("spoolship_tailer_lines_shipped", "Spool lines (events) acknowledged")
        self.bytes_shipped = c("spoolship_tailer_bytes_shipped", "Spool bytes acknowledged")
        self.put_calls = c("spoolship_tailer_put_records_calls", "Successful PutRecords calls")
        self.retries = c("spoolship_tailer_retries", "Records or calls sent again")
        self.throttles = c("spoolship_tailer_throttles", "Throttled records or calls")
        self.record_failures = c("spoolship_tailer_record_failures", "Records failed inside a call")
        self.failed_calls = c("spoolship_tailer_failed_calls", "PutRecords calls that failed whole", ("reason",))
        self.dead_letters = c("spoolship_tailer_dead_letters", "Lines moved to dead-letter/", ("reason",))
        self.misplaced = c("spoolship_tailer_misplaced_aggregates",
                           "Aggregates that landed on another shard than predicted (a reshard); stray lines sent again")
        self.spool_errors = c("spoolship_tailer_spool_errors", "Spool operations that failed (retried)",
                              ("operation",))
        self.segments_shrunk = c("spoolship_tailer_segments_shrunk",
                                 "Segments found shorter than already read (shipped again from 0)")
        self.keys_missing = c("spoolship_tailer_partition_key_missing",
                              "Lines without the --partition-key field (sent under a random key)")
        self.segments_replaced = c("spoolship_tailer_segments_replaced",
                                   "Segments found to be another file than the one read (replaced, rewritten in "
                                   "place; a checkpoint inside a line): shipped from their first byte", ("how",))
        self.segments_deleted = c("spoolship_tailer_segments_deleted", "Segments deleted or archived")
        self.checkpoints = c("spoolship_tailer_checkpoints", "Checkpoint writes")
        self.bytes_behind = g("spoolship_tailer_spool_bytes_behind", "Spool bytes not yet acknowledged")
        self.oldest_age = g("spoolship_tailer_oldest_unshipped_age_seconds",
                            "Age of the oldest line not yet acknowledged")
        self.segments = g("spoolship_tailer_segments", "Segments in the spool")
        self.inflight = g("spoolship_tailer_batches_in_flight", "PutRecords batches in flight")
        self.put_seconds = self._bind(self._family(Histogram, "spoolship_tailer_put_records_seconds",
                                                   "PutRecords latency, of every call (outcome ok or failed)",
                                                   ("outcome",), buckets=PUT_BUCKETS), ("outcome",))
        self.heartbeat = time.monotonic()
        self._calls: dict[int, float] = {}  # thread id -> when its call started
        self._calls_lock = threading.Lock()
        self.longest_call = g("spoolship_tailer_longest_call_seconds",
                              "Age of the oldest PutRecords call in flight (0: none); a stuck call shows here "
                              "and fails /healthz")
        self.longest_call.set_function(self.longest_call_seconds)

    def _family(self, kind, name: str, documentation: str, labels: tuple[str, ...], **extra):
        family = self._families.get(name)
        if family is None:
            names = (("route",) if self.route is not None else ()) + labels
            family = self._families[name] = kind(name, documentation, names, registry=self.registry, **extra)
        return family

    def _bind(self, family, labels: tuple[str, ...]):
        if self.route is None:
            return family
        return _Bound(family, self.route) if labels else family.labels(self.route)

    def _counter(self, name: str, documentation: str, labels: tuple[str, ...] = ()):
        return self._bind(self._family(Counter, name, documentation, labels), labels)

    def _gauge(self, name: str, documentation: str):
        return self._bind(self._family(Gauge, name, documentation, ()), ())

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def count_missing_keys(self, missing: int) -> None:
        """The key function's running count of lines without their key field, into the counter."""
        counted = self.keys_missing._value.get()
        if missing > counted:
            self.keys_missing.inc(missing - counted)

    def call_started(self) -> None:
        with self._calls_lock:
            self._calls[threading.get_ident()] = time.monotonic()

    def call_ended(self) -> None:
        with self._calls_lock:
            self._calls.pop(threading.get_ident(), None)

    def longest_call_seconds(self) -> float:
        with self._calls_lock:
            oldest = min(self._calls.values(), default=None)
        return 0.0 if oldest is None else time.monotonic() - oldest


class MetricsServer:
    """Serves /metrics and /healthz (200 while the loop has run within ``stale_seconds``)."""

    def __init__(self, metrics: TailerMetrics | list[TailerMetrics], host: str, port: int,
                 stale_seconds: float = 60.0) -> None:
        loops = metrics if isinstance(metrics, list) else [metrics]
        registry = loops[0].registry  # shared by every loop of a process

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.startswith("/metrics"):
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif self.path.startswith("/healthz"):
                    fresh = all(time.monotonic() - loop.heartbeat < stale_seconds for loop in loops)
                    moving = all(loop.longest_call_seconds() < stale_seconds for loop in loops)
                    state = b"ok" if fresh and moving else b"stalled" if not fresh else b"call stuck"
                    self._send(200 if state == b"ok" else 503, b'{"status":"%s"}' % state, "application/json")
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
