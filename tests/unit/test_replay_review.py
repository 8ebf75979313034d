"""Review items 8 and 13: replay's --rate after a stall, what its summary claims, and short files.

- ``--rate`` is a token bucket with a capped burst: after the destination stalls, replay does not send
  the stall's worth of events at once to catch up.
- ``events`` in the summary counts what the destination acknowledged, never what was only read.
- A file shorter than ``--from-offset`` is skipped and reported; the other files are still replayed.
"""

from __future__ import annotations

import threading
import time

from tailer.errors import StreamNotFound
from tailer.replay import Replayer, ReplayOptions
from tests.unit.test_shipper import FakeSink


class StallingSink(FakeSink):
    """Accepts everything; the ``stall_at``-th call hangs for ``stall_seconds`` (Kinesis slow for a while)."""

    def __init__(self, stall_at: int, stall_seconds: float) -> None:
        super().__init__()
        self.stall_at, self.stall_seconds = stall_at, stall_seconds
        self.calls_at: list[tuple[float, int]] = []
        self._n = 0
        self._guard = threading.Lock()

    def put_records(self, records):
        with self._guard:
            self._n += 1
            n = self._n
            self.calls_at.append((time.monotonic(), len(records)))
        if n == self.stall_at:
            time.sleep(self.stall_seconds)
        return super().put_records(records)


def test_rate_does_not_burst_to_catch_up_after_a_stall(tmp_path):
    rate = 200
    path = tmp_path / "x.ndjson"
    path.write_bytes(b"".join(b'{"n":%d}\n' % i for i in range(1000)))
    sink = StallingSink(stall_at=3, stall_seconds=2.0)
    summary = Replayer(sink, ReplayOptions(rate=rate, concurrency=1)).run([path])
    assert summary.ok and len(sink.accepted) == 1000
    calls = sorted(sink.calls_at)
    worst = max(sum(n for at, n in calls if start <= at < start + 1.0) for start, _ in calls)
    # A second's worth, the capped burst (a quarter second) and a batch lingering (a quarter second).
    assert worst <= rate * 1.6, f"{worst} events sent within one second at --rate {rate}"


class RefusingSink(FakeSink):
    """Accepts ``accept`` calls, then the stream is gone."""

    def __init__(self, accept: int) -> None:
        super().__init__()
        self.accept = accept

    def put_records(self, records):
        if self.accept <= 0:
            raise StreamNotFound("gone", code="ResourceNotFoundException")
        self.accept -= 1
        return super().put_records(records)


def test_the_summary_counts_events_acknowledged_not_events_read(tmp_path):
    path = tmp_path / "x.ndjson"
    path.write_bytes(b"".join(b'{"n":%d,"p":"%s"}\n' % (i, b"x" * 2000) for i in range(3000)))
    sink = RefusingSink(accept=2)
    summary = Replayer(sink, ReplayOptions(concurrency=1, max_batch_bytes=1024 * 1024)).run([path])
    assert summary.error and not summary.ok
    assert summary.events == len(sink.accepted), f"claims {summary.events} sent, {len(sink.accepted)} were"


def test_a_file_shorter_than_from_offset_is_skipped_and_reported(tmp_path):
    short = tmp_path / "a-short.ndjson"
    short.write_bytes(b'{"s":1}\n')
    long = tmp_path / "b-long.ndjson"
    lines = [b'{"n":%d,"pad":"xxxxxxxxxxxxxxxxxxxxxx"}\n' % i for i in range(10)]
    long.write_bytes(b"".join(lines))
    sink = FakeSink()
    offset = len(lines[0])
    summary = Replayer(sink, ReplayOptions(from_offset=offset)).run([short, long])
    assert summary.error is None
    assert sink.accepted == lines[1:], "the other files are still replayed"
    assert summary.skipped_files and "a-short.ndjson" in summary.skipped_files[0]
    assert summary.ok, "reported, not fatal"
