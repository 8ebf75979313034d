"""Delivering one batch: retry until Kinesis has every record of it.

- Records that fail one by one (ProvisionedThroughputExceeded, InternalFailure)
  are re-sent alone, with backoff.
- Whole-call failures (network, 5xx, throttling) are retried without limit,
  with exponential backoff and full jitter (capped), while the spool buffers.
- Permanent errors (no stream, access denied) are retried slowly and logged
  loudly; a request Kinesis rejects as malformed is split until the record at
  fault is alone, and that one record is dead-lettered.
- Only the drain timeout stops it (``Aborted``): the batch stays unacknowledged
  and its lines are shipped again after the restart.

Runs in the worker threads; everything it touches is thread-safe.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import Aborted, Permanent, RequestRejected, Retryable, ShipError, Throttled
from .metrics import TailerMetrics
from .packing import Batch
from .sink import Record, Sink

__all__ = ["Backoff", "Delivery"]

log = logging.getLogger(__name__)
PERMANENT_RETRY_SECONDS = 30.0
_THROTTLE_CODES = ("ProvisionedThroughputExceededException", "KMSThrottlingException")


@dataclass(frozen=True)
class Backoff:
    base_seconds: float = 0.1
    max_seconds: float = 10.0

    def delay(self, attempt: int, rng: random.Random = random._inst) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        return rng.uniform(0, min(self.max_seconds, self.base_seconds * (2 ** min(attempt, 30))))


class _RateLimitedLog:
    """One line per ``interval`` per key, with how many were suppressed; a 'recovered' line after."""

    def __init__(self, interval_seconds: float = 10.0) -> None:
        self._interval = interval_seconds
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, int]] = {}

    def error(self, key: str, event: str, **fields) -> None:
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._state.get(key, (float("-inf"), 0))
            if now - last < self._interval:
                self._state[key] = (last, suppressed + 1)
                return
            self._state[key] = (now, 0)
        log.error(event, extra={**fields, "suppressed": suppressed})

    def recovered(self, key: str, event: str) -> None:
        with self._lock:
            if self._state.pop(key, None) is None:
                return
        log.info(event, extra={"kind": key})


class Delivery:
    def __init__(
        self,
        sink: Sink,
        metrics: TailerMetrics,
        *,
        backoff: Backoff,
        abort: threading.Event,
        reject: Callable[[Batch, Record, str], None],
        raise_permanent: bool = False,
    ) -> None:
        """``raise_permanent``: raise Permanent errors instead of retrying slowly (for replay)."""
        self._raise_permanent = raise_permanent
        self._sink = sink
        self._metrics = metrics
        self._backoff = backoff
        self._abort = abort
        self._reject = reject
        self._errors = _RateLimitedLog()

    def deliver(self, batch: Batch) -> Batch:
        """Return the batch once every record is in Kinesis (or dead-lettered)."""
        self._send(batch, batch.records)
        return batch

    def _send(self, batch: Batch, records: list[Record]) -> None:
        attempt = 0
        while records:
            if self._abort.is_set():
                raise Aborted(f"gave up on {len(records)} records at the drain timeout")
            started = time.perf_counter()
            try:
                result = self._sink.put_records(records)
            except RequestRejected as exc:
                self._metrics.failed_calls.labels("rejected").inc()
                self._narrow_down(batch, records, exc)
                return
            except Permanent as exc:
                if self._raise_permanent:
                    raise
                self._on_call_failure(exc, attempt)
                attempt += 1
                continue
            except ShipError as exc:
                self._on_call_failure(exc, attempt)
                attempt += 1
                continue
            self._metrics.put_seconds.observe(time.perf_counter() - started)
            self._metrics.put_calls.inc()
            sent = len(records)
            self._count_record_failures(result.failed)
            records = [records[i] for i, _, _ in result.failed]  # only what failed is sent again
            self._metrics.records_shipped.inc(sent - len(records))
            if records:
                self._sleep(self._backoff.delay(attempt))
                attempt += 1
        self._errors.recovered("call", "kinesis calls recovered")

    def _on_call_failure(self, exc: ShipError, attempt: int) -> None:
        if isinstance(exc, Throttled):
            self._metrics.throttles.inc()
            reason = "throttled"
        elif isinstance(exc, Retryable):
            reason = "unavailable"
        else:
            reason = "permanent"
        self._metrics.failed_calls.labels(reason).inc()
        self._metrics.retries.inc()
        if isinstance(exc, Permanent):
            self._errors.error("call", "kinesis refuses the stream; retrying slowly",
                               error=str(exc), code=exc.code)
            self._sleep(PERMANENT_RETRY_SECONDS)
        else:
            self._errors.error("call", "kinesis call failed; retrying", error=str(exc), code=exc.code,
                               reason=reason)
            self._sleep(self._backoff.delay(attempt))

    def _count_record_failures(self, failed: list[tuple[int, str, str]]) -> None:
        if not failed:
            return
        throttled = sum(1 for _, code, _ in failed if code in _THROTTLE_CODES)
        self._metrics.throttles.inc(throttled)
        self._metrics.retries.inc(len(failed))
        self._metrics.record_failures.inc(len(failed))

    def _narrow_down(self, batch: Batch, records: list[Record], exc: RequestRejected) -> None:
        if len(records) == 1:
            log.error("record rejected by kinesis; dead-lettered", extra={"error": str(exc)})
            self._reject(batch, records[0], f"rejected by Kinesis: {exc}")
            return
        half = len(records) // 2
        self._send(batch, records[:half])
        self._send(batch, records[half:])

    def _sleep(self, seconds: float) -> None:
        if self._abort.wait(seconds):
            raise Aborted("drain timeout reached while waiting to retry")
