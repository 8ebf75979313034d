"""The shipper's guarantees, with an in-memory sink (real spool files, real threads)."""

from __future__ import annotations

import gzip
import json
import os
import random
import threading
import time

import pytest

from spooler import (
    CHECKPOINT_FILE,
    CheckpointLocked,
    FsyncPolicy,
    SpoolWriter,
    WriterConfig,
    count_dead_letters,
    list_segments,
    read_checkpoint,
)
from tailer import Shipper, TailerConfig
from tailer.errors import RequestRejected, Unavailable
from tailer.sink import PutResult


class FakeSink:
    """Keeps what it accepted; can fail records, fail calls, reject poison, or hold calls at a gate."""

    def __init__(self, *, record_failure_rate=0.0, call_failure_rate=0.0, poison=None, seed=5):
        self.accepted: list[bytes] = []
        self.calls = 0
        self.record_failure_rate = record_failure_rate
        self.call_failure_rate = call_failure_rate
        self.poison = poison
        self.gate = threading.Event()
        self.gate.set()
        self.in_call = 0
        self.max_in_call = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def put_records(self, records):
        with self._lock:
            self.calls += 1
            self.in_call += 1
            self.max_in_call = max(self.max_in_call, self.in_call)
        try:
            self.gate.wait(30)
            with self._lock:
                if self.poison and any(self.poison in d for d, _, _ in records):
                    raise RequestRejected("bad record", code="ValidationException")
                if self._rng.random() < self.call_failure_rate:
                    raise Unavailable("injected", code="HTTP500")
                failed = []
                for i, (data, _key, _) in enumerate(records):
                    if self._rng.random() < self.record_failure_rate:
                        failed.append((i, "ProvisionedThroughputExceededException", "injected"))
                    else:
                        self.accepted.append(data)
                return PutResult(failed)
        finally:
            with self._lock:
                self.in_call -= 1

    def close(self):
        pass


def write_lines(spool_dir, writer_id, count, *, start=0, seal=True, segment_bytes=4096):
    writer = SpoolWriter(WriterConfig(spool_dir, writer_id, segment_bytes=segment_bytes, min_free_bytes=0,
                                      fsync=FsyncPolicy.NEVER))
    lines = [b'{"w":"%s","n":%d}\n' % (writer_id.encode(), i) for i in range(start, start + count)]
    for line in lines:
        writer.append(line)
    if seal:
        writer.close()
    return writer, lines


def make_shipper(spool_dir, sink, **overrides):
    settings = {"spool_dir": spool_dir, "stream": "s", "linger_seconds": 0.01, "checkpoint_interval_seconds": 0.0,
                "poll_interval_seconds": 0.05, "max_backoff_seconds": 0.01}
    settings.update(overrides)
    return Shipper(TailerConfig(**settings), sink)


def run_until(shipper, done, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not shipper.ship_once():
            time.sleep(0.005)
        if done():
            return
    raise AssertionError("condition not reached in time")


def test_ships_each_line_once_in_writer_order_then_deletes(spool_dir):
    _, a = write_lines(spool_dir, "a", 2000)
    _, b = write_lines(spool_dir, "b", 1500)
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink)
    run_until(shipper, lambda: not list_segments(spool_dir))
    shipper.close()
    assert sorted(sink.accepted) == sorted(a + b)
    assert [x for x in sink.accepted if x.startswith(b'{"w":"a"')] == a, "per-writer order kept"
    assert read_checkpoint(spool_dir) == {}


def test_active_segment_is_shipped_but_kept_until_sealed(spool_dir):
    writer, lines = write_lines(spool_dir, "live", 100, seal=False, segment_bytes=10**9)
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink)
    run_until(shipper, lambda: len(sink.accepted) == 100)
    for _ in range(20):
        shipper.ship_once()
    [segment] = list_segments(spool_dir)
    assert read_checkpoint(spool_dir) == {segment.segment_id: segment.size}
    more = [b'{"more":%d}\n' % i for i in range(50)]
    for line in more:
        writer.append(line)
    writer.close()
    shipper.request_rescan()
    run_until(shipper, lambda: not list_segments(spool_dir))
    shipper.close()
    assert sink.accepted == lines + more


def test_segment_shipped_while_active_is_deleted_once_sealed(spool_dir):
    writer, lines = write_lines(spool_dir, "live", 20, seal=False, segment_bytes=10**9)
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink)
    run_until(shipper, lambda: len(sink.accepted) == 20 and not shipper._dirty)
    writer.close()  # sealed after everything in it was already checkpointed
    shipper.request_rescan()
    run_until(shipper, lambda: not list_segments(spool_dir), timeout=5)
    assert shipper.drain() == 0


def test_partial_and_whole_call_failures_lose_nothing(spool_dir):
    _, lines = write_lines(spool_dir, "a", 5000, segment_bytes=20_000)
    sink = FakeSink(record_failure_rate=0.2, call_failure_rate=0.2)
    shipper = make_shipper(spool_dir, sink, concurrency=3)
    run_until(shipper, lambda: not list_segments(spool_dir), timeout=60)
    shipper.close()
    assert sorted(sink.accepted) == sorted(lines)
    assert shipper.metrics.retries._value.get() > 0


def test_checkpoint_only_covers_a_contiguous_acknowledged_prefix(spool_dir):
    _, lines = write_lines(spool_dir, "a", 3000, segment_bytes=10**9)
    sink = FakeSink()
    release_first = threading.Event()
    original = sink.put_records
    first_call = []

    def put(records):
        if not first_call:
            first_call.append(records[0][0])
            release_first.wait(30)  # the first batch is slow; later ones overtake it
        return original(records)

    sink.put_records = put
    shipper = make_shipper(spool_dir, sink, concurrency=4)
    run_until(shipper, lambda: len(sink.accepted) >= 1500)
    for _ in range(10):
        shipper.ship_once()
    assert lines[0] not in sink.accepted
    assert read_checkpoint(spool_dir).get(list_segments(spool_dir)[0].segment_id, 0) == 0, \
        "later batches are acknowledged, but the checkpoint waits for the first"
    assert list_segments(spool_dir), "nothing deleted"
    release_first.set()
    run_until(shipper, lambda: not list_segments(spool_dir))
    shipper.close()
    assert sorted(sink.accepted) == sorted(lines)


def test_nothing_is_deleted_while_kinesis_fails(spool_dir):
    write_lines(spool_dir, "a", 500)
    before = {s.segment_id: s.size for s in list_segments(spool_dir)}
    sink = FakeSink(call_failure_rate=1.0)
    shipper = make_shipper(spool_dir, sink)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        shipper.ship_once()
        time.sleep(0.01)
    shipper.close()
    assert sink.calls > 3
    assert {s.segment_id: s.size for s in list_segments(spool_dir)} == before, "every segment stays"
    assert not any(read_checkpoint(spool_dir).values())


def test_orphan_with_torn_tail_is_sealed_shipped_and_tail_dead_lettered(spool_dir):
    path = spool_dir / "dead_w0_p1_x-00000001.active"
    path.write_bytes(b'{"n":1}\n{"n":2}\n{"n":')  # its writer died mid-write; nobody holds the lock
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink)
    run_until(shipper, lambda: not list_segments(spool_dir))
    shipper.close()
    assert sink.accepted == [b'{"n":1}\n', b'{"n":2}\n']
    assert count_dead_letters(spool_dir) == 1
    [meta] = (spool_dir / "dead-letter").glob("*.json")
    doc = json.loads(meta.read_text())
    assert "torn" in doc["reason"] and doc["offset"] == 16
    assert meta.with_suffix(".bin").read_bytes() == b'{"n":'


def test_memory_is_bounded_by_batches_in_flight(spool_dir):
    writer = SpoolWriter(WriterConfig(spool_dir, "big", segment_bytes=2_000_000, min_free_bytes=0,
                                      fsync=FsyncPolicy.NEVER))
    for i in range(100_000):
        writer.append(b'{"n":%d,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}\n' % i)
    writer.close()
    backlog = sum(s.size for s in list_segments(spool_dir))
    assert backlog > 8_000_000
    sink = FakeSink()
    sink.gate.clear()  # Kinesis hangs
    shipper = make_shipper(spool_dir, sink, concurrency=2)
    for _ in range(300):
        shipper.ship_once()
    assert len(shipper._inflight) <= 2
    read = sum(p.read for p in shipper._progress.values())
    assert read <= 2 * shipper.config.read_bytes, f"read {read} of {backlog} bytes while nothing could be sent"
    sink.gate.set()
    shipper.close()


def test_rejected_record_is_narrowed_down_and_dead_lettered(spool_dir):
    _, lines = write_lines(spool_dir, "a", 300)
    with open(next(spool_dir.glob("*.ndjson")), "rb") as f:
        assert f.read(1)
    sink = FakeSink(poison=b'"n":137}')
    shipper = make_shipper(spool_dir, sink)
    run_until(shipper, lambda: not list_segments(spool_dir))
    shipper.close()
    assert sorted(sink.accepted) == sorted(line for line in lines if b'"n":137}' not in line)
    assert count_dead_letters(spool_dir) == 1


def test_second_tailer_on_the_same_spool_is_refused(spool_dir):
    first = make_shipper(spool_dir, FakeSink())
    with pytest.raises(CheckpointLocked):
        make_shipper(spool_dir, FakeSink())
    first.close()


def test_archive_instead_of_delete(spool_dir, tmp_path):
    _, lines = write_lines(spool_dir, "a", 400)
    archive = tmp_path / "archive"
    shipper = make_shipper(spool_dir, FakeSink(), archive_dir=archive)
    run_until(shipper, lambda: not list_segments(spool_dir))
    shipper.close()
    archived = b"".join(gzip.decompress(p.read_bytes()) for p in sorted(archive.glob("*.ndjson.gz")))
    assert archived == b"".join(lines)


def test_restart_resumes_from_the_checkpoint(spool_dir):
    writer, first = write_lines(spool_dir, "a", 100, seal=False, segment_bytes=10**9)
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink)
    run_until(shipper, lambda: len(sink.accepted) == 100 and not shipper._dirty)
    shipper.close()
    assert os.path.exists(spool_dir / CHECKPOINT_FILE)
    second = [b'{"later":%d}\n' % i for i in range(30)]
    for line in second:
        writer.append(line)
    writer.close()
    sink2 = FakeSink()
    again = make_shipper(spool_dir, sink2)
    run_until(again, lambda: not list_segments(spool_dir))
    again.close()
    assert sink2.accepted == second, "only what came after the checkpoint is sent again"


def test_linger_bounds_latency_even_when_lines_trickle_in(spool_dir):
    """A steady trickle (a read on every loop) must not keep a half-full batch waiting."""
    writer = SpoolWriter(WriterConfig(spool_dir, "drip", min_free_bytes=0, fsync=FsyncPolicy.NEVER))
    sink = FakeSink()
    seen_at: dict[bytes, float] = {}
    original = sink.put_records

    def put(records):
        now = time.monotonic()
        for data, _k, _ in records:
            seen_at[data] = now
        return original(records)

    sink.put_records = put
    shipper = make_shipper(spool_dir, sink, linger_seconds=0.1)
    appended_at = {}
    deadline = time.monotonic() + 1.5
    n = 0
    while time.monotonic() < deadline:
        line = b'{"drip":%d}\n' % n
        writer.append(line)
        appended_at[line] = time.monotonic()
        n += 1
        shipper.ship_once()  # every loop iteration finds something new to read
        time.sleep(0.005)
    run_until(shipper, lambda: len(seen_at) == n, timeout=5)
    writer.close()
    shipper.close()
    delays = sorted(seen_at[line] - appended_at[line] for line in appended_at)
    assert delays[-1] < 0.5, f"worst delay {delays[-1]:.2f}s with linger 0.1s"


def test_a_listing_that_misses_a_segment_mid_rename_does_not_drop_it(spool_dir, monkeypatch):
    """readdir may return neither name of a file renamed during the listing."""
    import tailer.shipper as shipper_module

    writer, lines = write_lines(spool_dir, "live", 50, seal=False, segment_bytes=10**9)
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink)
    run_until(shipper, lambda: len(sink.accepted) == 50 and not shipper._dirty)
    real = shipper_module.list_segments
    monkeypatch.setattr(shipper_module, "list_segments", lambda *a, **k: [])
    shipper.request_rescan()
    shipper.ship_once()
    monkeypatch.setattr(shipper_module, "list_segments", real)
    assert len(shipper._progress) == 1, "the segment is still tracked"
    writer.close()
    shipper.request_rescan()
    run_until(shipper, lambda: not list_segments(spool_dir))
    shipper.close()
    assert sink.accepted == lines, "nothing shipped twice"
