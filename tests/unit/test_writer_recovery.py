"""The writer after the disk failed it: readiness tells the truth, the probe proves the disk, a failed
fsync is never followed by another fsync of the same segment, close() never fails an append, and no
failed-fsync record is forgotten while a waiter may still ask about it (hostile review of the spool)."""

from __future__ import annotations

import errno
import os
import stat
import threading
import time

import pytest

import spooler.writer as writer_module
from spooler import AppendUncertain, FsyncPolicy, SegmentState, SpoolUnwritable, list_segments
from tests.unit.test_writer import lines_in

PROBE_SECONDS = 0.03


@pytest.fixture(autouse=True)
def _fast_probe(monkeypatch):
    monkeypatch.setattr(writer_module, "RECOVERY_PROBE_SECONDS", PROBE_SECONDS)


def _is_regular(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def _eio(*_args):
    raise OSError(errno.EIO, "Input/output error")


def _readiness_over(writer, seconds: float) -> set[str | None]:
    """Every answer /readyz would give over ``seconds`` (many probe periods)."""
    seen = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.add(writer.refusal())
        time.sleep(PROBE_SECONDS / 3)
    return seen


def _wait_ready(writer, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while writer.refusal() is not None:
        assert time.monotonic() < deadline, f"still unready: {writer.refusal()}"
        time.sleep(0.01)


def _failing_for_regular_files(real, failing):
    """``os.fsync``/``os.fdatasync`` that fail for files (not directories) while ``failing['on']``."""
    def hook(fd):
        if failing["on"] and _is_regular(fd):
            raise OSError(errno.EIO, "Input/output error")
        return real(fd)
    return hook


def test_readiness_stays_off_while_every_fsync_fails(make_writer, spool_dir, monkeypatch):
    """Review finding 5: with every fsync failing, every request got a 503 "unknown" while /readyz
    said 200 (and each request left a new segment). The writer is unready until the disk is proven."""
    writer = make_writer(fsync=FsyncPolicy.ALWAYS)
    writer.append(b'{"n":0}\n')
    failing = {"on": True}
    monkeypatch.setattr(os, "fsync", _failing_for_regular_files(os.fsync, failing))
    monkeypatch.setattr(os, "fdatasync", _failing_for_regular_files(os.fdatasync, failing))
    with pytest.raises(AppendUncertain):
        writer.append(b'{"n":1}\n')
    seen = _readiness_over(writer, 20 * PROBE_SECONDS)
    assert None not in seen, "ready while every fsync fails"
    assert all("fsync" in why for why in seen), seen
    failing["on"] = False
    _wait_ready(writer)
    writer.append(b'{"n":2}\n')


def test_a_later_segments_fsync_clears_the_fsync_trouble(make_writer, monkeypatch):
    writer = make_writer(fsync=FsyncPolicy.ALWAYS)
    monkeypatch.setattr(writer_module, "probe_disk", _eio)  # only an append's fsync can clear it here
    failing = {"on": True}
    monkeypatch.setattr(os, "fdatasync", _failing_for_regular_files(os.fdatasync, failing))
    with pytest.raises(AppendUncertain):
        writer.append(b'{"n":1}\n')
    assert "fsync" in writer.refusal()
    failing["on"] = False
    writer.append(b'{"n":2}\n')  # a new segment, fsynced
    assert writer.refusal() is None


def test_the_probe_proves_the_disk_with_data_not_with_an_empty_file(make_writer, spool_dir, monkeypatch):
    """Review finding 6: every data write failing (EDQUOT: a block quota) while creates work; the probe
    called the spool writable after creating an empty segment, and each cycle left one behind."""
    writer = make_writer()
    writer.append(b'{"n":0}\n')
    real_write = os.write

    def quota_exceeded(fd, data):
        if _is_regular(fd):
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", quota_exceeded)
    with pytest.raises(SpoolUnwritable):
        writer.append(b'{"n":1}\n')
    seen = _readiness_over(writer, 20 * PROBE_SECONDS)
    assert None not in seen, "ready while no data write can succeed"
    assert len(list_segments(spool_dir)) <= 2, "each probe cycle left an empty segment behind"
    monkeypatch.setattr(os, "write", real_write)
    _wait_ready(writer)
    writer.append(b'{"n":2}\n')
    assert lines_in(spool_dir) == [b'{"n":0}\n', b'{"n":2}\n']
    assert not [p for p in os.listdir(spool_dir) if p.startswith(".probe-")], "the probe file is removed"


def test_the_probe_keeps_an_empty_segment_instead_of_sealing_it(make_writer, spool_dir, monkeypatch):
    """A write error on a segment that holds nothing: recovering must not seal it and open another."""
    writer = make_writer()
    writer.append(b'{"n":0}\n')
    writer.seal()
    real_write = os.write
    failing = {"on": True}

    def failing_segment_write(fd, data):
        if failing["on"] and _is_regular(fd) and os.fstat(fd).st_size == 0 and not data.startswith(b'{"probe"'):
            raise OSError(errno.EIO, "Input/output error")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_segment_write)
    with pytest.raises(SpoolUnwritable):
        writer.append(b'{"n":1}\n')  # the new, empty segment refuses it
    before = [s.segment_id for s in list_segments(spool_dir)]
    failing["on"] = False
    _wait_ready(writer)
    time.sleep(5 * PROBE_SECONDS)
    assert [s.segment_id for s in list_segments(spool_dir)] == before, "the empty segment was kept, nothing new"
    writer.append(b'{"n":2}\n')
    assert [s.state for s in list_segments(spool_dir)] == [SegmentState.SEALED, SegmentState.ACTIVE]


def test_a_segment_whose_fsync_failed_is_never_fsynced_again(make_writer, spool_dir, monkeypatch):
    """Review finding 4: the seal's later, successful fsync made durable the bytes appended after the
    failed fdatasync, behind the lost range: zeros glued to an event after a power cut."""
    writer = make_writer(fsync=FsyncPolicy.ALWAYS)
    real_fsync, real_fdatasync = os.fsync, os.fdatasync
    failed_inode = {}
    fsynced_after = []

    def fdatasync_fails_once(fd):
        if _is_regular(fd) and not failed_inode:
            failed_inode["ino"] = os.fstat(fd).st_ino
            raise OSError(errno.EIO, "Input/output error")
        return real_fdatasync(fd)

    def watching_fsync(real):
        def hook(fd):
            if failed_inode and _is_regular(fd) and os.fstat(fd).st_ino == failed_inode["ino"]:
                fsynced_after.append(fd)
            return real(fd)
        return hook

    monkeypatch.setattr(os, "fdatasync", watching_fsync(fdatasync_fails_once))
    monkeypatch.setattr(os, "fsync", watching_fsync(real_fsync))
    with pytest.raises(AppendUncertain):
        writer.append(b'{"n":1}\n')
    writer.append(b'{"n":2}\n')  # seals the failed segment first, in a new one itself
    writer.close()
    assert failed_inode, "the fault fired"
    assert fsynced_after == [], "the segment whose fsync failed was fsynced again (at its seal)"
    assert [s.state for s in list_segments(spool_dir)] == [SegmentState.SEALED, SegmentState.SEALED]


def test_a_close_that_reports_an_error_never_fails_an_append(make_writer, spool_dir, monkeypatch):
    """Review finding 9: close() of a sealed segment reporting EIO (NFS, a FUSE flush) escaped append
    as a bare OSError: a 500."""
    writer = make_writer(segment_bytes=40)
    real_close = os.close

    def close_reports_eio(fd):
        regular = _is_regular(fd)
        real_close(fd)
        if regular:
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "close", close_reports_eio)
    for n in range(6):  # every other append seals the segment before it (and closes it)
        writer.append(b'{"n":%d,"pad":"xxxxxxxxxx"}\n' % n)
    monkeypatch.setattr(os, "close", real_close)
    assert len(lines_in(spool_dir)) == 6
    assert len(list_segments(spool_dir)) >= 3


def test_a_failed_fsync_is_never_forgotten_while_its_waiter_may_still_ask(make_writer, monkeypatch):
    """Review (reading only): group commit kept at most 1000 failed-fsync records; one evicted while its
    waiter had not asked yet let that waiter get a 201 for bytes whose fsync failed."""
    writer = make_writer(fsync=FsyncPolicy.NEVER)
    real_fdatasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: _eio() if _is_regular(fd) else real_fdatasync(fd))
    held, go = threading.Event(), threading.Event()
    real_wait = writer._commit.wait_durable

    def late_waiter(seq, **options):
        if threading.current_thread().name == "late":
            held.set()
            assert go.wait(30)
        return real_wait(seq, **options)

    monkeypatch.setattr(writer._commit, "wait_durable", late_waiter)
    outcome = {}

    def append_late():
        try:
            writer.append(b'{"late":1}\n', sync=True)
            outcome["late"] = "201"
        except AppendUncertain:
            outcome["late"] = "unknown"

    late = threading.Thread(target=append_late, name="late")
    late.start()
    assert held.wait(10)  # its bytes are appended; it has not asked yet
    writer._fsync_interval()  # the background fsync fails for them (and seals nothing yet)
    for n in range(1005):  # more failures than the old bound, each on a segment of its own
        with pytest.raises(AppendUncertain):
            writer.append(b'{"n":%d}\n' % n, sync=True)
    go.set()
    late.join(30)
    assert outcome == {"late": "unknown"}, "a 201 for bytes whose fsync failed"
    assert writer._commit.poisoned_ranges <= 2, "settled failure records pile up"
