"""Security properties of the receiver, through a real waitress socket (docs/http-api.md, "Security").

What one client can and cannot do: no request answers 500 or writes a
traceback to the log, whatever its route, method and Origin.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import time

import pytest
import requests

from receiver.config import ReceiverConfig
from receiver.server import bind_socket, make_server
from tests.helpers import spool_lines
from tests.rawhttp import exchange, read_response

OK_ORIGIN = "https://ok.example"
ROUTES = ["/v1/events", "/v1/events/", "/v1/events?sync=1", "/healthz", "/readyz", "/metrics", "/openapi.json",
          "/nope", "/", "/%ff", "//v1/events", "/v1/events/../healthz", "/v1/events?x=%ff%00"]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "FOO"]
ORIGINS = [None, OK_ORIGIN, "https://evil.example", "null", "https://ok.example.evil.example", "x" * 300]


class ErrorLog(logging.Handler):
    """Every record at ERROR or above, from any logger, while installed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def error_log():
    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)




def request(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


# -- item 1: refused origins on error paths --------------------------------------------------


@pytest.mark.parametrize("keys", [False, True], ids=["open", "with-keys"])
def test_no_route_method_or_origin_gets_a_500_or_a_logged_traceback(live, tmp_path, error_log, keys):
    settings = {"cors_origins": (OK_ORIGIN,)}
    if keys:
        key_file = tmp_path / "keys"
        key_file.write_text("key-one-0123456789ab\n")
        settings["api_key_file"] = key_file
    server = live(**settings)
    failures = []
    for path in ROUTES:
        for method in METHODS:
            for origin in ORIGINS:
                headers = {"Content-Type": "application/json"}
                if origin is not None:
                    headers["Origin"] = origin
                body = b'{"n":1}' if method in ("POST", "PUT", "PATCH") else None
                status, got, payload = request(server.port, method, path, headers, body)
                case = f"{method} {path} Origin={origin!r:.40}"
                if status >= 500:
                    failures.append(f"{case}: {status} {payload[:120]!r}")
                    continue
                if payload and not path.startswith("/metrics") or status >= 400 and method != "HEAD":
                    if not got.get("content-type", "").startswith("application/json"):
                        failures.append(f"{case}: {status} is not JSON: {got.get('content-type')}")
                    elif status >= 400:
                        doc = json.loads(payload)
                        if not {"error", "message"} <= set(doc):
                            failures.append(f"{case}: error body {doc}")
                if origin != OK_ORIGIN and "access-control-allow-origin" in got:
                    failures.append(f"{case}: CORS headers for a refused origin")
                if got.get("x-content-type-options") != "nosniff":
                    failures.append(f"{case}: {status} without X-Content-Type-Options: nosniff")
    assert not failures, "\n".join(failures[:20]) + f"\n({len(failures)} failures)"
    assert not error_log.records, [r.getMessage() for r in error_log.records[:5]]


def _crashing_app(environ, start_response):
    raise RuntimeError("a bug past every handler")


def test_waitress_own_500_is_labelled_internal_error(spool_dir):
    config = ReceiverConfig(spool_dir=spool_dir)
    sock = bind_socket("127.0.0.1", 0, reuse_port=False)
    server = make_server(_crashing_app, sock, config)
    import threading

    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        status, headers, body = request(sock.getsockname()[1], "GET", "/", {})
    finally:
        server.pull_trigger_thunk(lambda: [d.close() for d in list(server._map.values())])
        thread.join(10)
        server.task_dispatcher.shutdown()
    assert status == 500
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == "internal_error"


# -- item 7: HTTP framing -------------------------------------------------------------------

EVENT = b'{"n":1}'


def _post_head(*headers: str, version: str = "1.1") -> bytes:
    lines = [f"POST /v1/events HTTP/{version}", "Host: receiver", "Content-Type: application/json", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


FRAMING_REFUSED = {
    "content-length-and-chunked": _post_head("Content-Length: 7", "Transfer-Encoding: chunked")
    + b"7\r\n" + EVENT + b"\r\n0\r\n\r\n",
    "chunked-and-content-length": _post_head("Transfer-Encoding: chunked", "Content-Length: 7")
    + b"7\r\n" + EVENT + b"\r\n0\r\n\r\n",
    "smuggled-request-behind-chunked": _post_head("Content-Length: 30", "Transfer-Encoding: chunked")
    + b"0\r\n\r\nPOST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n"
    + EVENT,
    "http-1.0-content-length-and-te": _post_head("Content-Length: 7", "Transfer-Encoding: chunked", version="1.0")
    + EVENT,
    "folded-header-space": _post_head("X-Note: one", " two", "Content-Length: 7") + EVENT,
    "folded-header-tab": _post_head("Content-Length: 7", "X-Note: one", "\ttwo") + EVENT,
    "folded-content-type": b"POST /v1/events HTTP/1.1\r\nHost: r\r\nContent-Type:\r\n application/json\r\n"
    b"Content-Length: 7\r\n\r\n" + EVENT,
    # waitress drops an empty coding list before anyone sees it, and goes by Content-Length (review finding 8).
    "empty-te-and-content-length": _post_head("Transfer-Encoding: ", "Content-Length: 7") + EVENT,
    "comma-te-and-content-length": _post_head("Transfer-Encoding: ,", "Content-Length: 7") + EVENT,
    "empty-te-alone": _post_head("Transfer-Encoding:") + b"7\r\n" + EVENT + b"\r\n0\r\n\r\n",
    "chunked-twice-in-one-header": _post_head("Transfer-Encoding: chunked, chunked") + b"7\r\n" + EVENT
    + b"\r\n0\r\n\r\n",
    "te-header-twice": _post_head("Transfer-Encoding: chunked", "Transfer-Encoding: chunked") + b"7\r\n" + EVENT
    + b"\r\n0\r\n\r\n",
    # RFC 9112 section 6.1: Transfer-Encoding in HTTP/1.0 means faulty framing. waitress ignored it and read the
    # chunked body as a second request on the kept-alive connection (one request, two answers).
    "http-1.0-keep-alive-chunked": _post_head("Connection: keep-alive", "Transfer-Encoding: chunked", version="1.0")
    + b"7\r\n" + EVENT + b"\r\n0\r\n\r\n",
    "http-1.0-te-alone": _post_head("Transfer-Encoding: chunked", version="1.0") + b"0\r\n\r\n",
}


@pytest.mark.parametrize("raw", list(FRAMING_REFUSED.values()), ids=list(FRAMING_REFUSED))
def test_ambiguous_framing_is_refused_and_the_connection_closed(live, spool_dir, raw):
    server = live()
    response = exchange(server.port, raw)
    assert response.status == 400, response
    assert json.loads(response.body)["error"] == "bad_request"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.closed, "RFC 9112 section 6.1: close the connection after such a request"
    assert spool_lines(spool_dir) == []


CHUNK_LINES = {  # chunk-size line -> taken? (RFC 9112 section 7.1: size, extensions, CRLF; no bare LF)
    b"7": True, b"07": True, b"7;x": True, b"7;x=y": True, b'7;x="q r"': True, b"7;a=1;b": True,
    b"7\n": False, b"7;x\n": False, b"7;x=y\n": False, b"7\n7": False, b" 7": False, b"7 ": False,
    b"7;": False, b"7;\nx": False, b"-7": False, b"0x7": False, b"": False,
}


@pytest.mark.parametrize("line", list(CHUNK_LINES), ids=[repr(line) for line in CHUNK_LINES])
def test_a_chunk_size_line_is_exactly_size_extensions_crlf(live, spool_dir, line):
    """waitress's checks ended in ``$``, which matches before a final LF: ``7;x\\n`` was a size."""
    server = live()
    response = exchange(server.port, _post_head("Transfer-Encoding: chunked") + line + b"\r\n" + EVENT
                        + b"\r\n0\r\n\r\n")
    if CHUNK_LINES[line]:
        assert response.status == 201, response
        assert len(spool_lines(spool_dir)) == 1
    else:
        assert response.status == 400, response
        assert spool_lines(spool_dir) == []


@pytest.mark.parametrize("version", ["1.2", "2.0", "0.9", None])
@pytest.mark.parametrize("framing", ["Content-Length: 7", "Transfer-Encoding: chunked"])
def test_http_versions_other_than_1_0_and_1_1_are_refused_and_closed(live, spool_dir, version, framing):
    """waitress applied neither version's framing rules to them (keep-alive, TE ignored): no guessing."""
    line = "POST /v1/events" + (f" HTTP/{version}" if version else "")
    body = EVENT if framing.startswith("Content") else b"7\r\n" + EVENT + b"\r\n0\r\n\r\n"
    raw = (line + "\r\nHost: r\r\nContent-Type: application/json\r\n" + framing + "\r\n\r\n").encode() + body
    server = live()
    response = exchange(server.port, raw)
    assert response.status in (400, 505), response
    assert json.loads(response.body)["error"] in ("bad_request", "http_version_not_supported")
    assert response.closed
    assert spool_lines(spool_dir) == []
    assert exchange(server.port, _post_head("Content-Length: 7") + EVENT).status == 201


@pytest.mark.parametrize("te", ["chunked", "CHUNKED", "\tchunked", "chunked "])
def test_one_chunked_coding_in_http_1_1_is_accepted(live, spool_dir, te):
    server = live()
    response = exchange(server.port, _post_head(f"Transfer-Encoding: {te}") + b"7\r\n" + EVENT + b"\r\n0\r\n\r\n")
    assert response.status == 201, response
    assert not response.closed
    assert len(spool_lines(spool_dir)) == 1


def test_plain_chunked_and_plain_content_length_still_work_on_one_connection(live, spool_dir):
    server = live()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(_post_head("Transfer-Encoding: chunked") + b"7\r\n" + EVENT + b"\r\n0\r\n\r\n")
        first = read_response(sock)
        sock.sendall(_post_head("Content-Length: 7") + EVENT)
        second = read_response(sock)
    assert (first.status, second.status) == (201, 201)
    assert not first.closed
    assert len(spool_lines(spool_dir)) == 2


# -- item 5: bodies refused before they are read ------------------------------------------------


def _headers_only(port: int, head: bytes, timeout: float = 10.0):
    """Send only a request's headers; the answer must come without a byte of the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        return read_response(sock, timeout=timeout)


@pytest.mark.parametrize("expect", [False, True], ids=["plain", "expect-100-continue"])
def test_content_length_over_the_limit_gets_413_before_the_body_is_sent(live, expect):
    server = live(max_body_bytes=10_000)
    extra = ("Expect: 100-continue",) if expect else ()
    response = _headers_only(server.port, _post_head("Content-Length: 10001", *extra))
    assert response.status == 413, response
    body = json.loads(response.body)
    assert body == {"error": "too_large", "message": "request body exceeds 10000 bytes"}
    assert response.closed


def test_a_body_of_exactly_the_limit_is_accepted(live, spool_dir):
    server = live(max_body_bytes=10_000)
    body = b'{"pad":"' + b"x" * (10_000 - 11) + b'"}'
    assert len(body) == 10_000 - 1
    body += b" "
    response = exchange(server.port, _post_head(f"Content-Length: {len(body)}") + body)
    assert response.status == 201, response
    assert len(spool_lines(spool_dir)) == 1


@pytest.fixture
def keyed(live, tmp_path):
    key_file = tmp_path / "keys"
    key_file.write_text("right-key-0123456789ab\n")
    return live(api_key_file=key_file, max_body_bytes=4 * 1024 * 1024)


@pytest.mark.parametrize("framing", ["Content-Length: 1048576", "Transfer-Encoding: chunked"])
@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_a_large_unauthenticated_body_gets_401_before_it_is_sent(keyed, framing, key):
    extra = (f"X-Api-Key: {key}",) if key else ()
    response = _headers_only(keyed.port, _post_head(framing, *extra, "Expect: 100-continue"))
    assert response.status == 401, response
    assert json.loads(response.body)["error"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.closed


def test_a_large_authenticated_body_is_read_and_accepted(keyed, spool_dir):
    body = b"[" + b",".join([b'{"pad":"' + b"y" * 1000 + b'"}'] * 1000) + b"]"
    response = exchange(keyed.port, _post_head(f"Content-Length: {len(body)}", "X-Api-Key: right-key-0123456789ab") + body)
    assert response.status == 201, response
    assert len(spool_lines(spool_dir)) == 1000


def test_a_small_unauthenticated_body_gets_the_apps_401_and_keeps_the_connection(keyed):
    with socket.create_connection(("127.0.0.1", keyed.port), timeout=10) as sock:
        sock.sendall(_post_head("Content-Length: 7") + EVENT)
        refused = read_response(sock)
        sock.sendall(_post_head("Content-Length: 7", "Authorization: Bearer right-key-0123456789ab") + EVENT)
        accepted = read_response(sock)
    assert (refused.status, accepted.status) == (401, 201)
    assert not refused.closed


# -- item 3: sync requests only where the operator allows them -----------------------------------


def _post(server, *, sync: str, headers: dict | None = None):
    params = {"sync": "1"} if sync == "query" else None
    headers = {"Content-Type": "application/json", **(headers or {})}
    if sync == "header":
        headers["X-Spoolship-Sync"] = "1"
    return requests.post(server.url + "/v1/events", data=EVENT, params=params, headers=headers, timeout=10)


@pytest.mark.parametrize(("settings", "answer"), [
    ({"fsync": "interval"}, "ignored"),
    ({"fsync": "interval", "allow_sync": True}, "fsynced"),
    ({"fsync": "never", "allow_sync": True}, "ignored"),
    ({"fsync": "always"}, "fsynced"),
], ids=["default-off", "allowed", "allowed-but-fsync-never", "fsync-always"])
@pytest.mark.parametrize("sync", ["query", "header"])
def test_sync_is_honoured_only_when_allowed_and_the_answer_says_which(live, settings, answer, sync):
    server = live(**{"fsync_interval_seconds": 3600, **settings})
    before = server.state.writer.stats().fsyncs
    r = _post(server, sync=sync)
    assert r.status_code == 201
    assert r.headers["X-Spoolship-Sync"] == answer
    fsynced = server.state.writer.stats().fsyncs - before
    assert (fsynced >= 1) == (answer == "fsynced"), fsynced
    plain = requests.post(server.url + "/v1/events", data=EVENT, headers={"Content-Type": "application/json"},
                          timeout=10)
    assert "X-Spoolship-Sync" not in plain.headers


def test_with_keys_only_an_authenticated_client_can_force_an_fsync(live, tmp_path):
    key_file = tmp_path / "keys"
    key_file.write_text("key-one-0123456789ab\n")
    server = live(api_key_file=key_file, allow_sync=True, fsync="interval", fsync_interval_seconds=3600)
    before = server.state.writer.stats().fsyncs
    assert _post(server, sync="query").status_code == 401
    assert server.state.writer.stats().fsyncs == before
    r = _post(server, sync="query", headers={"X-Api-Key": "key-one-0123456789ab"})
    assert r.status_code == 201 and r.headers["X-Spoolship-Sync"] == "fsynced"
    assert server.state.writer.stats().fsyncs > before


def test_a_browser_may_read_the_sync_and_retry_after_headers(live):
    server = live(cors_origins=(OK_ORIGIN,), allow_sync=True, fsync="interval")
    r = _post(server, sync="header", headers={"Origin": OK_ORIGIN})
    exposed = {h.strip() for h in r.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"X-Spoolship-Sync", "Retry-After"} <= exposed


# -- item 8: what error bodies repeat and reveal ---------------------------------------------------

LONG = "v" * 5000


def _longest_run(text: str, char: str = "v") -> int:
    return max((len(run) for run in re.findall(f"{char}+", text)), default=0)


SCHEMAS = {
    "closed": {"type": "object", "additionalProperties": False},  # quotes the extra keys in the message
    "typed-values": {"type": "object", "additionalProperties": {"type": "string"}},  # the key in the path
}


@pytest.mark.parametrize("where", ["origin", "content-type", "charset", "content-encoding", "schema-key",
                                   "schema-path"])
def test_error_bodies_repeat_at_most_64_characters_of_a_client_value(live, tmp_path, where):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMAS["typed-values" if where == "schema-path" else "closed"]))
    server = live(cors_origins=(OK_ORIGIN,), schema_file=schema)
    headers = {"Content-Type": "application/json"}
    body = EVENT
    if where == "origin":
        headers["Origin"] = "https://" + LONG
    elif where == "content-type":
        headers["Content-Type"] = "application/" + LONG
    elif where == "charset":
        headers["Content-Type"] = "application/json; charset=" + LONG
    elif where == "content-encoding":
        headers["Content-Encoding"] = LONG
    else:  # the review's body: 100 events, each with a long key of its own
        body = json.dumps([{LONG + str(i): 1} for i in range(100)]).encode()
    r = requests.post(server.url + "/v1/events", data=body, headers=headers, timeout=10)
    assert 400 <= r.status_code < 500
    assert _longest_run(r.text) <= 64, r.text[:400]
    if where.startswith("schema"):
        errors = r.json()["errors"]
        assert len(errors) == 100
        assert all(_longest_run(e["message"]) <= 64 and _longest_run(e["path"]) <= 64 for e in errors)
        assert len(r.content) < 40_000, len(r.content)  # before: 27,500 of the client's characters in 34 KB
    else:
        assert len(r.content) < 1000


@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1\r\nHost: r\r\nX-Bad: " + b"v" * 5000 + b"\rmore\r\n\r\n",  # bare CR in a header line
    b"v" * 5000 + b"post / HTTP/1.1\r\nHost: r\r\n\r\n",  # a lower-case method
], ids=["bare-cr", "lowercase-method"])
def test_waitress_errors_repeat_at_most_64_characters_of_the_request(live, raw):
    server = live()
    response = exchange(server.port, raw)
    assert response.status == 400
    assert _longest_run(response.body.decode()) <= 64, response.body[:200]


def _fill_the_spool(server) -> requests.Response:
    for _ in range(200):
        r = requests.post(server.url + "/v1/events", json=[{"pad": "x" * 60}], timeout=10)
        if r.status_code != 201:
            return r
    raise AssertionError("the cap never kicked in")


def test_a_503_reveals_no_spool_bytes_cap_or_free_disk_but_the_log_and_probe_port_do(live, caplog):
    server = live(max_spool_bytes=2_000, segment_bytes=500, probe_port=0)
    with caplog.at_level(logging.WARNING, logger="receiver.app"):
        refused = _fill_the_spool(server)
    assert refused.status_code == 503
    body = refused.json()
    assert body == {"error": "unavailable", "message": "the spool is full", "retry_after_seconds": 1.0,
                    "written": "none"}, body
    assert int(refused.headers["Retry-After"]) >= 1
    logged = [r for r in caplog.records if r.getMessage() == "appends refused"]
    assert logged and "cap is 2000" in logged[0].reason
    public = requests.get(server.url + "/readyz", timeout=5)
    assert public.status_code == 503 and public.json() == {"status": "unready", "reason": "spool full"}
    private = requests.get(server.probe_url + "/readyz", timeout=5).json()
    assert private["reason"].startswith("spool full: ") and "2000" in private["reason"]


# -- item 4: the probe listener ----------------------------------------------------------------------


def test_the_probe_port_serves_probes_and_metrics_and_metrics_leave_the_main_port(live):
    server = live(probe_port=0)
    assert requests.post(server.url + "/v1/events", data=EVENT, headers={"Content-Type": "application/json"},
                         timeout=5).status_code == 201
    for path in ("/healthz", "/readyz"):
        assert requests.get(server.url + path, timeout=5).status_code == 200
        assert requests.get(server.probe_url + path, timeout=5).status_code == 200
    metrics = requests.get(server.probe_url + "/metrics", timeout=5)
    assert "spoolship_receiver_events_accepted_total 1.0" in metrics.text
    assert metrics.headers["X-Content-Type-Options"] == "nosniff"
    assert requests.get(server.url + "/metrics", timeout=5).status_code == 404
    assert requests.post(server.probe_url + "/v1/events", data=EVENT, timeout=5).status_code in (404, 405)


def test_probe_healthz_fails_when_the_serving_loop_stalls(live):
    server = live(probe_port=0)
    server.state.loop_seen_at = time.monotonic() - 1000
    stalled = requests.get(server.probe_url + "/healthz", timeout=5)
    assert stalled.status_code == 503 and stalled.json()["status"] == "stalled"
    server.state.loop_seen_at = time.monotonic()
    assert requests.get(server.probe_url + "/healthz", timeout=5).status_code == 200


def test_key_file_trouble_shows_in_the_metrics(live, tmp_path, monkeypatch):
    from receiver import auth

    monkeypatch.setattr(auth, "RELOAD_CHECK_SECONDS", 0.0)
    key_file = tmp_path / "keys"
    key_file.write_text("key-one-0123456789ab\nkey-two-0123456789ab\n")
    server = live(api_key_file=key_file, probe_port=0)
    text = requests.get(server.probe_url + "/metrics", timeout=5).text
    assert "spoolship_receiver_api_keys 2.0" in text and "spoolship_receiver_api_key_file_ok 1.0" in text
    key_file.unlink()
    text = requests.get(server.probe_url + "/metrics", timeout=5).text
    assert "spoolship_receiver_api_keys 2.0" in text and "spoolship_receiver_api_key_file_ok 0.0" in text
