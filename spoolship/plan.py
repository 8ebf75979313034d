"""The resolved plan of a config file: routes, their spools and caps, and their destinations.

Built by :mod:`spoolship.config_file` (which validates), used three ways: the
receiver's :class:`receiver.routing.Routing` (``spoolship receive --config``),
one :class:`tailer.TailerConfig` per route (``spoolship tail --config``), and
the table ``spoolship check`` prints. docs/config.md describes every key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from receiver.bad_events import LARGEST_BAD_EVENT_EXTRA_BYTES, LARGEST_BAD_EVENT_FACTOR
from receiver.routing import BAD_ROUTE, BadRoute, Route, Routing

if TYPE_CHECKING:
    from tailer import TailerConfig

__all__ = ["BAD_ROUTE_DEFAULT_MAX_SPOOL_BYTES", "FIREHOSE_RECORD_BYTES", "LARGEST_BAD_EVENT_EXTRA_BYTES",
           "LARGEST_BAD_EVENT_FACTOR", "BadPlan", "DestinationPlan", "Plan", "RoutePlan", "largest_bad_event_bytes"]

# The bad route keeps what hostile clients send: its own small cap unless the file sets one, so that its
# destination down never fills the claim (routes review, finding 9). docs/config.md.
BAD_ROUTE_DEFAULT_MAX_SPOOL_BYTES = 64 * 1024**2

# tailer.firehose_packing.FIREHOSE_MAX_RECORD_BYTES, repeated so that `spoolship receive` never imports the
# tailer (and boto3); tests/unit/test_config_file.py keeps the two equal.
FIREHOSE_RECORD_BYTES = 1000 * 1024
FIREHOSE = "firehose"


def largest_bad_event_bytes(max_payload_bytes: int) -> int:
    """The longest line the receiver writes to the bad route (receiver/bad_events.py's bound)."""
    return LARGEST_BAD_EVENT_FACTOR * max_payload_bytes + LARGEST_BAD_EVENT_EXTRA_BYTES


@dataclass(frozen=True)
class DestinationPlan:
    name: str
    kind: str  # "kinesis" or "firehose"
    stream: str  # the stream, or the delivery stream
    settings: dict = field(default_factory=dict)  # TailerConfig keywords (region, aggregate, role_arn, ...)

    def describe(self) -> str:
        what = f"{self.kind} {self.stream}"
        details = [f"{k}={v}" for k, v in sorted(self.settings.items()) if k not in ("external_id",)]
        return what + (f" ({', '.join(details)})" if details else "")


@dataclass(frozen=True)
class RoutePlan:
    name: str
    destination: str
    spool_dir: Path
    max_spool_bytes: int | None = None  # None: the receiver's --max-spool-bytes
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class BadPlan(RoutePlan):
    bytes_per_second: int = 1024 * 1024
    events_per_second: int = 100
    max_payload_bytes: int = 64 * 1024


@dataclass(frozen=True)
class Plan:
    source: Path
    spool_dir: Path
    default: str
    routes: tuple[RoutePlan, ...]  # the routes of events, in the file's order
    destinations: dict[str, DestinationPlan]
    field: str | None = None
    bad: BadPlan | None = None
    warnings: tuple[str, ...] = ()

    @property
    def every_route(self) -> tuple[RoutePlan, ...]:
        return self.routes + ((self.bad,) if self.bad is not None else ())

    def route(self, name: str) -> RoutePlan:
        for route in self.every_route:
            if route.name == name:
                return route
        raise KeyError(name)

    def routing(self, default_max_spool_bytes: int, max_event_bytes: int | None = None) -> Routing:
        """The receiver's view. With ``max_event_bytes``, refuses a route whose destination cannot take
        an event that large in one record (a Firehose record is 1,000 KiB, at most)."""
        if max_event_bytes is not None:
            for route in self.routes:
                limit = self.record_limit(route.destination)
                if limit is not None and max_event_bytes + 1 > limit:
                    raise ValueError(f"--max-event-bytes {max_event_bytes}: route {route.name!r} goes to "
                                     f"{self.destinations[route.destination].describe()}, whose records hold "
                                     f"at most {limit} bytes (the event and its newline)")
        routes = tuple(Route(r.name, r.spool_dir, r.max_spool_bytes or default_max_spool_bytes, r.values)
                       for r in self.routes)
        bad = None
        if self.bad is not None:
            bad = BadRoute(self.bad.spool_dir, self.bad_max_spool_bytes(default_max_spool_bytes),
                           self.bad.bytes_per_second, self.bad.events_per_second, self.bad.max_payload_bytes)
        return Routing(routes, self.default, self.field, bad)

    def bad_max_spool_bytes(self, default_max_spool_bytes: int) -> int:
        assert self.bad is not None
        return self.bad.max_spool_bytes or min(BAD_ROUTE_DEFAULT_MAX_SPOOL_BYTES, default_max_spool_bytes)

    def caps(self, default_max_spool_bytes: int) -> dict[str, int]:
        """Every route's cap (the bad route's too), as the receiver applies them."""
        caps = {r.name: r.max_spool_bytes or default_max_spool_bytes for r in self.routes}
        if self.bad is not None:
            caps[self.bad.name] = self.bad_max_spool_bytes(default_max_spool_bytes)
        return caps

    def oversubscribed(self, default_max_spool_bytes: int, min_free_bytes: int, volume_bytes: int) -> str | None:
        """Why the routes' caps do not fit the spool volume, or None. Each route stops at its own cap, so
        one destination down fills only its own share, as long as every share fits: past the volume the
        disk's --min-free-bytes refuses every route at once (routes review, finding 9)."""
        caps = self.caps(default_max_spool_bytes)
        needed = sum(caps.values()) + min_free_bytes
        if needed <= volume_bytes:
            return None
        listed = ", ".join(f"{name} {cap}" for name, cap in caps.items())
        return (f"the route caps ({listed}; a route without max_spool_bytes gets --max-spool-bytes "
                f"{default_max_spool_bytes}) plus --min-free-bytes {min_free_bytes} make {needed} bytes, more "
                f"than the spool volume's {volume_bytes}: one destination down would fill the disk and stop "
                "every route; set each route's max_spool_bytes so that they fit (docs/config.md)")

    def record_limit(self, destination: str) -> int | None:
        plan = self.destinations[destination]
        if plan.kind != FIREHOSE:
            return None  # Kinesis: the receiver's own limit already fits a record
        return plan.settings.get("firehose_record_bytes", FIREHOSE_RECORD_BYTES)

    def tailer_config(self, route: RoutePlan, **common) -> TailerConfig:
        """The loop of one route: ``common`` (the command's flags) under the destination's own settings."""
        from tailer import TailerConfig

        destination = self.destinations[route.destination]
        settings = {**common, **destination.settings}
        if settings.get("archive_dir") is not None:  # each route's archive apart: each loop prunes its own
            settings["archive_dir"] = Path(settings["archive_dir"]) / route.name
        return TailerConfig(spool_dir=route.spool_dir, stream=destination.stream, destination=destination.kind,
                            route=route.name, **settings)

    def tailer_configs(self, only: tuple[str, ...] = (), role: dict | None = None, **common) -> list[TailerConfig]:
        """Every chosen route's loop. ``role``: the command line's AssumeRole flags (external_id,
        role_session_name, sts_endpoint_url), applied to every loop that assumes a role (its destination's
        role_arn, or --role-arn in ``common``), under the destination's own values; a ValueError names the
        route (a flag that cannot apply to one loop says which)."""
        chosen = [r for r in self.every_route if not only or r.name in only]
        configs = []
        for route in chosen:
            settings = dict(common)
            if role and (common.get("role_arn") or self.destinations[route.destination].settings.get("role_arn")):
                settings.update(role)
            try:
                config = self.tailer_config(route, **settings)
                self._check_archive_is_no_spool(route, config)
                configs.append(config)
            except ValueError as exc:
                raise ValueError(f"route {route.name} ({self.destinations[route.destination].describe()}): "
                                 f"{exc}") from None
        return configs

    def _check_archive_is_no_spool(self, route: RoutePlan, config: TailerConfig) -> None:
        """A route's archive must not be, nor lie in, another route's spool: pruning it would delete that
        route's unshipped segments (review 4: `--archive-dir <root>/arch` with a route spooling to
        `arch/events` lost 625 of 8,150 acknowledged events). Its own spool: TailerConfig decides."""
        from spooler.fsutil import where_is

        if config.archive_dir is None:
            return
        for other in self.every_route:
            if other.name != route.name and where_is(config.archive_dir, other.spool_dir) is not None:
                raise ValueError(f"its archive {config.archive_dir} is in route {other.name}'s spool "
                                 f"{other.spool_dir}: give --archive-dir a directory outside every spool")

    def assumes_a_role(self, only: tuple[str, ...] = ()) -> bool:
        return any(self.destinations[r.destination].settings.get("role_arn")
                   for r in self.every_route if not only or r.name in only)

    def to_dict(self) -> dict:
        def route_doc(route: RoutePlan) -> dict:
            doc = {"name": route.name, "destination": route.destination, "spool_dir": str(route.spool_dir),
                   "max_spool_bytes": route.max_spool_bytes, "values": list(route.values),
                   "default": route.name == self.default}
            if isinstance(route, BadPlan):
                doc.update(bytes_per_second=route.bytes_per_second, events_per_second=route.events_per_second,
                           max_payload_bytes=route.max_payload_bytes)
            return doc

        return {
            "source": str(self.source),
            "spool_dir": str(self.spool_dir),
            "field": self.field,
            "default": self.default,
            "routes": [route_doc(r) for r in self.every_route],
            "destinations": {name: {"type": d.kind, "stream": d.stream, **d.settings}
                             for name, d in self.destinations.items()},
            "warnings": list(self.warnings),
        }


def is_bad(route: RoutePlan) -> bool:
    return route.name == BAD_ROUTE
