"""The exchange's request on the wire is botocore's, and real Kinesis-API servers take it.

- For the same signed headers and body (hypothesis over credentials, session tokens, targets, bodies and
  endpoint URLs), the bytes tailer/http_exchange.py writes and the bytes botocore's session writes carry the
  same request line, the same header set with the same values (User-Agent aside: ours names spoolship) and
  the same body — captured by a real socket server.
- moto and kinesalite accept PutRecords sent by the exchange and store exactly the records sent.
- The private botocore settings the exchange is configured from (tailer.aws_json.http_settings) are still
  where aws_json reads them, and mean what it thinks: a proxy in the environment (unless NO_PROXY names the
  endpoint) or a client certificate keeps the POST on botocore's session.
"""

from __future__ import annotations

import base64
import socket
import string

import boto3
import orjson
import pytest
from botocore.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tailer.aws_json import BotocoreExchange, JsonApi, _pooled_session, http_settings
from tailer.http_exchange import USER_AGENT, Exchange
from tailer.kinesis import KinesisSink
from tailer.sigv4 import Signer
from tests.servers.scripted_http import ScriptedServer

OK = orjson.dumps({"FailedRecordCount": 0, "Records": []})


def _parse(request: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head, _, body = request.partition(b"\r\n\r\n")
    line, *headers = head.split(b"\r\n")
    fields = {}
    for header in headers:
        name, _, value = header.partition(b":")
        assert name.lower() not in fields, f"{name!r} sent twice"
        fields[name.lower()] = value.strip()
    return line, fields, body


@pytest.fixture(scope="module")
def server():
    def script(_server, sock, _request) -> bool:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(OK), OK))
        return True
    server = ScriptedServer(script)
    yield server
    server.close()


_text = st.text(string.ascii_letters + string.digits + "+/=-_", min_size=1, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(access=_text, secret=_text, token=st.one_of(st.none(), st.text(string.printable.strip(), min_size=1,
                                                                        max_size=300)),
       target=st.sampled_from(["Kinesis_20131202.PutRecords", "Firehose_20150804.PutRecordBatch"]),
       body=st.binary(max_size=3000), path=st.sampled_from(["", "/", "/kinesis", "/a/b?x=1"]))
def test_the_exchange_writes_what_botocore_s_session_writes(server, access, secret, token, target, body, path):
    url = server.url + path
    headers = Signer(url, "kinesis", "us-east-1", "application/x-amz-json-1.1").headers(
        access, secret, token, target, body)
    client = boto3.client("kinesis", endpoint_url=url, region_name="us-east-1", aws_access_key_id="a",
                          aws_secret_access_key="b")
    ours = Exchange(url, connect_timeout=5, read_timeout=5)
    try:
        before = len(server.requests)
        assert ours.send((dict(headers), body)).status == 200
        assert BotocoreExchange(_pooled_session(client), url).send((dict(headers), body)).status == 200
        mine, theirs = (_parse(r) for r in server.requests[before:before + 2])
    finally:
        ours.close()
        client.close()
    assert mine[0] == theirs[0]  # POST <target> HTTP/1.1
    assert mine[1].pop(b"user-agent") == USER_AGENT.encode()
    theirs[1].pop(b"user-agent")
    assert mine[1] == theirs[1]
    assert mine[2] == theirs[2] == body


@pytest.mark.parametrize("backend", ["moto", "kinesalite"])
def test_real_servers_store_what_the_exchange_sends(backend, request):
    server = request.getfixturevalue(backend)
    stream = server.create_stream(shards=2)
    sink = KinesisSink(stream, endpoint_url=server.endpoint, region="us-east-1",
                       session=boto3.Session(aws_access_key_id="a", aws_secret_access_key="b"))
    assert isinstance(sink._api.http, Exchange)
    sent = [(bytes([i]) * (1 + i * 37) + b"\n", f"key-{i}-é", None) for i in range(40)]
    sent.append((b'{"quote":"\\"","nul":"\\u0000"}\n', "k", str(2**127)))
    try:
        for _ in range(3):  # kept-alive sockets: the second and third calls reuse them
            result = sink.put_records(sent)
            assert result.failed == [] and result.rejected == [] and all(result.placed)
    finally:
        sink.close()
    stored = [(base64.b64decode(r["Data"]) if isinstance(r["Data"], str) else r["Data"], r["PartitionKey"])
              for r in server.read_records(stream)]
    assert sorted(stored) == sorted([(data, key) for data, key, _ in sent] * 3)


def _client(**kwargs):
    """A client of a fresh session: boto3's default session keeps the environment it first read."""
    return boto3.Session(aws_access_key_id="a", aws_secret_access_key="b").client("kinesis", region_name="us-east-1",
                                                                                  **kwargs)


def test_the_botocore_settings_are_where_aws_json_reads_them(monkeypatch):
    url = "https://kinesis.us-east-1.amazonaws.com"
    for name in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy",
                 "http_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    client = _client()
    plain = http_settings(client, url)
    assert plain.proxy is None and plain.verify is True and plain.client_cert is None
    monkeypatch.setenv("AWS_CA_BUNDLE", "/some/bundle.pem")
    bundled = _client()
    assert http_settings(bundled, url).verify == "/some/bundle.pem"
    bundled.close()
    assert any(option[1] == socket.SO_KEEPALIVE for option in http_settings(
        _client(config=Config(tcp_keepalive=True)), url).socket_options)
    client.close()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")  # read when a client is made
    assert http_settings(_client(), url).proxy == "http://proxy.invalid:3128"
    monkeypatch.setenv("NO_PROXY", "kinesis.us-east-1.amazonaws.com")
    assert http_settings(_client(), url).proxy is None


@pytest.mark.parametrize(("env", "config", "botocore"), [
    ({}, {}, False),
    ({"HTTPS_PROXY": "http://proxy.invalid:3128", "HTTP_PROXY": "http://proxy.invalid:3128"}, {}, True),
    ({"HTTPS_PROXY": "http://proxy.invalid:3128", "HTTP_PROXY": "http://proxy.invalid:3128",
      "NO_PROXY": "127.0.0.1"}, {}, False),
    ({}, {"proxies": {"http": "http://proxy.invalid:3128", "https": "http://proxy.invalid:3128"}}, True),
    ({}, {"client_cert": "/nonexistent/cert.pem"}, True),
])
def test_a_proxy_or_a_client_certificate_keeps_the_post_on_botocore_s_session(monkeypatch, env, config, botocore):
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if config:  # the settings a user's botocore config would bring (tailer builds its own Config)
        monkeypatch.setattr(Config, "__init__", _config_with(config))
    api = JsonApi("kinesis", endpoint_url="http://127.0.0.1:9", region="us-east-1",
                  session=boto3.Session(aws_access_key_id="a", aws_secret_access_key="b"))
    try:
        assert isinstance(api.http, BotocoreExchange if botocore else Exchange)
    finally:
        api.close()


def _config_with(extra: dict):
    original = Config.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **{**kwargs, **extra})
    return init


@pytest.mark.parametrize("size", [0, 1, 200_000, 256 * 1024, 256 * 1024 + 1, 1_500_000])
def test_bodies_joined_to_their_head_and_sent_after_it_arrive_alike(server, size):
    """Up to JOIN_BODY_MAX_BYTES the head and body go out in one sendall, above it in two: the same bytes."""
    from tailer import http_exchange
    assert http_exchange.JOIN_BODY_MAX_BYTES == 256 * 1024  # the sizes above sit on both sides of it
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    headers = Signer(server.url, "kinesis", "us-east-1", "application/x-amz-json-1.1").headers(
        "a", "b", None, "Kinesis_20131202.PutRecords", body)
    ours = Exchange(server.url, connect_timeout=5, read_timeout=5)
    try:
        before = len(server.requests)
        for _ in range(2):  # a fresh socket, then the kept one
            assert ours.send((dict(headers), body)).status == 200
        sent = [_parse(r) for r in server.requests[before:before + 2]]
    finally:
        ours.close()
    for line, fields, got in sent:
        assert line == b"POST / HTTP/1.1"
        assert fields[b"content-length"] == str(size).encode()
        assert got == body
