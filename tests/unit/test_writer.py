"""The writer's contract: whole lines, sealing, locks, capacity, fsync policies."""

from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest

from spooler import (
    FsyncPolicy,
    SegmentState,
    SpoolFull,
    SpoolUnwritable,
    iter_chunks,
    list_segments,
)


def lines_in(spool_dir) -> list[bytes]:
    out = []
    for segment in list_segments(spool_dir, probe=False):
        for chunk in iter_chunks(segment.path):
            out.extend(chunk.data.splitlines(keepends=True))
    return out


def test_append_writes_whole_lines_to_an_active_segment(make_writer, spool_dir):
    writer = make_writer()
    writer.append(b'{"a":1}\n')
    writer.append(b'{"a":2}\n{"a":3}\n')
    [segment] = list_segments(spool_dir)
    assert segment.state is SegmentState.ACTIVE
    assert segment.path.name.endswith(".active")
    assert segment.path.read_bytes() == b'{"a":1}\n{"a":2}\n{"a":3}\n'


def test_append_refuses_incomplete_lines(make_writer, spool_dir):
    writer = make_writer()
    with pytest.raises(ValueError):
        writer.append(b'{"a":1}')
    assert list_segments(spool_dir) == []


def test_seals_by_size_and_names_sort_in_write_order(make_writer, spool_dir):
    writer = make_writer(segment_bytes=100)
    for i in range(30):
        writer.append(b'{"n":%03d,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxx"}\n' % i)
    segments = list_segments(spool_dir)
    assert [s.state for s in segments[:-1]] == [SegmentState.SEALED] * (len(segments) - 1)
    line_bytes = len(b'{"n":000,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxx"}\n')
    assert all(100 - line_bytes < s.size <= 100 for s in segments[:-1]), "sealed at the size, never past it"
    assert [s.path.name for s in segments] == sorted(s.path.name for s in segments)
    assert lines_in(spool_dir) == [b'{"n":%03d,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxx"}\n' % i for i in range(30)]


def test_an_append_larger_than_a_segment_gets_a_segment_of_its_own(make_writer, spool_dir):
    writer = make_writer(segment_bytes=50)
    writer.append(b"{}\n")
    writer.append(b'{"big":"' + b"x" * 100 + b'"}\n')
    writer.append(b"{}\n")
    sizes = [s.size for s in list_segments(spool_dir)]
    assert sizes == [3, 111, 3]


def test_seals_by_age_in_the_background(make_writer, spool_dir):
    writer = make_writer(segment_age_seconds=0.2)
    writer.append(b"{}\n")
    deadline = time.monotonic() + 5
    # A listing taken during the rename may show neither name (readdir and rename race), so retry.
    while time.monotonic() < deadline and [s.state for s in list_segments(spool_dir)] != [SegmentState.SEALED]:
        time.sleep(0.05)
    assert [s.state for s in list_segments(spool_dir)] == [SegmentState.SEALED]


def test_close_seals_and_a_new_writer_starts_new_segments(make_writer, spool_dir):
    first = make_writer()
    first.append(b'{"a":1}\n')
    first.close()
    second = make_writer()
    second.append(b'{"a":2}\n')
    states = {s.name.writer: s.state for s in list_segments(spool_dir)}
    assert states == {first.config.writer_id: SegmentState.SEALED, second.config.writer_id: SegmentState.ACTIVE}


def test_active_segment_is_flocked_by_its_writer(make_writer, spool_dir):
    writer = make_writer()
    writer.append(b"{}\n")
    [segment] = list_segments(spool_dir)
    fd = os.open(segment.path, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    writer.close()
    [segment] = list_segments(spool_dir)
    assert segment.state is SegmentState.SEALED


def test_capacity_refuses_then_recovers_in_the_same_writer(make_writer, spool_dir):
    writer = make_writer(max_spool_bytes=1000, segment_bytes=300)
    line = b'{"pad":"' + b"x" * 90 + b'"}\n'  # 101 bytes
    for _ in range(9):
        writer.append(line)
    with pytest.raises(SpoolFull) as refused:
        writer.append(line + line)
    assert refused.value.retry_after_seconds > 0
    assert writer.refusal() is not None
    assert len(lines_in(spool_dir)) == 9, "nothing of the refused append was written"
    # The tailer ships and deletes the sealed segments; the same writer resumes by itself.
    for segment in list_segments(spool_dir):
        if segment.state is SegmentState.SEALED:
            segment.path.unlink()
    time.sleep(0.06)
    writer.append(line + line)
    assert writer.refusal() is None


def test_min_free_bytes_refuses(make_writer):
    st = os.statvfs(".")
    writer = make_writer(min_free_bytes=st.f_bavail * st.f_frsize * 4)
    with pytest.raises(SpoolFull, match="disk has"):
        writer.append(b"{}\n")


def test_short_write_is_cut_back_and_refused(make_writer, spool_dir, monkeypatch):
    writer = make_writer()
    writer.append(b'{"ok":1}\n')
    real_write = os.write

    def short_write(fd, data):
        return real_write(fd, bytes(data)[:5])

    monkeypatch.setattr(os, "write", short_write)
    with pytest.raises(SpoolUnwritable, match="short write"):
        writer.append(b'{"torn":"never"}\n')
    monkeypatch.setattr(os, "write", real_write)
    assert writer.refusal() is not None
    writer.append(b'{"ok":2}\n')
    assert writer.refusal() is None
    assert lines_in(spool_dir) == [b'{"ok":1}\n', b'{"ok":2}\n']


def test_vanished_spool_directory_is_refused_not_raised_raw(make_writer, spool_dir):
    writer = make_writer()
    writer.append(b"{}\n")
    writer.seal()
    for path in spool_dir.iterdir():
        path.unlink()
    spool_dir.rmdir()
    with pytest.raises(SpoolUnwritable, match="ENOENT"):
        writer.append(b"{}\n")
    assert "unwritable" in writer.refusal()
    spool_dir.mkdir()
    writer.append(b"{}\n")
    assert writer.refusal() is None

def test_fsync_always_shares_fsyncs_between_threads(make_writer):
    writer = make_writer(fsync=FsyncPolicy.ALWAYS)
    per_thread = 200

    def work():
        for _ in range(per_thread):
            writer.append(b'{"e":1}\n')

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = writer.stats()
    assert stats.appends == 16 * per_thread
    assert 0 < stats.fsyncs < stats.appends, "group commit shares fsyncs"


def test_sync_append_is_durable_before_return(make_writer):
    writer = make_writer(fsync=FsyncPolicy.NEVER)
    writer.append(b"{}\n")
    assert writer.stats().fsyncs == 0
    writer.append(b"{}\n", sync=True)
    assert writer.stats().fsyncs == 1


def test_interval_policy_fsyncs_in_the_background(make_writer):
    writer = make_writer(fsync=FsyncPolicy.INTERVAL, fsync_interval_seconds=0.1)
    writer.append(b"{}\n")
    deadline = time.monotonic() + 5
    while writer.stats().fsyncs == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert writer.stats().fsyncs >= 1


def test_readiness_turns_off_near_the_cap_before_appends_fail(make_writer):
    writer = make_writer(max_spool_bytes=1_000_000, segment_bytes=10**9)
    line = b'{"pad":"' + b"x" * 989 + b'"}\n'  # 1,000 bytes
    for _ in range(930):
        writer.append(line)
    assert writer.refusal() is None
    for _ in range(50):
        writer.append(line)  # 980,000 bytes: appends still fit ...
    assert "full" in writer.refusal(), "... but a probe says unready within the headroom (64 KiB here)"
