"""TLS on the exchange: botocore's CA bundle and verification, and TLS failures where botocore put them.

A real TLS server (tests/servers/scripted_http.py) with a certificate made here; each case runs through
tailer/http_exchange.py and through botocore's session, and both must end the same way: stored with the
bundle botocore is told to use (AWS_CA_BUNDLE), Unavailable (retryable) for a certificate no bundle
vouches for, a certificate for another host name, or an endpoint that does not speak TLS.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import boto3
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tailer.aws_json import BotocoreExchange, _pooled_session
from tailer.errors import ShipError
from tailer.http_exchange import Exchange
from tailer.kinesis import KinesisSink
from tests.servers.scripted_http import ScriptedServer

OK = orjson.dumps({"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1", "ShardId": "shardId-0"}]})


def _certificate(directory: Path, name: str, *, ip: bool) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    names = [x509.DNSName(name)] + ([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))] if ip else [])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _tls_server(cert: Path, key: Path) -> ScriptedServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def script(_server, sock, _request) -> bool:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(OK), OK))
        return True
    return ScriptedServer(script, tls=context)


def _outcome(url: str, *, botocore: bool) -> str:
    sink = KinesisSink("s", endpoint_url=url, region="us-east-1", connect_timeout_seconds=2,
                       read_timeout_seconds=2,
                       session=boto3.Session(aws_access_key_id="a", aws_secret_access_key="b"))
    try:
        if botocore:
            sink._api.http = BotocoreExchange(_pooled_session(sink._api.client), sink._api.url)
        else:
            assert isinstance(sink._api.http, Exchange)
        for _ in range(2):  # the second call on the kept-alive TLS socket
            result = sink.put_records([(b"x", "k", None)])
        assert result.failed == []
        return "stored"
    except ShipError as exc:
        return type(exc).__name__
    finally:
        sink.close()


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("botocore", [False, True], ids=["exchange", "botocore"])
@pytest.mark.parametrize(("case", "expected"), [
    ("trusted bundle", "stored"),
    ("no bundle vouches for it", "Unavailable"),
    ("another host name", "Unavailable"),
    ("not TLS at all", "Unavailable"),
])
def test_tls_ends_where_botocore_s_did(tmp_path, clean_env, case, expected, botocore):
    cert, key = _certificate(tmp_path, "localhost" if case != "another host name" else "other.invalid",
                             ip=case != "another host name")
    if case == "not TLS at all":
        server = ScriptedServer(lambda _s, sock, _r: sock.sendall(b"HTTP/1.1 400 Bad\r\n\r\n") or False)
        url = server.url.replace("http://", "https://")
    else:
        server = _tls_server(cert, key)
        url = server.url
    if case != "no bundle vouches for it":
        clean_env.setenv("AWS_CA_BUNDLE", str(cert))
    try:
        assert _outcome(url, botocore=botocore) == expected
        if expected == "stored" and not botocore:
            # The check for bytes past an answer (a socket holding any is never reused) passes a clean TLS
            # socket: the second call went over the first call's connection.
            assert server.connections == 1
    finally:
        server.close()
