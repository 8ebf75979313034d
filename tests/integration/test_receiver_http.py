"""The receiver's HTTP contract, through a real waitress server and a real HTTP client.

After every request the spool is checked: accepted events are there once, as
compact JSON plus stamps; refused requests leave nothing.
"""

from __future__ import annotations

import gzip
import json
import re
import time

import pytest
import requests

from spooler import SegmentState, list_segments
from tests.helpers import spool_events, spool_lines

SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"type": "string", "enum": ["page_view", "click"]}, "n": {"type": "integer"}},
}




def post(server, body, content_type="application/json", **kwargs):
    headers = {"Content-Type": content_type} if content_type else {}
    headers.update(kwargs.pop("headers", {}))
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(server.url + "/v1/events", data=data, headers=headers, timeout=10, **kwargs)


def assert_error(response, status, code=None):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) >= {"error", "message"}
    if code:
        assert body["error"] == code
    return body


# -- success paths -------------------------------------------------------------------


def test_single_event_is_spooled_once_compact_and_stamped(live, spool_dir):
    server = live()
    r = post(server, b'{ "type" : "page_view",  "n": 1 }')
    assert r.status_code == 201 and r.json() == {"accepted": 1}
    [line] = spool_lines(spool_dir)
    event = json.loads(line)
    assert re.fullmatch(r"[0-9A-V]{26}", event["_id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["_received_at"])
    expected = b'{"type":"page_view","n":1,"_id":"%s","_received_at":"%s"}\n' % (
        event["_id"].encode(), event["_received_at"].encode())
    assert line == expected


def test_array_batch_is_one_write_in_order_with_sortable_ids(live, spool_dir):
    server = live()
    r = post(server, [{"n": i} for i in range(50)])
    assert r.json() == {"accepted": 50}
    events = spool_events(spool_dir)
    assert [e["n"] for e in events] == list(range(50))
    ids = [e["_id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 50


def test_ndjson_body(live, spool_dir):
    server = live()
    r = post(server, b'{"n":1}\n\n{"n":2}\r\n{"n":3}', content_type="application/x-ndjson")
    assert r.json() == {"accepted": 3}
    assert [e["n"] for e in spool_events(spool_dir)] == [1, 2, 3]


def test_send_beacon_text_plain_json_and_ndjson(live, spool_dir):
    server = live()
    assert post(server, b'{"n":1}', content_type="text/plain;charset=UTF-8").status_code == 201
    assert post(server, b'{"n":2}\n{"n":3}\n', content_type="text/plain").status_code == 201
    assert [e["n"] for e in spool_events(spool_dir)] == [1, 2, 3]


def test_gzip_body(live, spool_dir):
    server = live()
    r = post(server, gzip.compress(b'[{"n":1},{"n":2}]'), headers={"Content-Encoding": "gzip"})
    assert r.json() == {"accepted": 2}


def test_client_id_is_kept_and_no_stamp_keeps_bytes(live, spool_dir, tmp_path):
    server = live()
    post(server, {"_id": "client-1", "n": 1})
    assert spool_events(spool_dir)[0]["_id"] == "client-1"
    other = tmp_path / "other"
    plain = live(spool_dir=other, stamp=False)
    post(plain, b'{"b": [1, 2.5, "\\u00e9"], "a": null}')
    assert spool_lines(other) == ['{"b":[1,2.5,"é"],"a":null}\n'.encode()]


def test_sync_request_is_fsynced_before_the_answer(live):
    server = live(allow_sync=True, fsync="interval", fsync_interval_seconds=3600)
    before = server.state.writer.stats().fsyncs
    assert post(server, {"n": 1}, params={"sync": "1"}).status_code == 201
    assert post(server, {"n": 2}, headers={"X-Spoolship-Sync": "1"}).status_code == 201
    assert server.state.writer.stats().fsyncs >= before + 2


# -- client errors: clear JSON, nothing written -----------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'{"n":', "application/json", 400, "bad_request"),
        (b"", "application/json", 400, "bad_request"),
        (b"[]", "application/json", 400, "bad_request"),
        (b'[{"n":1}, 2, "x"]', "application/json", 400, "bad_request"),
        (b'"just a string"', "application/json", 400, "bad_request"),
        (b'{"n":"\xff\xfe"}', "application/json", 400, "bad_request"),
        (b'{"n":1}\n{oops}\n', "application/x-ndjson", 400, "bad_request"),
        (b'{"n":NaN}', "application/json", 400, "bad_request"),
        (b"n=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'{"n":1}', None, 415, "unsupported_media_type"),
        (b'{"n":1}', "application/json; charset=latin-1", 415, "unsupported_media_type"),
        (b"[" * 40 + b"]" * 40, "application/json", 400, "bad_request"),
    ],
)
def test_bad_bodies_get_a_clear_4xx_and_leave_nothing(live, spool_dir, body, content_type, status, code):
    server = live()
    assert_error(post(server, body, content_type=content_type), status, code)
    assert spool_lines(spool_dir) == []


def test_too_deep_event_is_refused(live, spool_dir):
    server = live(max_depth=5)
    deep = {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}
    body = assert_error(post(server, [{"ok": 1}, deep]), 400)
    assert body["errors"] == [{"index": 1}]
    assert spool_lines(spool_dir) == []


def test_schema_failures_list_every_index_and_write_nothing(live, spool_dir, tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    server = live(schema_file=schema)
    batch = [{"type": "click"}, {"n": 1}, {"type": "page_view", "n": "x"}, {"type": "nope"}]
    body = assert_error(post(server, batch), 400, "invalid")
    assert [e["index"] for e in body["errors"]] == [1, 2, 3]
    assert all(e["message"] for e in body["errors"])
    assert body["errors"][1]["path"] == "$.n"
    assert spool_lines(spool_dir) == []
    assert post(server, [{"type": "click"}, {"type": "page_view", "n": 2}]).status_code == 201
    assert len(spool_lines(spool_dir)) == 2


def test_size_limits(live, spool_dir):
    server = live(max_body_bytes=10_000, max_events=3, max_event_bytes=200, max_inflated_bytes=50_000)
    assert_error(post(server, [{"pad": "x" * 20_000}]), 413, "too_large")
    assert_error(post(server, [{"n": i} for i in range(4)]), 413)
    body = assert_error(post(server, [{"n": 1}, {"pad": "x" * 300}]), 413)
    assert body["errors"][0]["index"] == 1
    bomb = gzip.compress(b"[" + b'{"pad":"' + b"x" * 1_000_000 + b'"}]')
    assert len(bomb) < 10_000
    assert_error(post(server, bomb, headers={"Content-Encoding": "gzip"}), 413)
    assert spool_lines(spool_dir) == []


def test_bad_encodings(live, spool_dir):
    server = live()
    assert_error(post(server, b"not gzip", headers={"Content-Encoding": "gzip"}), 400)
    assert_error(post(server, gzip.compress(b'{"n":1}')[:-6], headers={"Content-Encoding": "gzip"}), 400)
    assert_error(post(server, b'{"n":1}', headers={"Content-Encoding": "br"}), 415)
    assert spool_lines(spool_dir) == []


def test_api_keys(live, spool_dir, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# rotated monthly\nsecret-one-0123456789ab\nsecret-two-0123456789ab\n")
    server = live(api_key_file=keys)
    assert_error(post(server, {"n": 0}), 401, "unauthorized")
    assert_error(post(server, {"n": 0}, headers={"Authorization": "Bearer wrong"}), 401)
    assert_error(post(server, {"n": 0}, headers={"X-Api-Key": "secret-on"}), 401)
    assert post(server, {"n": 1}, headers={"Authorization": "Bearer secret-two-0123456789ab"}).status_code == 201
    assert post(server, {"n": 2}, headers={"X-Api-Key": "secret-one-0123456789ab"}).status_code == 201
    assert [e["n"] for e in spool_events(spool_dir)] == [1, 2]


def test_cors_preflight_and_origins(live, spool_dir):
    server = live(cors_origins=("https://shop.example",))
    ok = requests.options(server.url + "/v1/events", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"}, timeout=5)
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in ok.headers["Access-Control-Allow-Headers"]
    refused = requests.options(server.url + "/v1/events", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, timeout=5)
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers
    beacon = post(server, b'{"n":1}', content_type="text/plain", headers={"Origin": "https://shop.example"})
    assert beacon.status_code == 201
    assert beacon.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert_error(post(server, b'{"n":2}', content_type="text/plain", headers={"Origin": "https://evil.example"}),
                 403, "origin_refused")
    assert [e["n"] for e in spool_events(spool_dir)] == [1]


def test_cors_wildcard(live):
    server = live(cors_origins=("*",))
    r = post(server, {"n": 1}, headers={"Origin": "https://anyone.example"})
    assert r.status_code == 201 and r.headers["Access-Control-Allow-Origin"] == "*"


# -- back-pressure ---------------------------------------------------------------------


def test_spool_full_gives_503_and_unready_then_recovers_without_restart(live, spool_dir):
    server = live(max_spool_bytes=2_000, segment_bytes=500)
    accepted = 0
    while True:
        r = post(server, [{"pad": "x" * 60}])
        if r.status_code != 201:
            break
        accepted += 1
        assert accepted < 100, "the cap never kicked in"
    body = assert_error(r, 503, "unavailable")
    assert int(r.headers["Retry-After"]) >= 1 and body["retry_after_seconds"] > 0
    ready = requests.get(server.url + "/readyz", timeout=5)
    assert ready.status_code == 503 and "full" in ready.json()["reason"]
    assert len(spool_lines(spool_dir)) == accepted
    # The tailer ships and deletes sealed segments; the receiver recovers on its own.
    for segment in list_segments(spool_dir):
        if segment.state is SegmentState.SEALED:
            segment.path.unlink()
    time.sleep(0.1)
    assert post(server, [{"pad": "y"}]).status_code == 201
    assert requests.get(server.url + "/readyz", timeout=5).status_code == 200


# -- operational endpoints ----------------------------------------------------------------


def test_health_metrics_openapi_and_json_404(live):
    server = live()
    post(server, [{"n": 1}, {"n": 2}])
    post(server, b"{", content_type="application/json")
    assert requests.get(server.url + "/healthz", timeout=5).json() == {"status": "ok"}
    assert requests.get(server.url + "/readyz", timeout=5).json() == {"status": "ready"}
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert "spoolship_receiver_events_accepted_total 2.0" in metrics
    assert 'spoolship_receiver_requests_rejected_total{reason="bad_request"} 1.0' in metrics
    assert "spoolship_receiver_request_seconds_bucket" in metrics
    spec = requests.get(server.url + "/openapi.json", timeout=5).json()
    assert spec["openapi"].startswith("3.") and "/v1/events" in spec["paths"]
    assert set(spec["paths"]["/v1/events"]["post"]["responses"]) >= {"201", "400", "413", "415", "503"}
    assert_error(requests.get(server.url + "/nope", timeout=5), 404, "not_found")
    assert_error(requests.put(server.url + "/v1/events", timeout=5), 405)
