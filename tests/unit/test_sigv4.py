"""tailer.sigv4 against botocore's own signer: the same headers, byte for byte, over the whole space.

The reference is what JsonApi.post sent before: ``AWSRequest`` + ``SigV4Auth.add_auth``
+ ``prepare()``, with botocore's clock pinned to the same instant.
"""

from __future__ import annotations

import datetime

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tailer.sigv4 import Signer, canonical_host

JSON_11 = "application/x-amz-json-1.1"


def botocore_headers(url, service, region, access, secret, token, target, body, now, monkeypatch):
    instant = datetime.datetime.fromtimestamp(now, datetime.UTC).replace(tzinfo=None)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: instant)
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": JSON_11, "X-Amz-Target": target})
    SigV4Auth(Credentials(access, secret, token), service, region).add_auth(request)
    return dict(request.prepare().headers.items())


hosts = st.one_of(
    st.sampled_from(["kinesis.us-east-1.amazonaws.com", "firehose.eu-west-3.amazonaws.com", "localhost",
                     "127.0.0.1", "[::1]", "[fe80::1]", "Kinesis.Example.COM", "vpce-1.kinesis.aws"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z0-9-]{1,10}){0,3}", fullmatch=True),
)
urls = st.builds(
    lambda scheme, userinfo, host, port, path, query: f"{scheme}://{userinfo}{host}{port}{path}{query}",
    st.sampled_from(["http", "https"]),
    st.sampled_from(["", "user@", "user:pw@"]),
    hosts,
    st.sampled_from(["", ":80", ":443", ":4567", ":8443", ":1"]),
    st.sampled_from(["", "/", "/kinesis", "/a/b/", "/a//b", "/a/./b/../c", "/~x/y z", "/%41"]),
    st.sampled_from(["", "?b=2&a=1", "?x=", "?a=1&a=0"]),
)
text = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(url=urls, service=st.sampled_from(["kinesis", "firehose"]),
       region=st.sampled_from(["us-east-1", "eu-west-3", "ap-southeast-2", "cn-north-1", "local"]),
       access=text, secret=text, token=st.one_of(st.none(), st.just(""), text, st.just("a  b  c ")),
       target=st.sampled_from(["Kinesis_20131202.PutRecords", "Firehose_20150804.PutRecordBatch", " x  y "]),
       body=st.binary(min_size=1, max_size=2000),
       # Whole milliseconds: a float a hair below a second (1.9999995) is second 2 for datetime, which
       # rounds to microseconds, and second 1 for time.gmtime, which truncates -- a test artifact.
       now=st.integers(min_value=0, max_value=4_000_000_000_000).map(lambda ms: ms / 1000))
def test_the_signed_headers_are_botocores(url, service, region, access, secret, token, target, body, now,
                                          monkeypatch):
    expected = botocore_headers(url, service, region, access, secret, token, target, body, now, monkeypatch)
    mine = Signer(url, service, region, JSON_11).headers(access, secret, token, target, body, now=now)
    assert mine == expected


def test_the_signing_key_is_derived_again_for_a_new_day_or_secret(monkeypatch):
    url, body = "https://kinesis.us-east-1.amazonaws.com", b'{"x":1}'
    signer = Signer(url, "kinesis", "us-east-1", JSON_11)
    for now, secret in [(1e9, "s1"), (1e9 + 10, "s1"), (1e9 + 86400, "s1"), (1e9 + 86400, "s2"), (1e9, "s1")]:
        expected = botocore_headers(url, "kinesis", "us-east-1", "AK", secret, None, "T", body, now, monkeypatch)
        assert signer.headers("AK", secret, None, "T", body, now=now) == expected


@pytest.mark.parametrize(("url", "host"), [
    ("https://kinesis.us-east-1.amazonaws.com", "kinesis.us-east-1.amazonaws.com"),
    ("https://kinesis.us-east-1.amazonaws.com:443/", "kinesis.us-east-1.amazonaws.com"),
    ("http://127.0.0.1:80", "127.0.0.1"),
    ("http://127.0.0.1:4567", "127.0.0.1:4567"),
    ("https://u:p@Host.Example:8443/x", "host.example:8443"),
    ("http://[::1]:4567", "[::1]:4567"),
])
def test_the_host_header(url, host):
    assert canonical_host(url) == host
