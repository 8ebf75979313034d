"""Review item 11: the tailer's metrics and dead-letter metadata say what happened.

- ``lines_shipped`` counts lines in the stream, not dead letters (those have their own counter);
- lines whose ``field:`` partition key is missing are counted (they go under a random key);
- a dead letter's metadata names the offset of the line itself, not of its batch's first span;
- ``bytes_behind`` and ``oldest_unshipped_age`` stay fresh while nothing is acknowledged;
- ``put_records_seconds`` observes failed calls too (``outcome="failed"``).
"""

from __future__ import annotations

import json
import time

from spooler import DEAD_LETTER_DIR, list_segments
from tailer.errors import StreamNotFound
from tests.unit.test_shipper import FakeSink, make_shipper, run_until, write_lines


def test_lines_shipped_excludes_dead_letters(spool_dir):
    _, lines = write_lines(spool_dir, "a", 80, segment_bytes=10**9)
    sink = FakeSink(poison=b'"n":41}')
    shipper = make_shipper(spool_dir, sink)
    run_until(shipper, lambda: not list_segments(spool_dir, probe=False))
    shipper.close()
    assert len(sink.accepted) == 79
    assert shipper.metrics.lines_shipped._value.get() == 79
    assert shipper.metrics.dead_letters.labels("rejected")._value.get() == 1


def test_a_dead_letter_names_the_offset_of_its_own_line(spool_dir):
    _, lines = write_lines(spool_dir, "a", 80, segment_bytes=10**9)
    [segment] = list_segments(spool_dir)
    sink = FakeSink(poison=b'"n":41}')
    shipper = make_shipper(spool_dir, sink)
    run_until(shipper, lambda: not list_segments(spool_dir, probe=False))
    shipper.close()
    [meta_path] = (spool_dir / DEAD_LETTER_DIR).glob("*.json")
    meta = json.loads(meta_path.read_text())
    assert meta["segment"] == segment.segment_id
    assert meta["offset"] == len(b"".join(lines[:41])), "the line's own offset"


def test_lines_without_the_key_field_are_counted(spool_dir):
    from spooler import FsyncPolicy, SpoolWriter, WriterConfig

    writer = SpoolWriter(WriterConfig(spool_dir, "a", segment_bytes=10**9, min_free_bytes=0, fsync=FsyncPolicy.NEVER))
    for i in range(50):
        writer.append(b'{"k":"u%d"}\n' % i if i % 5 else b'{"other":%d}\n' % i)
    writer.close()
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink, partition_key="field:k")
    run_until(shipper, lambda: not list_segments(spool_dir, probe=False))
    shipper.close()
    assert shipper.metrics.keys_missing._value.get() == 10


class RefusingSink(FakeSink):
    def put_records(self, records):
        with self._lock:
            self.calls += 1
        raise StreamNotFound("no such stream", code="ResourceNotFoundException")


def test_bytes_behind_and_oldest_age_stay_fresh_while_nothing_is_acknowledged(spool_dir):
    writer, lines = write_lines(spool_dir, "a", 20, seal=False, segment_bytes=10**9)
    sink = RefusingSink()
    shipper = make_shipper(spool_dir, sink, poll_interval_seconds=3600.0, permanent_retry_seconds=60.0)
    for _ in range(20):
        shipper.ship_once()
    more = [b'{"more":%d}\n' % i for i in range(30)]
    for line in more:
        writer.append(line)
    time.sleep(1.2)
    deadline = time.monotonic() + 10
    total = len(b"".join(lines + more))
    while time.monotonic() < deadline and shipper.metrics.bytes_behind._value.get() != total:
        shipper.ship_once()
        time.sleep(0.05)
    assert shipper.metrics.bytes_behind._value.get() == total, "bytes appended since the last listing count"
    assert shipper.metrics.oldest_age._value.get() >= 1.0, "the oldest line's age grows while it waits"
    assert sink.calls >= 1
    assert shipper.metrics.put_seconds.labels("failed")._sum.get() > 0, "failed calls are timed too"
    writer.close()
