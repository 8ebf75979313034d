"""The writer's contract: whole lines, sealing, locks, capacity, fsync policies."""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time

import pytest

from spooler import (
    AppendRefused,
    AppendUncertain,
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


# -- error paths: each test forces its interleaving with hooks, so the old code fails it every time ---------


def _is_regular(fd: int) -> bool:
    import stat

    return stat.S_ISREG(os.fstat(fd).st_mode)


def test_sync_append_never_returns_before_a_concurrent_seals_fsync(make_writer, monkeypatch):
    """Defect 1: a seal used to drop the descriptor before its fsync, and group commit took
    "no descriptor" for "already durable"; a ?sync=1 append could answer before any fsync."""
    writer = make_writer(fsync=FsyncPolicy.NEVER)
    writer.append(b'{"first":1}\n')
    seal_in_fsync, appender_waiting, appender_done = threading.Event(), threading.Event(), threading.Event()
    state = {"seal_fsync_done": False, "returned_after_fsync": None}
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def slow_file_fsync(real):
        def hook(fd):
            if _is_regular(fd) and not seal_in_fsync.is_set():
                seal_in_fsync.set()
                appender_done.wait(0.5)  # the old code lets the appender return right now
                real(fd)
                state["seal_fsync_done"] = True
                return None
            return real(fd)
        return hook

    monkeypatch.setattr(os, "fsync", slow_file_fsync(real_fsync))
    monkeypatch.setattr(os, "fdatasync", slow_file_fsync(real_fdatasync))
    real_wait = writer._commit.wait_durable

    def wait_after_the_seal_started(seq, **options):
        appender_waiting.set()
        assert seal_in_fsync.wait(5)
        real_wait(seq, **options)

    monkeypatch.setattr(writer._commit, "wait_durable", wait_after_the_seal_started)

    def sync_append():
        writer.append(b'{"sync":1}\n', sync=True)
        state["returned_after_fsync"] = state["seal_fsync_done"]
        appender_done.set()

    appender = threading.Thread(target=sync_append)
    appender.start()
    assert appender_waiting.wait(5)
    sealer = threading.Thread(target=writer.seal)
    sealer.start()
    appender.join(10)
    sealer.join(10)
    assert state["returned_after_fsync"] is True, "a sync append returned before the fsync of its bytes"


def test_short_write_never_shrinks_a_segment_a_reader_may_have_seen(make_writer, spool_dir, monkeypatch):
    """Defect 2: a short write used to be cut back with ftruncate, under a tailer that may have read it."""
    writer = make_writer()
    writer.append(b'{"ok":1}\n')
    real_write = os.write
    seen = {}

    def short_then_full_disk(fd, data):
        if "size" in seen:
            raise OSError(errno.ENOSPC, "No space left on device")
        written = real_write(fd, bytes(data)[:5])
        seen["size"] = os.fstat(fd).st_size  # what a tailer reading right now sees
        return written

    monkeypatch.setattr(os, "write", short_then_full_disk)
    with pytest.raises(AppendUncertain, match="short write"):
        writer.append(b'{"torn":"never"}\n')
    monkeypatch.setattr(os, "write", real_write)
    writer.append(b'{"ok":2}\n')
    segments = list_segments(spool_dir)
    first = segments[0]
    assert first.size >= seen["size"], "the segment shrank below what a reader may have read"
    assert first.state is SegmentState.SEALED, "the torn segment is sealed: its tail goes to dead letters"
    assert first.path.read_bytes() == b'{"ok":1}\n{"tor'
    assert lines_in(spool_dir) == [b'{"ok":1}\n', b'{"ok":2}\n']
    assert writer.refusal() is None


def test_short_write_is_finished_when_the_rest_fits(make_writer, spool_dir, monkeypatch):
    writer = make_writer()
    real_write = os.write
    calls = []

    def short_once(fd, data):
        calls.append(len(data))
        return real_write(fd, bytes(data)[:5] if len(calls) == 1 else data)

    monkeypatch.setattr(os, "write", short_once)
    writer.append(b'{"whole":"batch"}\n{"n":2}\n')
    monkeypatch.setattr(os, "write", real_write)
    assert lines_in(spool_dir) == [b'{"whole":"batch"}\n', b'{"n":2}\n']
    assert [s.state for s in list_segments(spool_dir)] == [SegmentState.ACTIVE]


CREATE_STEPS = ["open", "flock", "rename", "fsync_dir"]
CREATE_ERRNOS = [errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EROFS, errno.EMFILE]


@pytest.mark.parametrize("err", CREATE_ERRNOS, ids=errno.errorcode.get)
@pytest.mark.parametrize("step", CREATE_STEPS)
def test_a_failed_segment_create_never_wedges_the_writer(make_writer, spool_dir, monkeypatch, step, err):
    """Defect 3: one failed step while creating a segment used to leave the hidden file behind;
    every later create then failed with EEXIST until a restart."""
    import spooler.segment_files as segment_files

    writer = make_writer(fsync=FsyncPolicy.INTERVAL)
    failures = {"left": 1}

    def failing(real, *, only=None):
        def hook(*args, **kwargs):
            if failures["left"] and (only is None or only(args)):
                failures["left"] -= 1
                raise OSError(err, os.strerror(err))
            return real(*args, **kwargs)
        return hook

    creating = lambda args: ".creating-" in str(args[0])  # noqa: E731
    if step == "open":
        monkeypatch.setattr(os, "open", failing(os.open, only=creating))
    elif step == "flock":
        monkeypatch.setattr(fcntl, "flock", failing(fcntl.flock))
    elif step == "rename":
        monkeypatch.setattr(os, "rename", failing(os.rename, only=creating))
    else:
        monkeypatch.setattr(segment_files, "fsync_dir", failing(segment_files.fsync_dir))
    with pytest.raises(SpoolUnwritable):
        writer.append(b'{"n":1}\n')
    assert writer.refusal() is not None
    writer.append(b'{"n":2}\n')  # resumes by itself
    assert writer.refusal() is None
    assert lines_in(spool_dir) == [b'{"n":2}\n'], "the refused append left nothing"
    assert not [p for p in os.listdir(spool_dir) if p.startswith(".creating-")], "no hidden file left behind"


def test_a_failed_fsync_is_final_for_its_segment(make_writer, spool_dir, monkeypatch):
    """Defect 5 (fsyncgate): Linux reports a failed fsync once and may drop the dirty pages; a later
    fsync then succeeds without them. Nobody whose bytes were in that segment may get a 201 after it."""
    writer = make_writer(fsync=FsyncPolicy.ALWAYS)
    writer.append(b'{"durable":0}\n')
    in_fsync, second_appended = threading.Event(), threading.Event()
    real_fdatasync = os.fdatasync
    fails = {"left": 1}

    def failing_fsync(fd):
        if fails["left"] and _is_regular(fd):
            fails["left"] -= 1
            in_fsync.set()
            assert second_appended.wait(5)
            raise OSError(errno.EIO, "Input/output error")
        return real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", failing_fsync)
    outcomes = {}

    def append(name):
        try:
            writer.append(b'{"%s":1}\n' % name.encode())
            outcomes[name] = "201"
        except AppendUncertain:
            outcomes[name] = "unknown"
        except AppendRefused:
            outcomes[name] = "refused"

    first = threading.Thread(target=append, args=("first",))
    first.start()
    assert in_fsync.wait(5)
    appended_before = writer.stats().appends
    second = threading.Thread(target=append, args=("second",))
    second.start()
    deadline = time.monotonic() + 5
    while writer.stats().appends == appended_before and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.02)  # let it reach the wait (it cannot lead: the first one's fsync is under way)
    second_appended.set()
    first.join(10)
    second.join(10)
    assert outcomes == {"first": "unknown", "second": "unknown"}, "no 201 for bytes of a failed fsync"
    append("third")
    assert outcomes["third"] == "201"
    segments = list_segments(spool_dir)
    assert [s.state for s in segments] == [SegmentState.SEALED, SegmentState.ACTIVE], "failed segment sealed"
    assert segments[1].path.read_bytes() == b'{"third":1}\n'


def test_a_failed_background_fsync_seals_the_segment(make_writer, spool_dir, monkeypatch):
    writer = make_writer(fsync=FsyncPolicy.INTERVAL, fsync_interval_seconds=0.05)
    real_fdatasync = os.fdatasync
    fails = {"left": 1}

    def failing_fsync(fd):
        if fails["left"] and _is_regular(fd):
            fails["left"] -= 1
            raise OSError(errno.EIO, "Input/output error")
        return real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", failing_fsync)
    writer.append(b'{"n":1}\n')
    deadline = time.monotonic() + 5
    while fails["left"] and time.monotonic() < deadline:
        time.sleep(0.01)
    deadline = time.monotonic() + 5
    while [s.state for s in list_segments(spool_dir)] != [SegmentState.SEALED] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [s.state for s in list_segments(spool_dir)] == [SegmentState.SEALED]
    writer.append(b'{"n":2}\n')
    assert [s.state for s in list_segments(spool_dir)] == [SegmentState.SEALED, SegmentState.ACTIVE]


def test_stale_creating_files_of_dead_writers_are_removed(spool_dir, make_writer):
    """Defect 6: a worker killed between creating and renaming its segment left ``.creating-…`` forever."""
    old = time.time() - 3600
    dead = spool_dir / ".creating-dead_w0_p1_x-00000001.active"
    young = spool_dir / ".creating-busy_w0_p2_x-00000001.active"
    held = spool_dir / ".creating-live_w0_p3_x-00000001.active"
    for path in (dead, young, held):
        path.touch()
    os.utime(dead, (old, old))
    os.utime(held, (old, old))
    fd = os.open(held, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        make_writer()
        names = set(os.listdir(spool_dir))
    finally:
        os.close(fd)
    assert dead.name not in names, "a dead writer's hidden file is removed"
    assert {young.name, held.name} <= names, "a locked or just-created one is left alone"


def test_dead_letters_and_an_archive_inside_the_spool_count_toward_the_cap(spool_dir, make_writer):
    """Defect 6: dead-letter/ (and an archive kept inside the spool) used to be invisible to the cap."""
    from spooler import write_dead_letter

    write_dead_letter(spool_dir, "w-00000001", 0, [b"x" * 600], "torn write")
    (spool_dir / "archive").mkdir()
    (spool_dir / "archive" / "w-00000000.ndjson.gz").write_bytes(b"z" * 300)
    writer = make_writer(max_spool_bytes=1200)
    writer.append(b'{"pad":"' + b"x" * 90 + b'"}\n')  # 101 bytes fit
    with pytest.raises(SpoolFull):
        writer.append(b'{"pad":"' + b"x" * 290 + b'"}\n')


def test_readiness_comes_back_by_itself_without_traffic_once_the_disk_recovers(make_writer, spool_dir, monkeypatch):
    """After a write error /readyz is unready, so a load balancer sends nothing that could clear it:
    the writer must find out by itself that the disk takes writes again."""
    writer = make_writer()
    writer.append(b'{"n":1}\n')
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(SpoolUnwritable):
        writer.append(b'{"n":2}\n')
    monkeypatch.setattr(os, "write", real_write)
    assert "unwritable" in writer.refusal()
    deadline = time.monotonic() + 10
    while writer.refusal() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.refusal() is None
    writer.append(b'{"n":3}\n')
    assert lines_in(spool_dir) == [b'{"n":1}\n', b'{"n":3}\n']
