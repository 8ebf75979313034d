"""Routes: which spool an event goes to, decided by the value of one of its fields.

The receiver parses every event anyway, so it is the one to route them
(DESIGN.md, "Destinations and routes"): each route has a spool directory of its
own — a spool like any other, format unchanged — with its own cap, and one
tailer loop ships each route's spool to that route's destination. A full route
(its destination down, its backlog at its cap) refuses only the requests that
have events for it.

An event's route is found by the value at ``field`` (a dotted path, ``type`` or
``context.page.kind``): a string is matched as it is, a number, ``true``,
``false`` or ``null`` by its JSON text (``1``, ``true``); an event without the
field, with an object or array there, or with a value no route lists goes to the
``default`` route. The ``bad`` route takes no events by value: it keeps the
requests the receiver rejects (:mod:`receiver.bad_events`).

The plan comes from the config file (spoolship/config_file.py); this module
only holds it and applies it. Thread-safe (immutable once built).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

__all__ = ["BAD_ROUTE", "INVALID_POLICIES", "BadRoute", "Route", "Routing", "route_function"]

BAD_ROUTE = "bad"
# --invalid: which rejected requests the bad route keeps (receiver/bad_events.py).
INVALID_POLICIES = ("beacons", "keep", "drop")
# A rejected request's payload kept in its bad record, at most (the rest is cut and said to be cut).
DEFAULT_BAD_PAYLOAD_BYTES = 64 * 1024
# The most a bad record may keep of a payload: escaped as JSON (up to 6 bytes per byte) it still fits a record.
MAX_BAD_PAYLOAD_BYTES = 128 * 1024
DEFAULT_BAD_BYTES_PER_SECOND = 1024 * 1024
DEFAULT_BAD_EVENTS_PER_SECOND = 100


@dataclass(frozen=True)
class Route:
    """A route's name, its spool, that spool's cap, and the field values that select it."""

    name: str
    spool_dir: Path
    max_spool_bytes: int
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "spool_dir", Path(self.spool_dir))
        object.__setattr__(self, "values", tuple(self.values))


@dataclass(frozen=True)
class BadRoute:
    """Where rejected requests are kept, and how fast (per worker) they may arrive there."""

    spool_dir: Path
    max_spool_bytes: int
    bytes_per_second: int = DEFAULT_BAD_BYTES_PER_SECOND
    events_per_second: int = DEFAULT_BAD_EVENTS_PER_SECOND
    max_payload_bytes: int = DEFAULT_BAD_PAYLOAD_BYTES

    def __post_init__(self) -> None:
        object.__setattr__(self, "spool_dir", Path(self.spool_dir))
        if not 0 <= self.max_payload_bytes <= MAX_BAD_PAYLOAD_BYTES:
            raise ValueError(f"the bad route's max_payload_bytes must be at most {MAX_BAD_PAYLOAD_BYTES}")
        if self.bytes_per_second < 1 or self.events_per_second < 1:
            raise ValueError("the bad route's rates must be at least 1 per second")


@dataclass(frozen=True)
class Routing:
    """The routes of one receiver. ``routes[0]`` is not special; ``default`` names the fallback."""

    routes: tuple[Route, ...]
    default: str
    field: str | None = None
    bad: BadRoute | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "routes", tuple(self.routes))
        names = [route.name for route in self.routes]
        if len(set(names)) != len(names):
            raise ValueError("route names must be unique")
        if self.default not in names:
            raise ValueError(f"the default route {self.default!r} is not a route")
        if self.field is None and any(route.values for route in self.routes):
            raise ValueError("routes select events by values, but no routing field is set")
        owners: dict[str, str] = {}
        for route in self.routes:
            for value in route.values:
                if value in owners:
                    raise ValueError(f"value {value!r} selects both {owners[value]!r} and {route.name!r}")
                owners[value] = route.name

    def index_of(self, name: str) -> int:
        return [route.name for route in self.routes].index(name)


_MISSING = object()


def route_function(routing: Routing) -> Callable[[dict], int]:
    """``event → index into routing.routes`` (the default route's for anything no route lists)."""
    default = routing.index_of(routing.default)
    table = {value: i for i, route in enumerate(routing.routes) for value in route.values}
    if routing.field is None or not table:
        return lambda _event: default
    path = routing.field.split(".")
    if len(path) == 1:
        key = path[0]

        def route_by_key(event: dict) -> int:
            value = event.get(key, _MISSING)
            if type(value) is str:
                return table.get(value, default)
            return _by_json(value, table, default)

        return route_by_key

    def route_by_path(event: dict) -> int:
        value: object = event
        for part in path:
            if not isinstance(value, dict):
                return default
            value = value.get(part, _MISSING)
        if type(value) is str:
            return table.get(value, default)
        return _by_json(value, table, default)

    return route_by_path


def _by_json(value: object, table: dict[str, int], default: int) -> int:
    """A scalar that is not a string matches by its JSON text; anything else goes to the default route."""
    if value is _MISSING or isinstance(value, dict | list):
        return default
    try:
        return table.get(orjson.dumps(value).decode(), default)
    except TypeError:
        return default
