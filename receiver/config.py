"""Receiver configuration: built once by the CLI, passed down frozen.

Settings the pipeline cannot honour are refused here, at start-up, with a
message naming the limit (every entry point builds a ReceiverConfig; the CLI
shows the ValueError as a usage error): a ``max_depth`` orjson cannot
serialize, a ``max_event_bytes`` that does not fit one Kinesis record, limits
that contradict each other, a parse or buffer budget no body of the allowed size fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from spooler import FsyncPolicy
from spooler.config import (
    DEFAULT_FSYNC_INTERVAL_SECONDS,
    DEFAULT_MAX_SPOOL_BYTES,
    DEFAULT_MIN_FREE_BYTES,
    DEFAULT_SEGMENT_AGE_SECONDS,
    DEFAULT_SEGMENT_BYTES,
)

from .body_buffers import DEFAULT_MAX_BUFFERED_BODY_BYTES
from .budget import DEFAULT_SMALL_BYTES
from .context import parse_networks
from .cost import ASCII_BYTES_PER_BYTE
from .routing import INVALID_POLICIES, Routing

__all__ = ["MAX_EVENT_BYTES_LIMIT", "MAX_SERIALIZABLE_DEPTH", "ReceiverConfig"]

DEFAULT_PORT = 8080
DEFAULT_THREADS = 8
DEFAULT_MAX_BODY_BYTES = 5 * 1024**2
# The cheapest body (one long string) needs 3.5 bytes of memory per byte: 8 MiB fits DEFAULT_MAX_PARSE_BYTES.
DEFAULT_MAX_INFLATED_BYTES = 8 * 1024**2
# Kinesis takes 1 MiB per record including the partition key; leave room for stamps and key.
DEFAULT_MAX_EVENT_BYTES = 1_000_000
DEFAULT_MAX_EVENTS = 10_000
DEFAULT_MAX_DEPTH = 32
# Memory one worker spends on request bodies in flight (receiver/budget.py, receiver/cost.py).
DEFAULT_MAX_PARSE_BYTES = 32 * 1024**2

# orjson.dumps raises "Recursion limit reached" at 255 levels of nesting (orjson.loads at 1025).
MAX_SERIALIZABLE_DEPTH = 254
# One Kinesis record holds 1 MiB including its partition key. A spool line is the event and its newline;
# a partition key is at most 256 UTF-16 code units (up to 1,024 UTF-8 bytes); with --aggregate the key is
# also in the record's key table, beside KPL framing (magic, protobuf headers, MD5: about 40 bytes). 4 KiB
# covers all of it with room to spare.
KINESIS_RECORD_BYTES = 1024 * 1024
RECORD_OVERHEAD_MARGIN_BYTES = 4096
MAX_EVENT_BYTES_LIMIT = KINESIS_RECORD_BYTES - RECORD_OVERHEAD_MARGIN_BYTES
# The least memory a body can need per byte: itself, and its parse if it is one long ASCII string.
CHEAPEST_BODY_BYTES_PER_BYTE = 1 + ASCII_BYTES_PER_BYTE
DEFAULT_SHUTDOWN_TIMEOUT_SECONDS = 20.0
# Above the keep-alive of the proxies in front (ingress-nginx upstream 60 s, AWS ALB 60 s): the
# proxy must be the one to close an idle connection, or it may send a request on a connection
# the receiver is closing, and answer 502 (it does not retry a POST it already sent).
DEFAULT_IDLE_TIMEOUT_SECONDS = 75.0
# Headers within this long of a request's first byte, and the body at >= 1 KiB/s after it (slowloris).
DEFAULT_READ_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class ReceiverConfig:
    spool_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    threads: int = DEFAULT_THREADS
    schema_file: Path | None = None
    api_key_file: Path | None = None
    cors_origins: tuple[str, ...] = ()
    stamp: bool = True
    id_field: str = "_id"
    received_at_field: str = "_received_at"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_events: int = DEFAULT_MAX_EVENTS
    max_depth: int = DEFAULT_MAX_DEPTH
    max_parse_bytes: int = DEFAULT_MAX_PARSE_BYTES
    # Request bodies one worker's connections hold while they arrive and wait (receiver/body_buffers.py).
    max_buffered_body_bytes: int = DEFAULT_MAX_BUFFERED_BODY_BYTES
    segment_bytes: int = DEFAULT_SEGMENT_BYTES
    segment_age_seconds: float = DEFAULT_SEGMENT_AGE_SECONDS
    max_spool_bytes: int = DEFAULT_MAX_SPOOL_BYTES
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    fsync: FsyncPolicy = FsyncPolicy.INTERVAL
    fsync_interval_seconds: float = DEFAULT_FSYNC_INTERVAL_SECONDS
    # After SIGTERM: keep serving (unready) this long so load balancers notice, then drain.
    shutdown_delay_seconds: float = 0.0
    shutdown_timeout_seconds: float = DEFAULT_SHUTDOWN_TIMEOUT_SECONDS
    idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS
    read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS
    # /healthz, /readyz and /metrics on a listener of their own (None: only on the main port).
    probe_port: int | None = None
    # Honour ?sync=1 / X-Spoolship-Sync (fsync before the 201); off: any client could force fsyncs.
    allow_sync: bool = False
    # Routes (from --config): a spool per route; None: one spool, spool_dir (receiver/routing.py).
    routing: Routing | None = None
    # Which rejected requests go to the bad route: beacons (text/plain), keep (all), drop (none).
    invalid: str = "beacons"
    # Request context stamped into events, opt-in (receiver/context.py): personal data.
    client_ip_field: str | None = None
    user_agent_field: str | None = None
    trusted_proxies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "spool_dir", Path(self.spool_dir))
        object.__setattr__(self, "fsync", FsyncPolicy(self.fsync))
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        if self.workers < 1 or self.threads < 1:
            raise ValueError("workers and threads must be at least 1")
        if self.idle_timeout_seconds <= 0 or self.read_timeout_seconds <= 0:
            raise ValueError("--idle-timeout and --read-timeout must be positive")
        if self.probe_port is not None and self.probe_port != 0 and self.probe_port == self.port:
            raise ValueError("--probe-port must differ from --port")
        if self.stamp and self.id_field == self.received_at_field:
            raise ValueError("id and received-at fields must differ")
        self._check_limits()
        self._check_routes_and_context()

    def _check_limits(self) -> None:
        for name in ("max_body_bytes", "max_inflated_bytes", "max_event_bytes", "max_events", "max_depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_depth > MAX_SERIALIZABLE_DEPTH:
            raise ValueError(f"--max-depth {self.max_depth} is deeper than events can be stored: orjson "
                             f"serializes at most {MAX_SERIALIZABLE_DEPTH} levels of nesting")
        if self.max_event_bytes > MAX_EVENT_BYTES_LIMIT:
            raise ValueError(f"--max-event-bytes {self.max_event_bytes} does not fit one Kinesis record "
                             f"({KINESIS_RECORD_BYTES} bytes including the newline, a partition key of up to "
                             f"1,024 bytes and KPL framing): at most {MAX_EVENT_BYTES_LIMIT}")
        smallest = self.smallest_event_bytes()
        if self.max_event_bytes < smallest:
            raise ValueError(f"--max-event-bytes {self.max_event_bytes} is below the smallest event "
                             f"({smallest} bytes: {{}} with its stamps): every event would be refused")
        if self.max_buffered_body_bytes < self.max_body_bytes:
            raise ValueError(f"--max-buffered-body-bytes {self.max_buffered_body_bytes} is below --max-body-bytes "
                             f"{self.max_body_bytes}: a body of the allowed size could never be taken")
        if self.max_inflated_bytes < self.max_body_bytes:
            raise ValueError(f"--max-inflated-bytes {self.max_inflated_bytes} is below --max-body-bytes "
                             f"{self.max_body_bytes}: every body is parsed after decoding, so a plain body "
                             "could never be as large as --max-body-bytes allows")
        if self.max_parse_bytes < DEFAULT_SMALL_BYTES:
            raise ValueError(f"--max-parse-bytes {self.max_parse_bytes} is below {DEFAULT_SMALL_BYTES}, what a "
                             "worker lets every small request use without counting")
        floor = int(CHEAPEST_BODY_BYTES_PER_BYTE * self.max_inflated_bytes)  # >= --max-body-bytes, checked above
        if self.max_parse_bytes < floor:
            raise ValueError(f"--max-parse-bytes {self.max_parse_bytes} cannot hold even the cheapest body of "
                             f"--max-inflated-bytes {self.max_inflated_bytes} (about {CHEAPEST_BODY_BYTES_PER_BYTE} "
                             f"bytes of memory per byte): raise it to at least {floor} or lower "
                             "--max-inflated-bytes")

    def _check_routes_and_context(self) -> None:
        object.__setattr__(self, "trusted_proxies", tuple(self.trusted_proxies))
        parse_networks(self.trusted_proxies)  # raises ValueError naming the bad entry
        if self.invalid not in INVALID_POLICIES:
            raise ValueError(f"--invalid {self.invalid!r}: one of {', '.join(INVALID_POLICIES)}")
        if self.invalid == "keep" and (self.routing is None or self.routing.bad is None):
            raise ValueError("--invalid keep needs a bad route to keep rejected requests in: [routes.bad] in "
                             "--config (docs/config.md)")
        stamps = {self.id_field, self.received_at_field} if self.stamp else set()
        context = [f for f in (self.client_ip_field, self.user_agent_field) if f is not None]
        if len(set(context)) != len(context) or stamps & set(context):
            raise ValueError("--client-ip-field and --user-agent-field must differ from each other and from the "
                             "id and received-at fields")
        if any(not field for field in context):
            raise ValueError("--client-ip-field and --user-agent-field must not be empty")
        if self.trusted_proxies and self.client_ip_field is None:
            raise ValueError("--trusted-proxies has no effect without --client-ip-field")

    def smallest_event_bytes(self) -> int:
        """The stored size of ``{}``: its stamps, or 2 bytes without them."""
        if not self.stamp:
            return 2
        return len(orjson.dumps({self.id_field: "0" * 26, self.received_at_field: "2026-11-26T07:45:42.123Z"}))
