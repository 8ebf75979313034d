"""The tailer as a real process, shipping to real Kinesis-API servers over HTTP.

moto (server mode) and kinesalite (npm) are two independent implementations;
the stream is read back with GetRecords and deaggregated by aws-kinesis-agg.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import orjson
import psutil
import pytest
import requests

from spooler import (
    FsyncPolicy,
    SpoolWriter,
    WriterConfig,
    count_dead_letters,
    list_segments,
    read_checkpoint,
)
from tests.helpers import segments_left, start_tailer, wait_until, write_segments
from tests.servers.fault_proxy import FaultProxy
from tests.servers.kinesis import user_records


def assert_exactly_once(delivered: list[bytes], written: list[bytes]) -> None:
    counts = Counter(delivered)
    missing = [line for line in written if line not in counts]
    assert not missing, f"{len(missing)} of {len(written)} lines never arrived, e.g. {missing[:2]}"
    dups = {line: n for line, n in counts.items() if n > 1}
    assert not dups, f"{len(dups)} lines arrived more than once"
    assert len(delivered) == len(written)


@pytest.mark.parametrize("server_name", ["moto", "kinesalite"])
@pytest.mark.parametrize("mode", ["plain", "aggregate"])
def test_every_line_arrives_exactly_once(request, spool_dir, server_name, mode):
    server = request.getfixturevalue(server_name)
    stream = server.create_stream(shards=2)
    written = write_segments(spool_dir, "a", 1500) + write_segments(spool_dir, "b", 1000)
    torn = spool_dir / "gone_w0_p1_x-00000001.active"  # a dead writer's segment with a torn tail
    torn.write_bytes(b'{"orphan":1}\n{"orphan":2}\n{"orph')
    written += [b'{"orphan":1}\n', b'{"orphan":2}\n']
    extra = ["--aggregate"] if mode == "aggregate" else []
    tailer = start_tailer(spool_dir, stream, server.endpoint, *extra)
    wait_until(lambda: segments_left(spool_dir) == 0, message="spool shipped and emptied")
    assert tailer.stop(signal.SIGTERM) == 0
    records = server.read_records(stream)
    assert_exactly_once(server.read_lines(stream), written)
    assert count_dead_letters(spool_dir) == 1, "the torn tail went to dead letters, not the stream"
    if mode == "aggregate":
        assert len(records) * 50 < len(written)


def test_aggregated_per_key_records_stay_on_their_shard(kinesalite, spool_dir):
    stream = kinesalite.create_stream(shards=4)
    lines = []
    with SpoolWriter(WriterConfig(spool_dir, "k", min_free_bytes=0, fsync=FsyncPolicy.NEVER)) as writer:
        for i in range(3000):
            line = b'{"user":"u%d","n":%d}\n' % (i % 50, i)
            writer.append(line)
            lines.append(line)
    tailer = start_tailer(spool_dir, stream, kinesalite.endpoint, "--aggregate", "--partition-key", "field:user")
    wait_until(lambda: segments_left(spool_dir) == 0)
    assert tailer.stop() == 0
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    from tailer.shardmap import ShardMap

    shard_map = ShardMap(lambda: kinesalite.client().list_shards(StreamName=stream)["Shards"])
    shard_map.refresh()
    delivered = []
    for record in kinesalite.read_records(stream):
        for user in iter_deaggregate_records(record, data_format="Boto3"):
            # What the KCL checks: each sub-record's own key hashes to the shard it came from.
            assert shard_map.shard_for(user["kinesis"]["partitionKey"]) == record["ShardId"]
        delivered.extend(user_records(record))
    assert_exactly_once(delivered, lines)


def test_partial_failures_throttles_500s_and_resets_lose_nothing(moto, spool_dir):
    stream = moto.create_stream(shards=2)
    proxy = FaultProxy(moto.port)
    proxy.record_failure_rate = 0.25
    proxy.call_error_rate = 0.1
    proxy.call_throttle_rate = 0.1
    proxy.call_reset_rate = 0.05
    proxy.first_faults = ["error", "reset", "throttle"]  # each at least once, whatever the draws
    written = write_segments(spool_dir, "a", 2000)
    tailer = start_tailer(spool_dir, stream, proxy.endpoint, "--concurrency", "3")
    try:
        wait_until(lambda: segments_left(spool_dir) == 0, timeout=120)
    finally:
        assert tailer.stop() == 0
        proxy.close()
    assert proxy.counts["records_failed"] > 100 and proxy.counts["errors"] and proxy.counts["resets"]
    # The proxy withholds everything it fails, so even duplicates would be a bug here.
    assert_exactly_once(moto.read_lines(stream), written)


def test_endpoint_down_then_back_keeps_files_and_memory_bounded(kinesalite, spool_dir):
    stream = kinesalite.create_stream(shards=2)
    proxy = FaultProxy(kinesalite.port)
    proxy.down = True
    written = write_segments(spool_dir, "early", 3000, segment_bytes=64 * 1024)
    tailer = start_tailer(spool_dir, stream, proxy.endpoint)
    rss = []
    stop_writing = threading.Event()
    more: list[bytes] = []

    def keep_writing():
        with SpoolWriter(WriterConfig(spool_dir, "during", segment_bytes=64 * 1024, min_free_bytes=0,
                                      fsync=FsyncPolicy.NEVER)) as writer:
            n = 0
            while not stop_writing.is_set():
                line = b'{"during":%d}\n' % n
                writer.append(line)
                more.append(line)
                n += 1
                if n % 200 == 0:
                    time.sleep(0.01)

    writer_thread = threading.Thread(target=keep_writing)
    writer_thread.start()
    try:
        before = {s.segment_id for s in list_segments(spool_dir)}
        process = psutil.Process(tailer.process.pid)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            rss.append(process.memory_info().rss)
            time.sleep(0.1)
        assert before <= {s.segment_id for s in list_segments(spool_dir)}, "nothing deleted while down"
        assert not any(read_checkpoint(spool_dir).values()), "nothing checkpointed while down"
        assert proxy.counts["refused"] > 0
        proxy.down = False
        time.sleep(1)
    finally:
        stop_writing.set()
        writer_thread.join()
    try:
        wait_until(lambda: segments_left(spool_dir) == 0, timeout=120)
    finally:
        assert tailer.stop() == 0
        proxy.close()
    assert_exactly_once(kinesalite.read_lines(stream), written + more)
    assert max(rss) < 150 * 1024**2


def test_kill9_and_restart_delivers_everything_at_least_once(kinesalite, spool_dir):
    stream = kinesalite.create_stream(shards=2)
    written = write_segments(spool_dir, "a", 30_000, segment_bytes=512 * 1024)
    tailer = start_tailer(spool_dir, stream, kinesalite.endpoint, "--concurrency", "2")
    wait_until(lambda: any(read_checkpoint(spool_dir).values()) or segments_left(spool_dir) < 5, interval=0.02)
    tailer.kill()  # SIGKILL: no drain, no final checkpoint
    left = segments_left(spool_dir)
    assert left > 0, "killed before the end"
    restarted = start_tailer(spool_dir, stream, kinesalite.endpoint, "--concurrency", "2")
    wait_until(lambda: segments_left(spool_dir) == 0, timeout=120)
    assert restarted.stop() == 0
    delivered = Counter(kinesalite.read_lines(stream))
    assert all(line in delivered for line in written), "every line at least once"
    duplicates = sum(n - 1 for n in delivered.values())
    # Bounded by what was acknowledged since the last checkpoint plus what was in flight.
    assert duplicates <= 12_000, duplicates


def test_metrics_and_healthz(moto, spool_dir):
    stream = moto.create_stream(shards=1)
    write_segments(spool_dir, "a", 300)
    tailer = start_tailer(spool_dir, stream, moto.endpoint, "--metrics-port", "0")
    port = tailer.wait_for_log("metrics listening")["port"]
    wait_until(lambda: segments_left(spool_dir) == 0)
    metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "spoolship_tailer_lines_shipped_total 300.0" in metrics
    assert "spoolship_tailer_segments_deleted_total" in metrics
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json() == {"status": "ok"}
    assert tailer.stop() == 0


def test_drain_gives_up_with_a_nonzero_exit_when_kinesis_stays_down(moto, spool_dir):
    stream = moto.create_stream(shards=1)
    proxy = FaultProxy(moto.port)
    proxy.down = True
    write_segments(spool_dir, "a", 100)
    tailer = start_tailer(spool_dir, stream, proxy.endpoint, "--drain-timeout", "1")
    time.sleep(0.5)
    assert tailer.stop() == 1
    record = next(r for r in tailer.logs if r.get("event") == "tailer gave up at the drain timeout with data left")
    assert record["bytes_behind"] > 0
    assert segments_left(spool_dir) > 0
    proxy.close()


def test_missing_stream_is_reported_loudly_and_retried_not_dropped(moto, spool_dir):
    written = write_segments(spool_dir, "a", 50)
    tailer = start_tailer(spool_dir, "no-such-stream", moto.endpoint, "--metrics-port", "0", "--drain-timeout", "1")
    port = tailer.wait_for_log("metrics listening")["port"]
    record = tailer.wait_for_log("the destination refuses the stream; retrying slowly")
    assert record["code"] == "ResourceNotFoundException" and record["level"] == "error"
    metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'spoolship_tailer_failed_calls_total{reason="permanent"} 1.0' in metrics
    assert tailer.stop() == 1, "gave up at the drain timeout with data left"
    assert segments_left(spool_dir) == 1 and not any(read_checkpoint(spool_dir).values())
    assert len(written) == 50


# -- issue 11 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["plain", "aggregate"])
def test_keys_of_256_emoji_or_cjk_characters_are_accepted_by_kinesalite(kinesalite, spool_dir, mode):
    """Defect 4: kinesalite counts UTF-16 units (as AWS does): 256 emoji used to dead-letter the line —
    and, aggregated, every other user's line in the same record."""
    stream = kinesalite.create_stream(shards=2)
    lines = []
    with SpoolWriter(WriterConfig(spool_dir, "keys", min_free_bytes=0, fsync=FsyncPolicy.NEVER)) as writer:
        for i in range(600):
            user = ["\U0001F600" * 256, "鍵" * 300, "a\U0001F600" * 200, f"plain-{i % 7}"][i % 4]
            line = orjson.dumps({"user": user, "n": i}) + b"\n"
            writer.append(line)
            lines.append(line)
    extra = ["--aggregate"] if mode == "aggregate" else []
    tailer = start_tailer(spool_dir, stream, kinesalite.endpoint, "--partition-key", "field:user", *extra)
    wait_until(lambda: segments_left(spool_dir) == 0)
    assert tailer.stop() == 0
    assert count_dead_letters(spool_dir) == 0
    assert_exactly_once(kinesalite.read_lines(stream), lines)


def owned_copies(server, stream: str) -> Counter:
    """Lines by how many copies sit on a shard whose hash range holds their key (what a KCL consumer keeps)."""
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    from tailer.shardmap import hash_key

    client = server.client()
    ranges = {s["ShardId"]: (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
              for s in client.list_shards(StreamName=stream)["Shards"]}
    owned: Counter = Counter()
    for record in server.read_records(stream):
        low, high = ranges[record["ShardId"]]
        for user, data in zip(iter_deaggregate_records(record, data_format="Boto3"), user_records(record),
                              strict=True):
            if low <= hash_key(user["kinesis"]["partitionKey"]) <= high:
                owned[data] += 1
    return owned


def test_resharding_under_aggregated_per_key_records_leaves_every_event_on_a_shard_that_owns_its_key(
        kinesalite, spool_dir):
    """Defect 6: SplitShard then MergeShards while shipping; the tailer's shard map is a minute old."""
    stream = kinesalite.create_stream(shards=2)
    client = kinesalite.client()
    written: list[bytes] = []
    stop_writing = threading.Event()

    def keep_writing():
        with SpoolWriter(WriterConfig(spool_dir, "resharded", segment_bytes=256 * 1024, min_free_bytes=0,
                                      fsync=FsyncPolicy.NEVER)) as writer:
            n = 0
            while not stop_writing.is_set():
                line = b'{"user":"u%d","n":%d}\n' % (n % 500, n)
                writer.append(line)
                written.append(line)
                n += 1
                if n % 100 == 0:
                    time.sleep(0.02)

    tailer = start_tailer(spool_dir, stream, kinesalite.endpoint, "--aggregate", "--partition-key", "field:user",
                          "--concurrency", "2")
    writer_thread = threading.Thread(target=keep_writing)
    writer_thread.start()
    try:
        wait_until(lambda: len(written) > 2000 and any(read_checkpoint(spool_dir).values()), interval=0.05)
        first = client.list_shards(StreamName=stream)["Shards"][0]
        low, high = int(first["HashKeyRange"]["StartingHashKey"]), int(first["HashKeyRange"]["EndingHashKey"])
        client.split_shard(StreamName=stream, ShardToSplit=first["ShardId"], NewStartingHashKey=str((low + high) // 2))
        wait_until(lambda: client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
                   ["StreamStatus"] == "ACTIVE", interval=0.05)
        time.sleep(1.5)
        children = [s for s in client.list_shards(StreamName=stream)["Shards"]
                    if s.get("ParentShardId") == first["ShardId"]]
        assert len(children) == 2
        client.merge_shards(StreamName=stream, ShardToMerge=children[0]["ShardId"],
                            AdjacentShardToMerge=children[1]["ShardId"])
        wait_until(lambda: client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
                   ["StreamStatus"] == "ACTIVE", interval=0.05)
        time.sleep(1.5)
    finally:
        stop_writing.set()
        writer_thread.join()
    wait_until(lambda: segments_left(spool_dir) == 0, timeout=120)
    assert tailer.stop() == 0
    owned = owned_copies(kinesalite, stream)
    missing = [line for line in written if not owned[line]]
    assert not missing, f"{len(missing)} of {len(written)} events have no copy on a shard that owns their key"
    assert any(r.get("event", "").startswith("aggregate landed on another shard") for r in tailer.logs), \
        "the reshard was noticed from the ShardIds (else this test did not test it)"
