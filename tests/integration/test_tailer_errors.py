"""Endpoint errors over real sockets: nothing acknowledged is dead-lettered, stranded or re-sent without bound.

A FaultProxy in front of moto answers whatever a test tells it (any status, any body); the tailer runs as a
real process, or in-process with the real KinesisSink where a test needs to reach inside (credentials).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter

import boto3
import botocore.session
from botocore.credentials import CredentialProvider, RefreshableCredentials
from botocore.exceptions import ClientError

from spooler import count_dead_letters, list_segments, read_checkpoint
from tailer import KinesisSink, Shipper, TailerConfig
from tailer.errors import ShipError
from tests.conftest import child_env
from tests.helpers import segments_left, start_tailer, wait_until, write_segments
from tests.servers.fault_proxy import FaultProxy
from tests.unit.test_kinesis_errors import BODIES, classify


def spoolship(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spoolship", *args], capture_output=True, text=True,
                          env=child_env(), timeout=60)


def test_an_invalid_stream_name_is_refused_at_start_up(spool_dir):
    """Defect 1: `--stream "my events"` used to start, then dead-letter every line (ValidationException)."""
    for command in (["tail", "--spool-dir", str(spool_dir)], ["replay", str(spool_dir / "x.ndjson")]):
        (spool_dir / "x.ndjson").write_bytes(b'{"n":1}\n')
        result = spoolship(*command, "--stream", "my events", "--endpoint-url", "http://127.0.0.1:9")
        assert result.returncode == 2, result
        assert "is not a Kinesis stream name" in result.stderr, result.stderr
    assert spoolship("tail", "--spool-dir", str(spool_dir), "--stream", "x" * 129).returncode == 2


def test_every_status_and_body_over_a_real_socket_is_what_the_table_says(moto):
    """The real KinesisSink parses what the proxy answers exactly as the unit table classifies it."""
    proxy = FaultProxy(moto.port)
    sink = KinesisSink("s", endpoint_url=proxy.endpoint, region="us-east-1",
                       session=boto3.Session(aws_access_key_id="a", aws_secret_access_key="b"))
    shapes = [b for name, b in BODIES if name in ("html", "empty", "truncated json", "binary")
              or name in ("json:ValidationException", "ValidationException:records.3.member.data",
                          "json:ProvisionedThroughputExceededException", "json:ResourceNotFoundException")]
    records = [(b'{"n":%d}\n' % i, f"k{i}", None) for i in range(5)]
    seen = Counter()
    try:
        for status in range(300, 600):
            proxy.answers = [(status, body, {"Content-Type": "application/x-amz-json-1.1"}) for body in shapes]
            for body in shapes:
                try:
                    sink.put_records(records)
                except ShipError as error:
                    expected = classify(status, body)
                    assert type(error) is type(expected), (status, body[:60], error, expected)
                    seen[type(error).__name__] += 1
                else:
                    raise AssertionError(f"HTTP {status} {body[:40]!r} taken as a success")
    finally:
        sink.close()
        proxy.close()
    assert sum(seen.values()) == 300 * len(shapes)
    assert {"CallRefused", "Unavailable", "RecordsRejected", "Throttled", "StreamNotFound"} <= set(seen)


def test_a_proxy_answering_html_404_dead_letters_nothing_and_the_lines_arrive_after(moto, spool_dir):
    """Defect 1's trigger: 64 of 64 lines were dead-lettered in 3 s and their segment deleted."""
    stream = moto.create_stream(shards=1)
    proxy = FaultProxy(moto.port)
    proxy.answers = [(404, b"<html><body><h1>404 Not Found</h1></body></html>", {"Content-Type": "text/html"})]
    written = write_segments(spool_dir, "a", 64)
    tailer = start_tailer(spool_dir, stream, proxy.endpoint, "--permanent-retry", "0.5")
    try:
        tailer.wait_for_log("the destination refuses the stream; retrying slowly")
        time.sleep(3)
        assert count_dead_letters(spool_dir) == 0 and segments_left(spool_dir) == 1
        assert not any(read_checkpoint(spool_dir).values())
        calls_while_refused = proxy.counts["calls"]
        assert calls_while_refused <= 12, f"{calls_while_refused} calls in ~3 s at --permanent-retry 0.5"
        proxy.answers = None
        wait_until(lambda: segments_left(spool_dir) == 0)
    finally:
        assert tailer.stop() == 0
        proxy.close()
    assert sorted(moto.read_lines(stream)) == sorted(written)
    assert count_dead_letters(spool_dir) == 0


class FlakyWebIdentity(CredentialProvider):
    """Like IRSA's web-identity provider inside botocore's mandatory refresh window: each refresh
    calls "STS", which fails (as botocore re-raises it) until ``healthy_at``."""

    METHOD = "flaky-web-identity"
    CANONICAL_NAME = "FlakyWebIdentity"

    def __init__(self, failing_seconds: float) -> None:
        super().__init__()
        self.healthy_at = time.monotonic() + failing_seconds
        self.attempts = 0
        self.failures = 0
        self._lock = threading.Lock()

    def _fetch(self) -> dict:
        with self._lock:
            self.attempts += 1
            if time.monotonic() < self.healthy_at:
                self.failures += 1
                raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"},
                                   "ResponseMetadata": {"HTTPStatusCode": 400}}, "AssumeRoleWithWebIdentity")
        expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        return {"access_key": "test", "secret_key": "test", "token": "t", "expiry_time": expiry}

    def load(self):
        # Expiring within botocore's mandatory refresh window (10 min): every use refreshes until it works.
        soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 120))
        return RefreshableCredentials.create_from_metadata(
            {"access_key": "test", "secret_key": "test", "token": "t", "expiry_time": soon},
            refresh_using=self._fetch, method=self.METHOD)


def test_a_credential_provider_that_fails_then_recovers_loses_nothing_with_bounded_attempts(moto, spool_dir):
    """Defect 2: an STS ClientError raised by a credential refresh escaped the backoff (~150 attempts/s)."""
    stream = moto.create_stream(shards=1)
    written = write_segments(spool_dir, "a", 300)
    provider = FlakyWebIdentity(failing_seconds=3.0)
    core = botocore.session.get_session()
    core.get_component("credential_provider").insert_before("env", provider)
    session = boto3.Session(botocore_session=core, region_name="us-east-1")
    sink = KinesisSink(stream, endpoint_url=moto.endpoint, region="us-east-1", session=session)
    config = TailerConfig(spool_dir, stream, concurrency=3, max_backoff_seconds=0.5, linger_seconds=0.05,
                          checkpoint_interval_seconds=0.1, poll_interval_seconds=0.2, max_batch_bytes=1024 * 1024)
    shipper = Shipper(config, sink)
    stop = threading.Event()
    runner = threading.Thread(target=shipper.run, args=(stop,))
    runner.start()
    try:
        wait_until(lambda: not list_segments(spool_dir), timeout=60)
    finally:
        stop.set()
        runner.join(60)
        sink.close()
    assert sorted(moto.read_lines(stream)) == sorted(written), "nothing lost, nothing twice"
    assert count_dead_letters(spool_dir) == 0
    assert provider.failures > 3, "the provider did fail for a while"
    # 3 s of failure, at most 3 deliveries backing off up to 0.5 s each (mean 0.25 s once capped).
    assert provider.failures <= 60, f"{provider.failures} credential attempts in 3 s"
    assert shipper.metrics.failed_calls.labels("credentials")._value.get() > 0
