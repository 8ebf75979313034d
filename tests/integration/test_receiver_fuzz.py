"""Fuzzing the live receiver: whatever a client sends, no 5xx, and a 201 only for a body stored whole.

Three layers, each through a real waitress server:

- random bytes, content types, encodings and headers (``test_no_input_gets_a_5xx``);
- structured bodies: events of every JSON type rendered compact, escaped, pretty
  or spaced, as an object, an array or NDJSON, plain or gzip in one member or
  many (split anywhere, empty members too), gzip inside gzip, trailing garbage,
  truncation, and corruptions — invalid UTF-8 and lone surrogates (escaped or
  encoded) at every position — plus structured bombs: deep, wide, many keys,
  long strings, huge numbers, many lines, many members;
- the same bombs at the default limits against a `spoolship receive` process,
  whose peak RSS must stay under 80 MB.

Two invariants everywhere: never a 5xx; never a 201 unless every event of the
body is in the spool byte for byte, as tests/body_oracle.py (an independent
implementation of the API's rules) expects — and a refused request writes
nothing. A valid body small enough that no estimate can refuse it must get 201.
"""

from __future__ import annotations

import gzip
import json
import string
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from receiver.config import ReceiverConfig
from spooler import iter_chunks, list_segments
from tests.body_oracle import OracleLimits, Refused, expect, is_small
from tests.body_strategies import bomb_bodies, corrupted, encoded, gz, structured_requests
from tests.helpers import LiveReceiver, start_receiver

MB = 1_000_000


class SpoolTail:
    """The lines appended to a spool since the last call (segments are read from where they were left)."""

    def __init__(self, spool_dir: Path) -> None:
        self.spool_dir = spool_dir
        self._offsets: dict[str, int] = {}

    def new_lines(self) -> list[bytes]:
        lines = []
        for segment in list_segments(self.spool_dir, probe=False):
            offset = self._offsets.get(segment.segment_id, 0)
            for chunk in iter_chunks(segment.path, offset):
                lines.extend(chunk.data.splitlines(keepends=True))
                offset = chunk.end
            self._offsets[segment.segment_id] = offset
        return lines


def limits_of(config: ReceiverConfig) -> OracleLimits:
    return OracleLimits(config.max_body_bytes, config.max_inflated_bytes, config.max_events, config.max_depth,
                        config.max_event_bytes, config.stamp)


def check_answer(response: requests.Response, added: list[bytes], body: bytes, content_type: str,
                 encoding: str | None, limits: OracleLimits, *, must_take_small: bool) -> None:
    """The two invariants (and, where the headers are plain, that a small valid body is taken)."""
    assert response.status_code < 500, response.text[:500]
    assert response.headers["Content-Type"].startswith("application/json")
    if currently_in_test_context():
        event(f"answered {response.status_code} {response.json().get('error', '')}")
    if response.status_code == 201:
        try:
            expectation = expect(body, content_type, encoding, limits)
        except Refused as why:
            raise AssertionError(f"201 for a body that must be refused ({why}): {body[:200]!r}") from None
        assert response.json() == {"accepted": len(expectation.events)}
        expectation.check(added, stamp=limits.stamp)
        return
    assert added == [], "a refused request wrote nothing"
    assert response.status_code in (400, 403, 413, 415), response.status_code
    doc = response.json()
    assert isinstance(doc["error"], str) and isinstance(doc["message"], str)
    if must_take_small:
        try:
            expectation = expect(body, content_type, encoding, limits, small_only=True)
        except Refused:
            return
        assert expectation is None or not is_small(expectation), \
            f"small valid body refused: {response.text[:300]} {body[:200]!r}"


# -- layer 1: random input ----------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False,
                                                                                          allow_infinity=False) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                           max_leaves=20)
objects = st.dictionaries(st.text(max_size=10), json_values, max_size=6)


@st.composite
def bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["object", "array", "ndjson", "any-json", "bytes", "truncated"]))
    if kind == "object":
        body = json.dumps(draw(objects)).encode()
    elif kind == "array":
        body = json.dumps(draw(st.lists(objects, max_size=5))).encode()
    elif kind == "ndjson":
        body = b"\n".join(json.dumps(o).encode() for o in draw(st.lists(objects, min_size=1, max_size=5)))
    elif kind == "any-json":
        body = json.dumps(draw(json_values)).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=300))
    else:
        full = json.dumps(draw(st.lists(objects, min_size=1, max_size=3))).encode()
        body = full[: draw(st.integers(0, len(full)))]
    if draw(st.booleans()):
        body = gzip.compress(body)
        if draw(st.booleans()):
            body = body[: draw(st.integers(0, len(body)))]
    return body


header_text = st.text(alphabet=string.printable.replace("\r", "").replace("\n", "").replace("\x0b", "").replace("\x0c", ""),
                      max_size=40).map(str.strip)  # requests refuses leading/trailing blanks
content_types = st.sampled_from([
    "application/json", "application/x-ndjson", "text/plain", "text/plain;charset=UTF-8",
    "application/json; charset=latin-1", "application/xml", "multipart/form-data", "",
]) | header_text
encodings = st.sampled_from([None, "gzip", "identity", "br", "deflate", "GZIP"]) | header_text


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    spool = tmp_path_factory.mktemp("fuzz-spool")
    server = LiveReceiver(ReceiverConfig(spool_dir=spool, min_free_bytes=0, fsync="never", max_events=4,
                                         max_body_bytes=4096, max_inflated_bytes=8192, max_depth=4,
                                         cors_origins=("https://ok.example",)))
    session = requests.Session()
    yield server, session, SpoolTail(spool)
    session.close()
    server.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies(), content_type=content_types, encoding=encodings,
       origin=st.none() | st.sampled_from(["https://ok.example", "https://no.example"]) | header_text,
       sync=st.sampled_from([None, "1", "0", "yes"]))
def test_no_input_gets_a_5xx(fuzz_server, body, content_type, encoding, origin, sync):
    server, session, tail = fuzz_server
    headers = {"Content-Type": content_type}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    if origin is not None:
        headers["Origin"] = origin
    r = session.post(server.url + "/v1/events", data=body, headers=headers,
                     params={"sync": sync} if sync else None, timeout=10)
    check_answer(r, tail.new_lines(), body, content_type, encoding, limits_of(server.config), must_take_small=False)


# -- layer 2: structured bodies and bombs -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def structured_server(tmp_path_factory):
    spool = tmp_path_factory.mktemp("structured-spool")
    server = LiveReceiver(ReceiverConfig(spool_dir=spool, min_free_bytes=0, fsync="never", max_events=50,
                                         max_body_bytes=64 * 1024, max_inflated_bytes=256 * 1024, max_depth=8,
                                         max_event_bytes=16 * 1024, max_parse_bytes=1024 * 1024))
    session = requests.Session()
    yield server, session, SpoolTail(spool)
    session.close()
    server.close()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(request=structured_requests(scale=256 * 1024))
def test_structured_bodies_are_taken_whole_or_not_at_all(structured_server, request):
    server, session, tail = structured_server
    body, content_type, encoding = request
    headers = {"Content-Type": content_type}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    r = session.post(server.url + "/v1/events", data=body, headers=headers, timeout=30)
    check_answer(r, tail.new_lines(), body, content_type, encoding, limits_of(server.config), must_take_small=True)
    assert server.state.budget.used_bytes == 0, "every request gave its memory back"


def test_the_oracle_and_the_server_agree_on_examples_from_each_side(structured_server):
    """The structured fuzz can fail both ways: a body the oracle refuses, and one it must see taken."""
    server, session, tail = structured_server
    limits = limits_of(server.config)
    taken = [(gz(b'{"a":1}\n') + gz(b'{"b":"\xc3\xa9"}\n'), "application/x-ndjson", "gzip"),
             (b'[{"x":1.5e300,"y":18446744073709551615}]', "application/json", None)]
    refused = [(b'{"a":"\\ud800"}', "application/json", None), (b'{"a":"\xed\xa0\x80"}', "application/json", None),
               (gz(b'{"a":1}') + b"\x00", "application/json", "gzip"), (gz(gz(b'{"a":1}')), "application/json", "gzip")]
    for body, content_type, encoding in taken + refused:
        headers = {"Content-Type": content_type, **({"Content-Encoding": encoding} if encoding else {})}
        r = session.post(server.url + "/v1/events", data=body, headers=headers, timeout=30)
        check_answer(r, tail.new_lines(), body, content_type, encoding, limits, must_take_small=True)
        assert (r.status_code == 201) == ((body, content_type, encoding) in taken), r.text


# -- layer 3: bombs at the default limits against a real worker --------------------------------------------------------

DEFAULTS = ReceiverConfig(spool_dir=Path("unused"))


@pytest.fixture(scope="module")
def default_worker(tmp_path_factory):
    spool = tmp_path_factory.mktemp("bomb-spool")
    receiver, url = start_receiver(spool, "--fsync", "never")
    session = requests.Session()
    yield receiver, url, session, SpoolTail(spool)
    session.close()
    receiver.stop()


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(shape=bomb_bodies(scale=DEFAULTS.max_inflated_bytes), data=st.data())
def test_bombs_at_the_default_limits_keep_a_worker_under_80mb(default_worker, shape, data):
    receiver, url, session, tail = default_worker
    body, content_type = shape
    event(f"inflated body of {len(body) >> 20} MiB")
    body, encoding = data.draw(encoded(data.draw(corrupted(body))))
    assume(len(body) <= 2 * DEFAULTS.max_body_bytes)  # waitress refuses more before the app sees it
    headers = {"Content-Type": content_type, **({"Content-Encoding": encoding} if encoding else {})}
    Path(f"/proc/{receiver.process.pid}/clear_refs").write_text("5")  # this request's peak, not an earlier one's
    try:
        r = session.post(url + "/v1/events", data=body, headers=headers, timeout=60)
    except requests.ConnectionError:  # the server may close after answering a body it would not read
        r = None
    if r is not None:
        check_answer(r, tail.new_lines(), body, content_type, encoding, limits_of(DEFAULTS), must_take_small=True)
    assert peak_rss(receiver.process.pid) < 80 * MB
