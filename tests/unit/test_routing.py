"""Which route an event goes to: every kind of value at the field, and every way a field can be missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.routing import BadRoute, Route, Routing, route_function


def routing(field="type", **values) -> Routing:
    routes = [Route("events", Path("/s/events"), 100)]
    routes += [Route(name, Path(f"/s/{name}"), 100, tuple(vals)) for name, vals in values.items()]
    return Routing(tuple(routes), "events", field)


ROUTES = routing(clicks=["click", "scroll"], numbers=["1", "true", "null", "2.5"])
NAMES = [r.name for r in ROUTES.routes]
CASES = [
    ({"type": "click"}, "clicks"),
    ({"type": "scroll", "x": 1}, "clicks"),
    ({"type": "Click"}, "events"),  # strings match exactly
    ({"type": "view"}, "events"),
    ({}, "events"),
    ({"type": None}, "numbers"),  # null by its JSON text
    ({"type": 1}, "numbers"),
    ({"type": True}, "numbers"),
    ({"type": 2.5}, "numbers"),
    ({"type": 1.0}, "events"),  # 1.0 is "1.0", not "1"
    ({"type": False}, "events"),
    ({"type": ["click"]}, "events"),
    ({"type": {"k": "click"}}, "events"),
    ({"type": ""}, "events"),
    ({"kind": "click"}, "events"),
]


@pytest.mark.parametrize(("event", "route"), CASES, ids=[repr(e) for e, _ in CASES])
def test_every_kind_of_value_at_the_field(event, route):
    assert NAMES[route_function(ROUTES)(event)] == route


@pytest.mark.parametrize(("event", "route"), [
    ({"ctx": {"page": {"kind": "click"}}}, "clicks"),
    ({"ctx": {"page": {"kind": "other"}}}, "events"),
    ({"ctx": {"page": "click"}}, "events"),
    ({"ctx": ["page"]}, "events"),
    ({"ctx": None}, "events"),
    ({"ctx.page.kind": "click"}, "events"),  # a dotted path, not a key with dots
    ({}, "events"),
])
def test_a_dotted_path(event, route):
    table = routing("ctx.page.kind", clicks=["click"])
    assert [r.name for r in table.routes][route_function(table)(event)] == route


def test_one_route_or_no_field_sends_everything_to_the_default():
    single = Routing((Route("events", Path("/s"), 1),), "events")
    assert route_function(single)({"type": "click"}) == 0


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Routing((Route("a", Path("/a"), 1), Route("a", Path("/b"), 1)), "a"), "unique"),
    (lambda: Routing((Route("a", Path("/a"), 1),), "b"), "not a route"),
    (lambda: Routing((Route("a", Path("/a"), 1, ("x",)),), "a"), "no routing field"),
    (lambda: routing(b=["x"], c=["x"]), "selects both"),
    (lambda: BadRoute(Path("/bad"), 1, max_payload_bytes=1 << 20), "max_payload_bytes"),
    (lambda: BadRoute(Path("/bad"), 1, events_per_second=0), "at least 1"),
])
def test_inconsistent_plans_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()
