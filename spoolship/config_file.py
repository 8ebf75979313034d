"""Reading a config file (TOML, the standard library's ``tomllib``) into a :class:`~spoolship.plan.Plan`.

For what flags express badly: several routes and their destinations. Everything
else stays a flag (or ``SPOOLSHIP_*``). Every problem is reported at once, each
naming its table and key (``routes.clicks: unknown key 'valuse'``), so a typo
never silently becomes a default. docs/config.md is the reference.

    spool_dir = "/spool"                     # route spools: <spool_dir>/<route>/ (--spool-dir wins)
    [routing]
    field = "type"                           # a dotted path into each event
    default = "events"                       # the route of anything no route lists
    [routes.events]
    destination = "main"
    [routes.clicks]
    destination = "clicks"
    values = ["click", "scroll"]
    max_spool_bytes = "512MiB"
    [routes.bad]                             # rejected requests (receive --invalid)
    destination = "rejected"
    [destinations.main]
    type = "kinesis"
    stream = "events"
    [destinations.clicks]
    type = "firehose"
    delivery_stream = "clicks"
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from spooler import parse_size

from .plan import (
    FIREHOSE,
    FIREHOSE_RECORD_BYTES,
    LARGEST_BAD_EVENT_EXTRA_BYTES,
    LARGEST_BAD_EVENT_FACTOR,
    BadPlan,
    DestinationPlan,
    Plan,
    RoutePlan,
    largest_bad_event_bytes,
)

__all__ = ["ConfigError", "load_plan", "parse_plan"]

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ROUTE_KEYS = {"destination", "values", "max_spool_bytes", "spool_dir"}
BAD_KEYS = (ROUTE_KEYS - {"values"}) | {"max_bytes_per_second", "max_events_per_second", "max_payload_bytes"}
# Destination keys → (TailerConfig keyword, kind of value).
COMMON_DESTINATION_KEYS = {
    "region": ("region", str), "endpoint_url": ("endpoint_url", str), "concurrency": ("concurrency", int),
    "max_batch_bytes": ("max_batch_bytes", "size"), "role_arn": ("role_arn", str),
    "external_id": ("external_id", str), "role_session_name": ("role_session_name", str),
    "sts_endpoint_url": ("sts_endpoint_url", str),
}
KINESIS_KEYS = {"aggregate": ("aggregate", bool), "aggregate_max_bytes": ("aggregate_max_bytes", "size"),
                "partition_key": ("partition_key", str)}
FIREHOSE_KEYS = {"record_bytes": ("firehose_record_bytes", "size")}
STREAM_KEY = {"kinesis": "stream", "firehose": "delivery_stream"}


class ConfigError(ValueError):
    """The config file cannot be used; ``problems`` lists every reason."""

    def __init__(self, source: Path, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems) if len(problems) == 1 else
                         f"{source}: {len(problems)} problems:\n  " + "\n  ".join(problems))


def load_plan(path: Path, spool_dir: Path | None = None, *, check_destinations: bool = True) -> Plan:
    """Read and validate ``path``; ``spool_dir`` (a flag given on the command line) wins over the file's.

    ``check_destinations``: also build each route's TailerConfig (stream names, limits); the receiver,
    which never imports the tailer, skips it."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(path, [f"cannot read it: {exc.strerror or exc}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    return parse_plan(doc, path, spool_dir, check_destinations=check_destinations)


class _Problems(list):
    def unknown(self, where: str, table: dict, allowed: set[str]) -> None:
        for key in sorted(set(table) - allowed):
            self.append(f"{where}: unknown key {key!r} (known: {', '.join(sorted(allowed))})")

    def table(self, where: str, value: object) -> dict:
        if isinstance(value, dict):
            return value
        self.append(f"{where}: must be a table")
        return {}

    def string(self, where: str, value: object) -> str | None:
        if isinstance(value, str) and value:
            return value
        self.append(f"{where}: must be a non-empty string")
        return None

    def size(self, where: str, value: object, *, minimum: int = 1) -> int | None:
        try:
            if isinstance(value, bool):
                raise ValueError("a size, not true/false")
            size = parse_size(value if isinstance(value, int) else str(value))
        except ValueError as exc:
            self.append(f"{where}: {exc}")
            return None
        if size < minimum:
            self.append(f"{where}: must be at least {minimum}")
            return None
        return size


def parse_plan(doc: dict, source: Path, spool_dir: Path | None = None, *, check_destinations: bool = True) -> Plan:
    problems = _Problems()
    problems.unknown("(top level)", doc, {"spool_dir", "routing", "routes", "destinations"})
    root = spool_dir
    if root is None and "spool_dir" in doc:
        text = problems.string("spool_dir", doc["spool_dir"])
        root = Path(text) if text else None
    if root is None:
        problems.append("spool_dir: not set here, and no --spool-dir given")
        root = Path(".")
    routing = problems.table("routing", doc.get("routing", {}))
    problems.unknown("routing", routing, {"field", "default"})
    destinations_table = problems.table("destinations", doc.get("destinations", {}))
    destinations = _destinations(problems, destinations_table)
    routes, bad = _routes(problems, problems.table("routes", doc.get("routes", {})), root)
    field = routing.get("field")
    if field is not None:
        if not isinstance(field, str) or not field or any(not part for part in field.split(".")):
            problems.append(f"routing.field: {field!r} is not a dotted path (type, context.kind)")
            field = None
    elif any(route.values for route in routes):
        problems.append("routing.field: routes list values, but no field says where to find them")
    default = routing.get("default")
    if default is None and len(routes) == 1:
        default = routes[0].name
    if default is None:
        problems.append("routing.default: required with several routes (the route of events no route lists)")
    elif default == "bad" or default not in {r.name for r in routes}:
        problems.append(f"routing.default: {default!r} is not a route of events")
    if not routes:
        problems.append("routes: at least one route of events is needed")
    for route in routes + ([bad] if bad else []):
        if route.destination in destinations_table:
            continue  # valid, or its own problems are reported already (not "is not a destination" too)
        if route.destination not in destinations:
            known = ", ".join(sorted(destinations)) or "none"
            problems.append(f"routes.{route.name}.destination: {route.destination!r} is not a destination "
                            f"(known: {known})")
    _check_values(problems, routes)
    _check_spools(problems, routes + ([bad] if bad else []))
    if bad is not None and bad.destination in destinations:
        _check_bad_record(problems, bad, destinations[bad.destination])
    warnings = tuple(f"destinations.{name}: no route uses it" for name in sorted(destinations)
                     if name not in {r.destination for r in routes + ([bad] if bad else [])})
    if problems:
        raise ConfigError(source, list(problems))
    plan = Plan(source=source, spool_dir=root, default=default, routes=tuple(routes), destinations=destinations,
                field=field, bad=bad, warnings=warnings)
    if check_destinations:
        _check_tailer_settings(plan, source)
    return plan


def _destinations(problems: _Problems, table: dict) -> dict[str, DestinationPlan]:
    out = {}
    for name, value in table.items():
        where = f"destinations.{name}"
        if not NAME.fullmatch(name):
            problems.append(f"{where}: a name is 1-64 of a-z, 0-9, '_' and '-', starting with a letter or digit")
        spec = problems.table(where, value)
        kind = spec.get("type")
        if kind not in STREAM_KEY:
            problems.append(f"{where}.type: must be \"kinesis\" or \"firehose\", not {kind!r}")
            continue
        keys = {**COMMON_DESTINATION_KEYS, **(KINESIS_KEYS if kind == "kinesis" else FIREHOSE_KEYS)}
        problems.unknown(where, spec, set(keys) | {"type", STREAM_KEY[kind]})
        stream = problems.string(f"{where}.{STREAM_KEY[kind]}", spec.get(STREAM_KEY[kind]))
        settings = {}
        for key, (keyword, kind_of_value) in keys.items():
            if key not in spec:
                continue
            value = spec[key]
            if kind_of_value == "size":
                value = problems.size(f"{where}.{key}", value)
            elif not isinstance(value, kind_of_value) or (kind_of_value is int and isinstance(value, bool)):
                problems.append(f"{where}.{key}: must be {kind_of_value.__name__}")
                continue
            if value is not None:
                settings[keyword] = value
        if stream:
            out[name] = DestinationPlan(name, kind, stream, settings)
    return out


def _routes(problems: _Problems, table: dict, root: Path) -> tuple[list[RoutePlan], BadPlan | None]:
    routes, bad = [], None
    for name, value in table.items():
        where = f"routes.{name}"
        if not NAME.fullmatch(name):
            problems.append(f"{where}: a name is 1-64 of a-z, 0-9, '_' and '-', starting with a letter or digit")
            continue
        spec = problems.table(where, value)
        problems.unknown(where, spec, BAD_KEYS if name == "bad" else ROUTE_KEYS)
        destination = problems.string(f"{where}.destination", spec.get("destination")) or ""
        # A route's own spool_dir is relative to the spool root, and must stay under it (routes review,
        # finding 2): elsewhere it is another volume in each container (/tmp is an emptyDir of its own),
        # so the tailer never sees what the receiver acknowledged there, and it dies with the pod.
        spool = root / spec["spool_dir"] if isinstance(spec.get("spool_dir"), str) and spec["spool_dir"] \
            else root / name
        if "spool_dir" in spec and not (isinstance(spec["spool_dir"], str) and spec["spool_dir"]):
            problems.append(f"{where}.spool_dir: must be a non-empty string")
        elif not _is_under(spool, root):
            problems.append(f"{where}.spool_dir: {spool} is outside the spool root {root}: a route spool must be "
                            "on the spool volume, at the same path in the receiver and the tailer (a relative "
                            "path is taken from the spool root)")
        cap = problems.size(f"{where}.max_spool_bytes", spec["max_spool_bytes"]) if "max_spool_bytes" in spec else None
        if name == "bad":
            rates = {}
            for key, minimum in (("max_bytes_per_second", 1024), ("max_events_per_second", 1),
                                 ("max_payload_bytes", 0)):
                if key in spec:
                    rates[key] = problems.size(f"{where}.{key}", spec[key], minimum=minimum)
            if (rates.get("max_payload_bytes") or 0) > 128 * 1024:
                problems.append(f"{where}.max_payload_bytes: at most 131072 (128 KiB), so a bad event fits a record")
            bad = BadPlan(name, destination, spool, cap,
                          bytes_per_second=rates.get("max_bytes_per_second") or 1024 * 1024,
                          events_per_second=rates.get("max_events_per_second") or 100,
                          max_payload_bytes=64 * 1024 if rates.get("max_payload_bytes") is None
                          else rates["max_payload_bytes"])
            continue
        values = spec.get("values", [])
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            problems.append(f"{where}.values: must be a list of non-empty strings (numbers as their JSON "
                            "text, e.g. \"1\", \"true\")")
            values = []
        routes.append(RoutePlan(name, destination, spool, cap, tuple(values)))
    return routes, bad


def _is_under(path: Path, root: Path) -> bool:
    path, root = path.resolve(), root.resolve()
    return path == root or root in path.parents


def _check_values(problems: _Problems, routes: list[RoutePlan]) -> None:
    owners: dict[str, str] = {}
    for route in routes:
        for value in route.values:
            if value in owners:
                problems.append(f"routes.{route.name}.values: {value!r} already selects route {owners[value]!r}")
            owners.setdefault(value, route.name)


def _check_spools(problems: _Problems, routes: list[RoutePlan]) -> None:
    """Route spools are separate directories, none inside another (a spool counts its subdirectories)."""
    resolved = [(route.name, route.spool_dir.resolve()) for route in routes]
    for i, (name, path) in enumerate(resolved):
        for other, other_path in resolved[i + 1:]:
            if path == other_path:
                problems.append(f"routes.{name} and routes.{other} share the spool {path}")
            elif path in other_path.parents or other_path in path.parents:
                problems.append(f"routes.{name} and routes.{other}: one spool is inside the other ({path}, "
                                f"{other_path}); a spool counts its subdirectories toward its cap")


def _check_bad_record(problems: _Problems, bad: BadPlan, destination: DestinationPlan) -> None:
    """The largest bad event (its payload escaped, with its errors) must fit one record of the bad
    route's destination, or it is dead-lettered instead of kept (routes review, finding 11)."""
    if destination.kind != FIREHOSE:
        return  # a Kinesis record (1 MiB) holds the largest bad event of any allowed max_payload_bytes
    limit = destination.settings.get("firehose_record_bytes", FIREHOSE_RECORD_BYTES)
    largest = largest_bad_event_bytes(bad.max_payload_bytes)
    if largest + 1 > limit:
        fitting = max(0, (limit - 1 - LARGEST_BAD_EVENT_EXTRA_BYTES) // LARGEST_BAD_EVENT_FACTOR)
        problems.append(f"routes.bad: its largest event ({largest} bytes, for max_payload_bytes = "
                        f"{bad.max_payload_bytes}) does not fit a {limit}-byte record of destinations."
                        f"{destination.name}; set routes.bad.max_payload_bytes to at most {fitting}, or raise "
                        f"destinations.{destination.name}.record_bytes")


def _check_tailer_settings(plan: Plan, source: Path) -> None:
    """What TailerConfig refuses (stream names, limits, Firehose with aggregation), per destination."""
    problems = []
    for name in plan.destinations:
        try:
            route = next(r for r in plan.every_route if r.destination == name)
        except StopIteration:
            continue
        try:
            plan.tailer_config(route)
        except ValueError as exc:
            problems.append(f"destinations.{name}: {exc}")
    if problems:
        raise ConfigError(source, problems)
