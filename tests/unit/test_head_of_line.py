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


class BodyLimitProxy(FakeSink):
    """nginx's default ``client_max_body_size 1m``: a 413, before Kinesis sees it, for a call whose JSON body
    (base64 data) is over 1 MiB — whichever records make it up."""

    LIMIT = 1024 * 1024

    def __init__(self) -> None:
        super().__init__()
        self.refused_calls = 0

    def put_records(self, records):
        body = sum((len(d) + 2) // 3 * 4 + len(k) + 48 for d, k, _ in records) + 40
        if body > self.LIMIT:
            self.refused_calls += 1
            raise RequestRejected("HTTP 413: Request Entity Too Large", code="HTTP413")
        return super().put_records(records)


@pytest.mark.parametrize("aggregate", [False, True], ids=["plain", "aggregated"])
@pytest.mark.parametrize("huge_at", [(3, 15, 30, 45, 58), (20, 21, 22, 23, 24)], ids=["spread", "adjacent"])
def test_more_records_refused_alone_than_the_lone_refusal_limit_never_strand_a_batch(spool_dir, aggregate,
                                                                                     huge_at):
    """Review 2, item 3: five 850 kB events among 60 small ones, batches of up to 5 MiB behind a 1 MiB body
    limit: every small event arrives at once (not after --permanent-retry), nothing is dead-lettered, the
    huge ones are held and retried slowly."""
    writer = SpoolWriter(WriterConfig(spool_dir, "a", segment_bytes=10**9, min_free_bytes=0,
                                      fsync=FsyncPolicy.NEVER))
    lines = []
    for i in range(65):
        pad = b"h" * 850_000 if i in huge_at else b"x" * 200
        lines.append(b'{"n":%d,"p":"%s"}\n' % (i, pad))
        writer.append(lines[-1])
    writer.close()
    sink = BodyLimitProxy()
    shipper = make_shipper(spool_dir, sink, aggregate=aggregate, permanent_retry_seconds=3600.0,
                           max_batch_bytes=5 * 1024 * 1024, linger_seconds=0.5)
    small = {line for i, line in enumerate(lines) if i not in huge_at}
    run_until(shipper, lambda: small <= accepted_lines(sink, aggregate) and not shipper._inflight, timeout=30)
    assert count_dead_letters(spool_dir) == 0
    assert len(shipper._held.spans()) >= 1, "the huge ones are held out, retried every --permanent-retry"
    calls = sink.refused_calls
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        shipper.ship_once()
        time.sleep(0.01)
    assert sink.refused_calls == calls, "nothing retried in a loop meanwhile"
    shipper.close()


def test_a_record_appended_during_the_delivery_and_refused_alone_is_held_as_its_original():
    """Review 2, item 3: lines of a rejected aggregate have no lines of their own to hand back; one of them
    refused alone holds the record it came from (sent again later: duplicates, never a loss)."""
    import threading

    from tailer.delivery import Backoff, Delivery
    from tailer.errors import RecordsRejected
    from tailer.metrics import TailerMetrics
    from tailer.packing import Batch, Span

    class Sink(FakeSink):
        def put_records(self, records):
            if any(d.count(b"\n") > 1 for d, _, _ in records):
                raise RecordsRejected("invalid record", [0], code="ValidationException")
            if any(b"refused" in d for d, _, _ in records):
                raise RequestRejected("HTTP 413", code="HTTP413")
            return super().put_records(records)

    packed = b'{"a":1}\n{"refused":2}\n{"c":3}\n'
    span = Span("s-1", 0, len(packed) + 8, 4)
    batch = Batch(records=[(packed, "k0", None), (b'{"n":1}\n', "k1", None)], record_spans=[{span: 3}, {span: 1}])
    abort = threading.Event()
    delivery = Delivery(Sink(), TailerMetrics(), backoff=Backoff(0.001, 0.01), abort=abort,
                        reject=lambda *_: None, permanent_retry_seconds=0.01)
    timer = threading.Timer(10.0, abort.set)  # the old code retried the appended line in this thread forever
    timer.start()
    try:
        done = delivery.deliver(batch)
    finally:
        timer.cancel()
    assert done.held == [0]
