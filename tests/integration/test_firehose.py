"""Firehose destinations against moto's server (Firehose writing to moto's S3), over HTTP."""

from __future__ import annotations

import logging
import threading
import time

import boto3

from spooler import FsyncPolicy, SpoolWriter, WriterConfig, list_segments
from tailer import Shipper, TailerConfig
from tailer.credentials import RoleSettings, assume_role_session
from tailer.firehose import FirehoseSink
from tests.helpers import start_tailer, wait_until, write_segments
from tests.servers.expiring_credentials import ExpiringCredentialsProxy
from tests.servers.fault_proxy import FaultProxy
from tests.servers.firehose import create_delivery_stream, delivered_lines, delivered_objects


def test_tail_delivery_stream_ships_every_line_as_ndjson_objects_through_a_real_process(moto, spool_dir):
    hose = create_delivery_stream(moto)
    lines = write_segments(spool_dir, "w1", 3000, size=200)
    tailer = start_tailer(spool_dir, hose, moto.endpoint, firehose=True)
    wait_until(lambda: len(delivered_lines(moto.endpoint, hose)) >= len(lines), timeout=60, message="all in S3")
    wait_until(lambda: not list_segments(spool_dir, probe=False), timeout=30, message="segments deleted")
    assert tailer.stop() == 0
    assert sorted(delivered_lines(moto.endpoint, hose)) == sorted(lines)
    for body in delivered_objects(moto.endpoint, hose):
        assert body.endswith(b"\n") and all(line.startswith(b'{"w":') for line in body.splitlines())


def test_record_failures_throttles_and_resets_lose_nothing(moto, spool_dir, caplog):
    hose = create_delivery_stream(moto)
    lines = write_segments(spool_dir, "w1", 6000, size=300)
    proxy = FaultProxy(moto.port, seed=3)
    proxy.record_failure_rate, proxy.call_error_rate, proxy.call_reset_rate = 0.3, 0.2, 0.2
    proxy.first_faults = ["error", "reset"]  # each at least once, whatever the draws
    config = TailerConfig(spool_dir, hose, destination="firehose", endpoint_url=proxy.endpoint,
                          region="us-east-1", firehose_record_bytes=8192, linger_seconds=0.02,
                          checkpoint_interval_seconds=0.1, poll_interval_seconds=0.2, max_backoff_seconds=0.05)
    sink = FirehoseSink(hose, endpoint_url=proxy.endpoint, region="us-east-1")
    shipper = Shipper(config, sink)
    stop = threading.Event()
    thread = threading.Thread(target=shipper.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: not list_segments(spool_dir, probe=False), timeout=90, message="spool shipped")
    except AssertionError as exc:  # say which answers held it up (a slow retry means a Permanent error)
        errors = [(r.getMessage(), getattr(r, "code", None), getattr(r, "error", None))
                  for r in caplog.records if r.levelno >= logging.WARNING]
        raise AssertionError(f"{exc}; proxy {proxy.counts}; last errors {errors[-5:]}") from None
    finally:
        stop.set()
        thread.join(60)
        sink.close()
        proxy.close()
    assert proxy.counts["records_failed"] > 0 and proxy.counts["errors"] > 0 and proxy.counts["resets"] > 0
    delivered = delivered_lines(moto.endpoint, hose)
    assert set(delivered) == set(lines), "every line arrived"
    assert len(delivered) == len(lines), "no record that Firehose accepted was sent again"


def test_assume_role_credentials_that_expire_mid_run_are_refreshed_and_nothing_is_lost(moto, spool_dir):
    """moto's STS credentials, made to live 5 s by a proxy that enforces it; lines keep coming for 12 s."""
    hose = create_delivery_stream(moto)
    proxy = ExpiringCredentialsProxy(moto.port, lifetime_seconds=5)
    role = RoleSettings("arn:aws:iam::123456789012:role/writer", external_id="spoolship-test",
                        session_name="tailer-test", sts_endpoint_url=proxy.endpoint)
    source = boto3.Session(aws_access_key_id="source", aws_secret_access_key="source", region_name="us-east-1")
    session = assume_role_session(source, role, "us-east-1", advisory_seconds=2.5, mandatory_seconds=1.5)
    sink = FirehoseSink(hose, endpoint_url=proxy.endpoint, region="us-east-1", session=session)
    config = TailerConfig(spool_dir, hose, destination="firehose", endpoint_url=proxy.endpoint, linger_seconds=0.05,
                          checkpoint_interval_seconds=0.1, poll_interval_seconds=0.2, max_backoff_seconds=0.2)
    shipper = Shipper(config, sink)
    stop = threading.Event()
    thread = threading.Thread(target=shipper.run, args=(stop,))
    thread.start()
    writer = SpoolWriter(WriterConfig(spool_dir, "w1", min_free_bytes=0, fsync=FsyncPolicy.NEVER))
    lines = []
    try:
        started = time.monotonic()
        while time.monotonic() - started < 12:
            batch = [b'{"n":%d}\n' % (len(lines) + i) for i in range(20)]
            writer.append(b"".join(batch))
            lines += batch
            time.sleep(0.05)
        writer.close()
        wait_until(lambda: not list_segments(spool_dir, probe=False), timeout=60, message="spool shipped")
    finally:
        stop.set()
        thread.join(60)
        sink.close()
        proxy.close()
    assert sorted(delivered_lines(moto.endpoint, hose)) == sorted(lines)
    assert proxy.counts["assume_role"] >= 3, proxy.counts
    assert len(proxy.keys_used) >= 3, "calls were signed with each new set of credentials"
    assert proxy.counts["expired"] == 0 and proxy.counts["not_the_role"] == 0, proxy.counts
