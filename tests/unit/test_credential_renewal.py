"""Review item 4: credentials rotated under a running tailer are picked up (the chain is resolved again).

A real HTTP endpoint that knows one good access key answers every call signed with another with a
credential error code; the credentials come from a shared credentials file that is rewritten (rotated)
while the sink runs. For every code AWS uses for stale or unknown credentials, for both sinks: after the
rotation the next calls succeed, with a bounded number of attempts (the chain is resolved again with a
backoff, not on every call).
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tailer.config import TailerConfig
from tailer.credentials import STALE_CREDENTIAL_CODES
from tailer.destination import open_sink
from tailer.errors import ShipError

_KEY = re.compile(r"Credential=([A-Za-z0-9]+)/")


class KeyCheckingEndpoint:
    """Accepts PutRecords / PutRecordBatch signed with ``good_key``; anything else gets 400 ``code``."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.good_key = "NEWKEY"
        self.calls: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = (_KEY.search(self.headers.get("Authorization", "")) or [None, ""])[1]
                endpoint.calls.append(key)
                if key != endpoint.good_key:
                    answer, status = {"__type": endpoint.code, "message": "The security token is invalid"}, 400
                elif "DeliveryStreamName" in body:
                    answer, status = {"FailedPutCount": 0, "RequestResponses": [
                        {"RecordId": "r"} for _ in body["Records"]]}, 200
                else:
                    answer, status = {"FailedRecordCount": 0, "Records": [
                        {"SequenceNumber": "1", "ShardId": "shardId-000000000000"} for _ in body["Records"]]}, 200
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def write_credentials(path, key: str) -> None:
    path.write_text(f"[default]\naws_access_key_id = {key}\naws_secret_access_key = secret-{key}\n")


@pytest.mark.parametrize("destination", ["kinesis", "firehose"])
@pytest.mark.parametrize("code", sorted(STALE_CREDENTIAL_CODES))
def test_rotated_credentials_are_picked_up_after_a_credential_error(tmp_path, monkeypatch, code, destination):
    credentials = tmp_path / "credentials"
    write_credentials(credentials, "OLDKEY")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setattr("tailer.credentials.RENEW_FIRST_SECONDS", 0.2)  # the backoff's own test is below
    endpoint = KeyCheckingEndpoint(code)
    sink = open_sink(TailerConfig(spool_dir=tmp_path / "spool", stream="s", destination=destination,
                                  endpoint_url=endpoint.url))
    try:
        with pytest.raises(ShipError):
            sink.put_records([(b"{}\n", "k", None)])
        write_credentials(credentials, "NEWKEY")  # rotated
        deadline = time.monotonic() + 10
        while True:
            try:
                sink.put_records([(b"{}\n", "k", None)])
                break
            except ShipError:
                assert time.monotonic() < deadline, f"still refused 10 s after the rotation ({code})"
                time.sleep(0.1)
        assert endpoint.calls[-1] == "NEWKEY"
        assert len(endpoint.calls) <= 40, "bounded attempts"
    finally:
        sink.close()
        endpoint.close()


def test_the_chain_is_not_resolved_again_on_every_call(tmp_path, monkeypatch):
    credentials = tmp_path / "credentials"
    write_credentials(credentials, "OLDKEY")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    endpoint = KeyCheckingEndpoint("ExpiredTokenException")
    sink = open_sink(TailerConfig(spool_dir=tmp_path / "spool", stream="s", endpoint_url=endpoint.url))
    try:
        for _ in range(20):
            with pytest.raises(ShipError):
                sink.put_records([(b"{}\n", "k", None)])
        assert len(endpoint.calls) <= 22, "one extra call per renewal, and renewals back off"
    finally:
        sink.close()
        endpoint.close()
