"""Bodies are taken whole or not at all, within limits a worker can honour, through a real server.

Multi-member gzip gives every event or a 400 (never a 201 for part of a body);
a body whose parse would cost more than the worker's budget gets a 413 before
it is parsed; one that does not fit beside other large requests gets a 503 with
Retry-After, while small requests pass; the largest settings start-up allows
work end to end.
"""

from __future__ import annotations

import gzip
import json

import pytest
import requests

from receiver.config import MAX_EVENT_BYTES_LIMIT, MAX_SERIALIZABLE_DEPTH
from tests.helpers import spool_events, spool_lines


def post(server, body: bytes, content_type="application/json", **headers) -> requests.Response:
    return requests.post(server.url + "/v1/events", data=body, timeout=30,
                         headers={"Content-Type": content_type, **headers})


def member(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def test_every_gzip_member_is_taken(live, spool_dir):
    server = live()
    lines = [b'{"n":%d}\n' % i for i in range(5)]
    body = member(lines[0] + lines[1]) + member(b"") + member(lines[2]) + member(lines[3] + lines[4])
    r = post(server, body, "application/x-ndjson", **{"Content-Encoding": "gzip"})
    assert r.status_code == 201 and r.json() == {"accepted": 5}
    assert [e["n"] for e in spool_events(spool_dir)] == [0, 1, 2, 3, 4]
    # A JSON array split across members is one document too.
    r = post(server, member(b'[{"n":5},') + member(b'{"n":6}]'), **{"Content-Encoding": "gzip"})
    assert r.status_code == 201 and r.json() == {"accepted": 2}


@pytest.mark.parametrize("tail", [b"garbage", b"\x00" * 8, member(b'{"n":9}\n')[:-3], b'{"n":9}\n'])
def test_a_member_followed_by_anything_but_members_is_400_and_writes_nothing(live, spool_dir, tail):
    server = live()
    r = post(server, member(b'{"n":1}\n{"n":2}\n') + tail, "application/x-ndjson", **{"Content-Encoding": "gzip"})
    assert r.status_code == 400 and r.json()["error"] == "bad_request", r.text
    assert spool_lines(spool_dir) == []


def test_gzip_inside_gzip_is_not_json(live, spool_dir):
    server = live()
    r = post(server, member(member(b'{"n":1}')), **{"Content-Encoding": "gzip"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    assert spool_lines(spool_dir) == []


def test_a_bomb_is_refused_before_it_is_parsed_naming_the_limit(live, spool_dir):
    server = live()
    bomb = member(b"[" + b"{}," * 3_000_000 + b"{}]")  # 9 MB of empty objects in 9 KB
    r = post(server, bomb, **{"Content-Encoding": "gzip"})
    assert r.status_code == 413, r.text
    doc = r.json()
    assert "--max-parse-bytes" in doc["message"]
    assert doc["max_parse_bytes"] == server.config.max_parse_bytes < doc["needed_bytes"]
    assert server.state.budget.used_bytes == 0
    assert spool_lines(spool_dir) == []


def test_a_large_body_that_does_not_fit_beside_others_gets_503_and_small_ones_pass(live, spool_dir):
    server = live()
    budget = server.state.budget
    large = json.dumps([{"n": i, "pad": "x" * 200} for i in range(4000)]).encode()  # ~1 MB: needs ~10 MiB
    with budget.hold() as others:
        others.need(budget.capacity_bytes - 1024 * 1024)  # other large requests in flight
        busy = post(server, large)
        assert busy.status_code == 503, busy.text
        doc = busy.json()
        assert busy.headers["Retry-After"] == "1" and doc["written"] == "none", doc
        assert "large requests" in doc["message"] and not any(ch.isdigit() for ch in doc["message"]), \
            "the worker's memory figures go to the log, not to the client"
        assert spool_lines(spool_dir) == []
        small = post(server, json.dumps([{"n": i} for i in range(50)]).encode())
        assert small.status_code == 201
    assert post(server, large).status_code == 201
    assert len(spool_lines(spool_dir)) == 4050 and budget.used_bytes == 0


def test_the_deepest_allowed_event_is_stored_and_one_level_more_is_400(live, spool_dir):
    server = live(max_depth=MAX_SERIALIZABLE_DEPTH)
    deepest = b'{"a":' * (MAX_SERIALIZABLE_DEPTH - 1) + b"{}" + b"}" * (MAX_SERIALIZABLE_DEPTH - 1)
    assert post(server, deepest).status_code == 201
    r = post(server, b'{"a":' + deepest + b"}")
    assert r.status_code == 400 and "deeper" in r.json()["message"]
    assert len(spool_lines(spool_dir)) == 1


def test_the_largest_allowed_event_fits_and_one_byte_more_is_413(live, spool_dir):
    server = live(max_event_bytes=MAX_EVENT_BYTES_LIMIT, stamp=False)
    head = b'{"s":"'
    largest = head + b"x" * (MAX_EVENT_BYTES_LIMIT - len(head) - 2) + b'"}'
    assert len(largest) == MAX_EVENT_BYTES_LIMIT
    assert post(server, largest).status_code == 201
    r = post(server, largest[:-2] + b'x"}')
    assert r.status_code == 413 and r.json()["errors"] == [{"index": 0, "bytes": MAX_EVENT_BYTES_LIMIT + 1}]
    assert spool_lines(spool_dir) == [largest + b"\n"]


def test_ndjson_of_blank_lines_and_refused_lines_is_cheap_and_clear(live, spool_dir):
    server = live()
    r = post(server, b"\n" * 200_000, "application/x-ndjson")
    assert r.status_code == 400 and "empty" in r.json()["message"]
    r = post(server, b"[]\n" * 1_000_000, "application/x-ndjson")
    assert r.status_code in (400, 413)
    r = post(server, b"nope\n" * 500_000, "application/x-ndjson")
    assert r.status_code == 400 and len(r.json()["errors"]) == 100
    assert spool_lines(spool_dir) == []
