"""Replay (issue 11, defect 12): over-long lines dropped whole, --rate per event, true offsets."""

from __future__ import annotations

import gzip
import time

import pytest

from tailer.replay import Replayer, ReplayOptions
from tests.unit.test_shipper import FakeSink

MIB = 1024 * 1024


def replay(tmp_path, content: bytes, *, gz: bool = False, **options):
    path = tmp_path / ("x.ndjson.gz" if gz else "x.ndjson")
    path.write_bytes(gzip.compress(content) if gz else content)
    sink = FakeSink()
    summary = Replayer(sink, ReplayOptions(**options)).run([path])
    return sink, summary


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_a_line_longer_than_the_read_window_is_dropped_whole_never_shipped_in_pieces(tmp_path, gz):
    endless = b'{"a":"' + b"z" * (5 * MIB) + b'"}\n'
    sink, summary = replay(tmp_path, b'{"n":0}\n' + endless + b'{"n":1}\n{"n":2}\n{"torn', gz=gz)
    assert sink.accepted == [b'{"n":0}\n', b'{"n":1}\n', b'{"n":2}\n']
    assert summary.too_large == 1 and summary.ok
    torn_at = 8 + len(endless) + 16
    assert summary.torn == [f"{tmp_path / ('x.ndjson.gz' if gz else 'x.ndjson')}: 6 bytes at offset {torn_at} "
                            "without a newline"], "offsets count the dropped line"


def test_a_line_over_the_record_limit_but_within_the_window_is_skipped_and_counted(tmp_path):
    big = b'{"a":"' + b"z" * (MIB + 10) + b'"}\n'
    sink, summary = replay(tmp_path, big + b'{"n":1}\n')
    assert sink.accepted == [b'{"n":1}\n'] and summary.too_large == 1


def test_torn_tail_offset_after_a_from_offset_inside_a_line(tmp_path):
    sink, summary = replay(tmp_path, b'{"n":1}\n{"n":2}\n{"torn', from_offset=3)
    assert sink.accepted == [b'{"n":2}\n']
    assert summary.skipped_head_bytes == 5
    assert summary.torn and summary.torn[0].endswith("6 bytes at offset 16 without a newline"), summary.torn


def test_from_offset_at_a_line_start_skips_nothing_more(tmp_path):
    sink, summary = replay(tmp_path, b'{"n":1}\n{"n":2}\n', from_offset=8)
    assert sink.accepted == [b'{"n":2}\n'] and summary.skipped_head_bytes == 0


def test_rate_is_applied_per_event_not_per_chunk(tmp_path):
    """2,000 events at --rate 1000 take about 2 s, sent in small calls (not one 1 MiB burst)."""
    lines = b"".join(b'{"n":%d}\n' % i for i in range(2000))
    calls = []
    path = tmp_path / "x.ndjson"
    path.write_bytes(lines)
    sink = FakeSink()
    real = sink.put_records

    def put(records):
        calls.append((time.monotonic(), len(records)))
        return real(records)

    sink.put_records = put
    started = time.monotonic()
    summary = Replayer(sink, ReplayOptions(rate=1000)).run([path])
    elapsed = time.monotonic() - started
    assert summary.ok and len(sink.accepted) == 2000
    assert elapsed >= 1.9, f"2,000 events at 1,000/s took {elapsed:.2f} s"
    first_second = sum(n for at, n in calls if at - started < 1.0)
    assert first_second <= 1000 + 300, f"{first_second} events sent in the first second"
