"""Routes, the bad route and request context through a real waitress socket, checked in the spools."""

from __future__ import annotations

import base64
import gzip
import json
import random
import threading

import pytest
import requests

from receiver.config import ReceiverConfig
from receiver.routing import BadRoute, Route, Routing
from spooler import FsyncPolicy
from tests.helpers import LiveReceiver, spool_events, spool_lines

SCHEMA = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}, "n": {"type": "integer"}}}


@pytest.fixture
def make_receiver(tmp_path):
    made = []

    def make(*, caps=None, bad: dict | None = None, **settings) -> LiveReceiver:
        caps = caps or {}
        routes = (Route("events", tmp_path / "events", caps.get("events", 1 << 30)),
                  Route("clicks", tmp_path / "clicks", caps.get("clicks", 1 << 30), ("click", "scroll")),
                  Route("pages", tmp_path / "pages", caps.get("pages", 1 << 30), ("page",)))
        bad_route = BadRoute(tmp_path / "bad", caps.get("bad", 1 << 30), **(bad or {})) if bad is not None else None
        schema = tmp_path / "schema.json"
        schema.write_text(json.dumps(SCHEMA))
        config = ReceiverConfig(spool_dir=tmp_path, schema_file=schema, min_free_bytes=0, fsync=FsyncPolicy.NEVER,
                                routing=Routing(routes, "events", "type", bad_route), **settings)
        receiver = LiveReceiver(config)
        receiver.dirs = {name: tmp_path / name for name in ("events", "clicks", "pages", "bad")}
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()


def post(receiver, body, content_type="application/json", **headers):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(receiver.url + "/v1/events", data=data, headers={"Content-Type": content_type, **headers},
                         timeout=10)


def events_in(receiver, route):
    return spool_events(receiver.dirs[route]) if receiver.dirs[route].exists() else []


def test_events_go_to_their_routes_in_order_with_one_receive_time(make_receiver):
    receiver = make_receiver()
    batch = [{"type": "click", "n": 0}, {"type": "page", "n": 1}, {"type": "view", "n": 2}, {"type": "scroll", "n": 3},
             {"type": "page", "n": 4}]
    assert post(receiver, batch).status_code == 201
    assert [e["n"] for e in events_in(receiver, "clicks")] == [0, 3]
    assert [e["n"] for e in events_in(receiver, "pages")] == [1, 4]
    assert [e["n"] for e in events_in(receiver, "events")] == [2]
    stamps = {e["_received_at"] for route in ("events", "clicks", "pages") for e in events_in(receiver, route)}
    assert len(stamps) == 1, "one request, one receive time, whichever route"


def test_a_request_needing_a_full_route_is_refused_whole_and_the_other_routes_keep_taking_theirs(make_receiver):
    receiver = make_receiver(caps={"clicks": 4096})
    while post(receiver, {"type": "click", "pad": "x" * 500}).status_code == 201:
        pass
    before = {route: spool_lines(receiver.dirs[route]) for route in ("events", "pages")}
    refused = post(receiver, [{"type": "page", "n": 1}, {"type": "click", "pad": "x" * 500}, {"type": "view"}])
    assert refused.status_code == 503 and refused.json()["written"] == "none"
    assert int(refused.headers["Retry-After"]) >= 1
    assert {route: spool_lines(receiver.dirs[route]) for route in ("events", "pages")} == before, "nothing written"
    assert post(receiver, [{"type": "page", "n": 2}, {"type": "view", "n": 3}]).status_code == 201
    ready = requests.get(receiver.url + "/readyz", timeout=5)
    assert ready.status_code == 200, "one full route does not turn the receiver away from every route"


def test_when_no_route_takes_appends_the_receiver_is_unready(make_receiver):
    receiver = make_receiver(caps={"events": 4096, "clicks": 4096, "pages": 4096})
    for kind in ("view", "click", "page"):
        while post(receiver, {"type": kind, "pad": "x" * 500}).status_code == 201:
            pass
    ready = requests.get(receiver.url + "/readyz", timeout=5)
    assert ready.status_code == 503 and ready.json()["reason"] == "spool full"


def test_racing_requests_spanning_routes_are_each_written_whole_or_not_at_all(make_receiver):
    """Eight clients post batches spanning two routes while one route fills: every 201's events are in
    both spools, every "none" refusal's events in neither."""
    receiver = make_receiver(caps={"clicks": 64 * 1024})
    outcomes: list[tuple[str, list[str]]] = []
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        session = requests.Session()
        for n in range(60):
            ids = [f"c{seed}-{n}-{i}" for i in range(rng.randint(2, 6))]
            batch = [{"_id": i, "type": rng.choice(["click", "page", "view"]), "pad": "x" * rng.randint(0, 900)}
                     for i in ids]
            r = session.post(receiver.url + "/v1/events", data=json.dumps(batch),
                             headers={"Content-Type": "application/json"}, timeout=10)
            assert r.status_code in (201, 503), r.text
            with lock:
                outcomes.append(("201" if r.status_code == 201 else r.json()["written"], ids))

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stored = [e["_id"] for route in ("events", "clicks", "pages") for e in events_in(receiver, route)]
    assert len(stored) == len(set(stored))
    stored_set = set(stored)
    kinds = {kind for kind, _ in outcomes}
    assert kinds == {"201", "none"}, f"the cap was reached mid-run: {kinds}"
    for kind, ids in outcomes:
        if kind == "201":
            assert stored_set.issuperset(ids), ids
        else:
            assert stored_set.isdisjoint(ids), ids


def test_a_beacon_that_does_not_parse_is_kept_in_the_bad_route_and_still_answered_400(make_receiver):
    receiver = make_receiver(bad={}, client_ip_field="client_ip", user_agent_field="ua")
    answer = post(receiver, b'{"type": "click", "n": ', "text/plain;charset=UTF-8", **{"User-Agent": "beacon/1"})
    assert answer.status_code == 400 and answer.json()["error"] == "bad_request"
    [bad] = events_in(receiver, "bad")
    assert bad["error"] == "bad_request" and bad["payload"] == '{"type": "click", "n": '
    assert bad["content_type"] == "text/plain" and bad["payload_bytes"] == 23 and not bad["payload_truncated"]
    assert bad["_id"] and bad["_received_at"].endswith("Z")
    assert bad["client_ip"] == "127.0.0.1" and bad["ua"] == "beacon/1"
    for route in ("events", "clicks", "pages"):
        assert events_in(receiver, route) == [], "nothing of a rejected request goes to a route of events"


def test_a_beacon_failing_the_schema_is_kept_with_its_errors(make_receiver):
    receiver = make_receiver(bad={})
    body = b'{"type":"click","n":1}\n{"type":7}\n{"n":"x"}\n'
    answer = post(receiver, body, "text/plain")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid"
    [bad] = events_in(receiver, "bad")
    assert bad["error"] == "invalid" and [e["index"] for e in bad["errors"]] == [1, 2]
    assert bad["payload"] == body.decode(), "the whole request is kept: its valid events too"


@pytest.mark.parametrize(("invalid", "kept"), [("beacons", {"text/plain"}), ("keep", {"text/plain", "json"}),
                                               ("drop", set())])
def test_which_rejected_requests_are_kept(make_receiver, invalid, kept):
    receiver = make_receiver(bad={}, invalid=invalid)
    assert post(receiver, b"not json", "text/plain").status_code == 400
    assert post(receiver, b"not json", "application/json").status_code == 400
    assert post(receiver, b"[1]", "application/json").status_code == 400
    assert post(receiver, b"{}" * 10, "application/x-ndjson").status_code == 400
    assert post(receiver, {"type": "click"}, "application/json").status_code == 201
    types = {bad["content_type"] for bad in events_in(receiver, "bad")}
    assert types == {t if t == "text/plain" else "application/json" for t in kept} | (
        {"application/x-ndjson"} if invalid == "keep" else set())


def test_payloads_that_are_not_utf8_are_kept_as_base64_and_long_ones_cut(make_receiver):
    receiver = make_receiver(bad={"max_payload_bytes": 1000}, invalid="keep")
    binary = b"\xff\xfe" + bytes(range(256))
    assert post(receiver, binary, "text/plain").status_code == 400
    assert post(receiver, gzip.compress(b"{not json"), "application/json", **{"Content-Encoding": "gzip"}).status_code == 400
    long_body = b'{"type":"click","pad":"' + b"y" * 5000
    assert post(receiver, long_body, "text/plain").status_code == 400
    first, gzipped, cut = events_in(receiver, "bad")
    assert base64.b64decode(first["payload_base64"]) == binary and "payload" not in first
    assert gzip.decompress(base64.b64decode(gzipped["payload_base64"])) == b"{not json"
    assert gzipped["content_encoding"] == "gzip"
    assert cut["payload_truncated"] and cut["payload_bytes"] == len(long_body) and len(cut["payload"]) == 1000


def test_a_flood_of_bad_requests_is_kept_only_at_the_configured_rate_and_never_fills_the_disk(make_receiver):
    receiver = make_receiver(bad={"events_per_second": 5}, caps={"bad": 16 * 1024})
    session = requests.Session()
    for _ in range(200):
        r = session.post(receiver.url + "/v1/events", data=b"x" * 2000, headers={"Content-Type": "text/plain"},
                         timeout=10)
        assert r.status_code == 400
    kept = len(events_in(receiver, "bad"))
    assert 5 <= kept <= 5 + 5 * 30, kept  # a second's worth at once, then 5/s while the flood lasted
    total = sum(p.stat().st_size for p in receiver.dirs["bad"].rglob("*") if p.is_file())
    assert total <= 16 * 1024 + 8192, "the bad route's cap holds (within one append)"
    metrics = requests.get(receiver.url + "/metrics", timeout=5).text
    assert 'spoolship_receiver_bad_events_total{outcome="rate_limited"}' in metrics
    assert post(receiver, {"type": "click"}).status_code == 201, "good events are not held back"


def test_request_context_is_stamped_and_a_client_cannot_forge_it(make_receiver):
    receiver = make_receiver(client_ip_field="client_ip", user_agent_field="ua", trusted_proxies=("127.0.0.1",))
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.5", "User-Agent": "shop/2"}
    assert post(receiver, [{"type": "click", "client_ip": "1.1.1.1"}, {"type": "page"}], **headers).status_code == 201
    events = events_in(receiver, "clicks") + events_in(receiver, "pages")
    assert [(e["client_ip"], e["ua"]) for e in events] == [("203.0.113.5", "shop/2")] * 2
    untrusted = make_receiver(client_ip_field="client_ip")
    assert post(untrusted, {"type": "view"}, **headers).status_code == 201
    assert events_in(untrusted, "events")[0]["client_ip"] == "127.0.0.1", "X-Forwarded-For ignored"
