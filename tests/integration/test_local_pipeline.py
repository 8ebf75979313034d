"""The newcomer path and the operator tools: `spoolship up`, `peek` and `replay` as real processes."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time

import requests
from aws_kinesis_agg.aggregator import RecordAggregator

from spooler import FsyncPolicy, SpoolWriter, WriterConfig, archive_segment, list_segments
from tests.conftest import child_env
from tests.helpers import wait_until


def spoolship(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spoolship", *args], capture_output=True, text=True,
                          env=child_env(), timeout=timeout)


def peek(stream: str, endpoint: str) -> list[dict]:
    result = spoolship("peek", "--stream", stream, "--endpoint-url", endpoint)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def peek_route(config: str, route: str, cwd) -> list[dict]:
    result = subprocess.run([sys.executable, "-m", "spoolship", "peek", "--config", config, "--route", route],
                            capture_output=True, text=True, env=child_env(), timeout=120, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_up_then_post_then_peek_then_sigterm_leaves_nothing_unshipped(tmp_path):
    """`up`'s routes: a Kinesis stream, a Firehose delivery stream (read back from moto's S3), the bad route."""
    spool = tmp_path / "spool"
    env = {k: v for k, v in child_env().items() if not k.startswith("AWS_")}  # no AWS setup at all
    proc = subprocess.Popen(
        [sys.executable, "-m", "spoolship", "up", "--port", "0", "--kinesis-port", "0", "--spool-dir", str(spool),
         "--stream", "events"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    banner = ""
    deadline = time.monotonic() + 60
    while "Ctrl-C" not in banner:
        assert time.monotonic() < deadline and proc.poll() is None, banner + proc.stderr.read()
        banner += proc.stdout.readline()
    receiver = re.search(r"receiver\s+(http://\S+)", banner).group(1)
    config = re.search(r"config: (\S+)", banner).group(1)
    curls = re.findall(r"curl .*", banner)
    assert len(curls) == 3 and "peek --config" in banner and "status --config" in banner

    for curl in curls:  # the banner's own curl lines work as printed
        subprocess.run(curl, shell=True, check=True, capture_output=True, timeout=30)
    for n in range(20):
        kind = "click" if n % 4 == 0 else "test"
        assert requests.post(receiver + "/v1/events", json={"type": kind, "n": n}, timeout=10).status_code == 201
    wait_until(lambda: len(peek_route(config, "events", tmp_path)) == 16 and len(peek_route(config, "clicks", tmp_path))
               == 6 and len(peek_route(config, "bad", tmp_path)) == 1, timeout=60, interval=0.5,
               message="events in every route's destination")
    events, clicks = peek_route(config, "events", tmp_path), peek_route(config, "clicks", tmp_path)
    assert {e["n"] for e in events if e["type"] == "test"} == {n for n in range(20) if n % 4}
    assert all(e["type"] == "click" for e in clicks) and {e["n"] for e in clicks} == {2, 0, 4, 8, 12, 16}
    [bad] = peek_route(config, "bad", tmp_path)
    assert bad["error"] == "bad_request" and bad["payload"] == '{"type":"click",'

    for n in range(20, 40):  # sent just before the stop: must still reach their destinations
        kind = "click" if n % 2 else "test"
        assert requests.post(receiver + "/v1/events", json={"type": kind, "n": n}, timeout=10).status_code == 201
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(90) == 0, proc.stderr.read()
    for route in ("events", "clicks", "bad"):
        assert list_segments(spool / route) == [], f"nothing left behind unshipped in {route}"


def write_segment(spool_dir, lines: list[bytes], torn: bytes = b"") -> object:
    with SpoolWriter(WriterConfig(spool_dir, "r", min_free_bytes=0, fsync=FsyncPolicy.NEVER)) as writer:
        writer.append(b"".join(lines))
    [segment] = list_segments(spool_dir)
    if torn:
        with open(segment.path, "ab") as f:
            f.write(torn)
    return segment


def test_replay_archived_segment_every_line_arrives(moto, spool_dir, tmp_path):
    lines = [b'{"n":%d}\n' % i for i in range(700)]
    segment = write_segment(spool_dir, lines)
    archived = archive_segment(segment.path, tmp_path / "archive")
    before = archived.read_bytes()
    stream = moto.create_stream(shards=2)
    result = spoolship("replay", str(archived), "--stream", stream, "--endpoint-url", moto.endpoint, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["events"] == 700 and summary["ok"]
    assert sorted(moto.read_lines(stream)) == sorted(lines)
    assert archived.read_bytes() == before, "replay never modifies its input"


def test_replay_aggregated_and_peek_shows_original_lines(moto, spool_dir):
    lines = [b'{"n":%d}\n' % i for i in range(300)]
    segment = write_segment(spool_dir, lines)
    stream = moto.create_stream(shards=1)
    result = spoolship("replay", str(segment.path), "--stream", stream, "--endpoint-url", moto.endpoint,
                       "--aggregate", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["records"] < 10
    assert [json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in peek(stream, moto.endpoint)] == lines


def test_peek_deaggregates_records_made_by_the_kpl_library(moto):
    stream = moto.create_stream(shards=1)
    aggregator = RecordAggregator()
    for i in range(50):
        aggregator.add_user_record(f"k{i}", b'{"kpl":%d}' % i)
    key, _ehk, data = aggregator.clear_and_get().get_contents()
    moto.client().put_record(StreamName=stream, PartitionKey=key, Data=data)
    moto.client().put_record(StreamName=stream, PartitionKey="plain", Data=b'{"plain":true}\n')
    assert peek(stream, moto.endpoint) == [{"kpl": i} for i in range(50)] + [{"plain": True}]


def test_replay_dry_run_offsets_torn_tails_and_bad_paths(moto, spool_dir, tmp_path):
    lines = [b'{"n":%d}\n' % i for i in range(100)]
    segment = write_segment(spool_dir, lines, torn=b'{"n":')
    stream = moto.create_stream(shards=1)

    dry = spoolship("replay", str(segment.path), "--stream", stream, "--endpoint-url", moto.endpoint,
                    "--dry-run", "--json")
    summary = json.loads(dry.stdout)
    assert dry.returncode == 0 and summary["events"] == 100 and summary["invalid_json"] == 0
    assert summary["torn"] and "5 bytes" in summary["torn"][0]
    assert moto.read_lines(stream) == [], "--dry-run sends nothing"

    offset = sum(len(line) for line in lines[:40])
    sent = spoolship("replay", str(segment.path), "--stream", stream, "--endpoint-url", moto.endpoint,
                     "--from-offset", str(offset))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "torn last line, not sent" in sent.stdout
    assert sorted(moto.read_lines(stream)) == sorted(lines[40:]), "exactly the bytes after the offset"

    gz = tmp_path / "copy.ndjson.gz"
    gz.write_bytes(gzip.compress(b"".join(lines)))
    inside = spoolship("replay", str(gz), "--stream", stream, "--endpoint-url", moto.endpoint, "--dry-run",
                       "--from-offset", str(offset + 3), "--json")
    doc = json.loads(inside.stdout)
    assert doc["events"] == 59 and doc["skipped_head_bytes"] == len(lines[40]) - 3

    missing = spoolship("replay", str(tmp_path / "nope.ndjson"), str(tmp_path), "--stream", stream)
    assert missing.returncode == 2
    assert "nope.ndjson: no such file" in missing.stderr and "not a regular file" in missing.stderr
    if os.geteuid() != 0:
        locked = tmp_path / "locked.ndjson"
        locked.write_bytes(b"{}\n")
        locked.chmod(0)
        assert spoolship("replay", str(locked), "--stream", stream).returncode == 2


def test_replay_to_a_missing_stream_fails_clearly(moto, spool_dir):
    segment = write_segment(spool_dir, [b'{"n":1}\n'])
    result = spoolship("replay", str(segment.path), "--stream", "no-such-stream", "--endpoint-url", moto.endpoint)
    assert result.returncode == 1
    assert "StreamNotFound" in result.stderr or "ResourceNotFound" in result.stderr
