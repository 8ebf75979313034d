"""Rejected requests kept in the ``bad`` route, so a beacon that never reads its 400 is not lost.

``navigator.sendBeacon`` never shows its sender the answer; Snowplow's collector
keeps every rejected payload in a "bad" stream for that reason. With a bad
route configured (``[routes.bad]`` in the config file), a request answered 400 —
its body cannot be parsed (``bad_request``) or an event fails the schema
(``invalid``) — is also written to the bad route as **one bad event**: the
error, its ``errors`` (by index), the receive time, an id, the content type and
encoding, the request context if configured, and the payload as the client sent
it (before Content-Encoding): as ``payload`` when it is UTF-8, else as
``payload_base64``; cut at ``max_payload_bytes`` (``payload_truncated``,
``payload_bytes`` says how long it was). The client's answer is the same 400
either way: keeping is a copy for the operator, never a change to the answer.

``--invalid`` says which requests: ``beacons`` (the default: ``text/plain``
bodies, what sendBeacon sends for a string — JSON clients read their 400 and can
fix and resend), ``keep`` (every content type) or ``drop`` (none).

Hostile traffic cannot fill the disk or the log: the bad route has its own cap
(past it a bad event is dropped and counted), and a token bucket per worker on
bad events per second and bytes per second drops the excess (counted in
``spoolship_receiver_bad_events_total{outcome}``). Memory: a request that may be
kept holds at most ``max_payload_bytes`` of its body longer than it otherwise
would, and that is counted in its parse-memory hold (receiver/app.py).
Thread-safe.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass

import orjson

from spooler import AppendFailed, SpoolFull, SpoolWriter
from spooler.token_bucket import TokenBucket

from .budget import Hold
from .errors import ApiError
from .routing import INVALID_POLICIES, BadRoute
from .stamping import IdGenerator, format_received_at
from .throttled_log import ThrottledLog

__all__ = ["INVALID_POLICIES", "BadEvents", "HoldWithKept", "Kept", "TokenBucket", "bad_event", "kept_kinds"]

log = logging.getLogger(__name__)
TEXT = "text/plain"
ALL_KINDS = frozenset({"application/json", "application/x-ndjson", "application/ndjson", "application/jsonlines",
                       TEXT})
# A bad event is at most its payload escaped as JSON (6 bytes per byte for control characters) plus its
# errors (100 of at most 300 characters each, escaped) and its other fields.
LARGEST_BAD_EVENT_FACTOR = 6
LARGEST_BAD_EVENT_EXTRA_BYTES = 256 * 1024


def kept_kinds(policy: str) -> frozenset[str]:
    """The media types whose rejected requests ``--invalid policy`` keeps."""
    if policy not in INVALID_POLICIES:
        raise ValueError(f"--invalid {policy!r}: one of {', '.join(INVALID_POLICIES)}")
    return {"beacons": frozenset({TEXT}), "keep": ALL_KINDS, "drop": frozenset()}[policy]


@dataclass(frozen=True)
class Kept:
    """What a request that may be rejected keeps of its body (at most the payload cap)."""

    payload: bytes
    total_bytes: int
    content_type: str
    content_encoding: str | None


def bad_event(error: ApiError, kept: Kept, *, event_id: str, received_at: str, id_field: str,
              received_at_field: str, context: dict | None = None) -> bytes:
    """One bad event: a compact JSON line holding what the client was answered (strings clipped as there)."""
    doc: dict = {id_field: event_id, received_at_field: received_at, **orjson.loads(error.body())}
    doc["content_type"] = kept.content_type
    if kept.content_encoding:
        doc["content_encoding"] = kept.content_encoding
    try:
        doc["payload"] = kept.payload.decode("utf-8")
    except UnicodeDecodeError:
        doc["payload_base64"] = base64.b64encode(kept.payload).decode("ascii")
    doc["payload_bytes"] = kept.total_bytes
    doc["payload_truncated"] = kept.total_bytes > len(kept.payload)
    if context:
        doc.update(context)
    return orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE)


class BadEvents:
    """The bad route of one worker: which requests to keep, and writing them within the rates and cap."""

    def __init__(self, route: BadRoute, writer: SpoolWriter, policy: str, *, id_field: str = "_id",
                 received_at_field: str = "_received_at", ids: IdGenerator | None = None, on_outcome=None) -> None:
        self.route = route
        self.writer = writer
        self.kinds = kept_kinds(policy)
        self._id_field = id_field
        self._received_at_field = received_at_field
        self._ids = ids or IdGenerator()
        self._events = TokenBucket(route.events_per_second)
        # One bad event of the largest kind can always pass once the bucket is full; the long-run rate holds.
        self._bytes = TokenBucket(route.bytes_per_second, capacity=LARGEST_BAD_EVENT_FACTOR * route.max_payload_bytes
                                  + LARGEST_BAD_EVENT_EXTRA_BYTES)
        self._on_outcome = on_outcome or (lambda _outcome: None)
        self._dropped_log = ThrottledLog(log, "bad events dropped")

    def keeps(self, kind: str) -> bool:
        return kind in self.kinds

    def keep(self, raw: bytes, kind: str, content_encoding: str | None) -> Kept:
        """What to keep of a body that may be rejected: all of it up to the cap (a copy only when cut)."""
        cap = self.route.max_payload_bytes
        payload = raw if len(raw) <= cap else raw[:cap]
        return Kept(payload, len(raw), kind, content_encoding)

    def record(self, error: ApiError, kept: Kept, context: dict | None = None) -> str:
        """Write one bad event for a rejected request; returns the outcome (never raises for the disk)."""
        if not self._events.take():
            return self._outcome("rate_limited")
        now_ms = time.time_ns() // 1_000_000
        line = bad_event(error, kept, event_id=self._ids.new_ids(1, now_ms)[0],
                         received_at=format_received_at(now_ms), id_field=self._id_field,
                         received_at_field=self._received_at_field, context=context)
        if not self._bytes.take(len(line)):
            return self._outcome("rate_limited")
        try:
            self.writer.append(line)
        except AppendFailed as exc:  # full, unwritable, uncertain: the client's 400 stands either way
            self._dropped_log.add(reason=str(exc))
            return self._outcome("full" if isinstance(exc, SpoolFull) else "failed")
        return self._outcome("kept")

    def _outcome(self, outcome: str) -> str:
        self._on_outcome(outcome)
        return outcome


class HoldWithKept:
    """A request's Hold that also counts ``extra`` bytes in each need: the kept payload of a request that
    may go to the bad route, alive while the body is decoded and parsed."""

    __slots__ = ("_hold", "_extra")

    def __init__(self, hold: Hold, extra: int) -> None:
        self._hold = hold
        self._extra = extra

    def need(self, total_bytes: int) -> None:
        self._hold.need(total_bytes + self._extra)

    def estimated(self) -> None:
        self._hold.estimated()
