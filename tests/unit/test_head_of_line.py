"""Review item 5: one record no hop will pass never holds back the other records of its batch.

A proxy in front of Kinesis refuses a call with one 800 kB line in it (nginx: 413 for bodies over 1 MiB
once a few neighbours join it). The class: that record anywhere in its batch (first, middle, last), with
plain and aggregated records, lines of several writers in the same batch. Invariant: every other line is
delivered at once (not after a ``--permanent-retry`` period), the other writers' segments are
acknowledged and deleted, the refused line is never dead-lettered, and it is retried slowly.
"""

from __future__ import annotations

import time

import pytest

from spooler import FsyncPolicy, SpoolWriter, WriterConfig, count_dead_letters, list_segments
from tailer.errors import RequestRejected
from tests.unit.test_shipper import FakeSink, make_shipper, run_until

HUGE = 800_000


class SmallBodiesProxy(FakeSink):
    """Refuses, naming no record, any call with the huge line in it (as a proxy's 413 for bodies over 1 MiB)."""

    def __init__(self) -> None:
        super().__init__()
        self.refused_calls = 0

    def put_records(self, records):
        if any(len(d) >= HUGE for d, _, _ in records):  # base64 makes its body alone over 1 MiB
            self.refused_calls += 1
            raise RequestRejected("HTTP 413: Request Entity Too Large", code="HTTP413")
        return super().put_records(records)


def writer_lines(spool_dir, writer_id, count, huge_at=None):
    writer = SpoolWriter(WriterConfig(spool_dir, writer_id, segment_bytes=10**9, min_free_bytes=0,
                                      fsync=FsyncPolicy.NEVER))
    lines = []
    for i in range(count):
        pad = b"h" * HUGE if i == huge_at else b"x" * 300
        lines.append(b'{"w":"%s","n":%d,"p":"%s"}\n' % (writer_id.encode(), i, pad))
        writer.append(lines[-1])
    writer.close()
    return lines


@pytest.mark.parametrize("aggregate", [False, True], ids=["plain", "aggregated"])
@pytest.mark.parametrize("huge_at", [0, 150, 299], ids=["first", "middle", "last"])
def test_a_record_no_hop_passes_does_not_strand_its_neighbours(spool_dir, aggregate, huge_at):
    stuck = writer_lines(spool_dir, "a", 300, huge_at=huge_at)
    others = writer_lines(spool_dir, "b", 300)
    sink = SmallBodiesProxy()
    shipper = make_shipper(spool_dir, sink, aggregate=aggregate, permanent_retry_seconds=3600.0,
                           max_batch_bytes=5 * 1024 * 1024, linger_seconds=0.5)
    wanted = set(stuck + others) - {stuck[huge_at]}
    run_until(shipper, lambda: wanted <= accepted_lines(sink, aggregate), timeout=20)
    run_until(shipper, lambda: not any(s.name.writer == "b" for s in list_segments(spool_dir, probe=False)),
              timeout=20)
    assert count_dead_letters(spool_dir) == 0, "the refused line is the call's fault: never a dead letter"
    assert stuck[huge_at] not in accepted_lines(sink, aggregate)
    calls = sink.refused_calls
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        shipper.ship_once()
        time.sleep(0.01)
    assert sink.refused_calls - calls <= 1, "retried slowly (every --permanent-retry), not in a loop"
    assert [s.name.writer for s in list_segments(spool_dir, probe=False)] == ["a"], "its own segment is kept"


def accepted_lines(sink, aggregate):
    from tailer.kpl import deaggregate, is_aggregated

    out = set()
    for data in sink.accepted:
        if is_aggregated(data):
            out.update(line for _key, line in deaggregate(data))
        else:
            out.add(data)
    return out
