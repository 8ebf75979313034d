"""append_all: one request's lines in several route spools, all of them or (refused) none of them."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from spooler import (
    AppendUncertain,
    FsyncPolicy,
    SpoolFull,
    SpoolUnwritable,
    SpoolWriter,
    WriterConfig,
    append_all,
)
from tests.helpers import spool_lines


@pytest.fixture
def writers(tmp_path):
    made = []

    def make(name: str, cap: int = 1 << 30) -> SpoolWriter:
        writer = SpoolWriter(WriterConfig(tmp_path / name, "w", max_spool_bytes=cap, min_free_bytes=0,
                                          fsync=FsyncPolicy.NEVER))
        made.append(writer)
        return writer

    yield make
    for writer in made:
        writer.close()


def test_every_part_lands_in_its_own_spool(writers):
    a, b = writers("a"), writers("b")
    append_all([(a, b"1\n2\n"), (b, b"3\n")])
    assert spool_lines(a.config.spool_dir) == [b"1\n", b"2\n"] and spool_lines(b.config.spool_dir) == [b"3\n"]


def test_a_full_route_refuses_the_whole_request_and_nothing_is_written_anywhere(writers):
    a, b = writers("a"), writers("b", cap=100)
    b.append(b"x" * 95 + b"\n")
    for order in ([(a, b"1\n"), (b, b"too much\n")], [(b, b"too much\n"), (a, b"1\n")]):
        with pytest.raises(SpoolFull):
            append_all(order)
    assert spool_lines(a.config.spool_dir) == []


def test_a_disk_refusal_before_anything_is_written_is_none_after_is_unknown(writers, monkeypatch):
    a, b, c, d = (writers(name) for name in "abcd")
    for writer in (a, b, c, d):
        writer.append(b"first\n")  # each has its segment open
    failing: set[int] = set()
    real_write = os.write

    def write(fd, data):
        if fd in failing:
            raise OSError(errno.EIO, "injected")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    failing.add(a._fd)
    with pytest.raises(SpoolUnwritable):  # the first part refused: nothing of the request anywhere
        append_all([(a, b"a\n"), (b, b"b\n")])
    assert spool_lines(b.config.spool_dir) == [b"first\n"]
    failing.add(d._fd)
    with pytest.raises(AppendUncertain, match="1 of 2 parts written"):  # c's part is in: "unknown"
        append_all([(c, b"c\n"), (d, b"d\n")])
    assert spool_lines(c.config.spool_dir) == [b"first\n", b"c\n"]


def test_a_concurrent_append_cannot_take_the_room_between_the_check_and_the_write(writers, monkeypatch):
    """The race: request 1 needs routes A and B; request 2 fills B after request 1 checked B's room.

    Request 1's write to A is held until request 2 has either finished (no lock across the routes: it
    would fill B and request 1 would end half-written) or is seen to wait. Whatever the timing, request 1
    is written whole and request 2 is refused with nothing written."""
    a, b = writers("a"), writers("b", cap=200)
    b.append(b"x" * 50 + b"\n")
    second: dict = {}
    request_2 = threading.Thread(target=lambda: _capture(second, b.append, b"y" * 120 + b"\n"))
    real = a._write_locked

    def slow_write(fd, data):
        request_2.start()
        request_2.join(0.5)  # without the lock held over B it finishes here, having taken B's room
        return real(fd, data)

    monkeypatch.setattr(a, "_write_locked", slow_write)
    append_all([(a, b"from request 1\n"), (b, b"z" * 100 + b"\n")])
    request_2.join(10)
    assert spool_lines(a.config.spool_dir) == [b"from request 1\n"]
    assert b"z" * 100 + b"\n" in spool_lines(b.config.spool_dir)
    assert isinstance(second.get("error"), SpoolFull), second


def _capture(out: dict, fn, *args) -> None:
    try:
        fn(*args)
    except Exception as exc:  # the test inspects what the other request got
        out["error"] = exc


def test_two_requests_in_opposite_route_order_never_deadlock(writers):
    a, b = writers("a"), writers("b")
    errors = []

    def hammer(parts):
        try:
            for _ in range(2000):
                append_all(parts)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=([(a, b"a\n"), (b, b"b\n")],)),
               threading.Thread(target=hammer, args=([(b, b"b\n"), (a, b"a\n")],))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "deadlocked"
    assert not errors
    assert len(spool_lines(a.config.spool_dir)) == 4000 == len(spool_lines(b.config.spool_dir))


def test_one_part_per_writer_and_complete_lines(writers):
    a = writers("a")
    with pytest.raises(ValueError):
        append_all([(a, b"1\n"), (a, b"2\n")])
    with pytest.raises(ValueError):
        append_all([(a, b"no newline"), (writers("b"), b"1\n")])


def _always(tmp_path, name: str) -> SpoolWriter:
    return SpoolWriter(WriterConfig(tmp_path / name, "w", max_spool_bytes=1 << 30, min_free_bytes=0,
                                    fsync=FsyncPolicy.ALWAYS))


def test_a_failed_seal_fsync_of_one_part_while_another_part_is_syncing_is_never_a_success(tmp_path, monkeypatch):
    """Route a's fsync is slow; meanwhile route b's segment is sealed and its fsync fails.

    The request's part in b was never made durable: append_all must say "unknown"
    (AppendUncertain), not return (a 201). Before append_all registered its parts,
    b's poisoned range was forgotten at once (no registered waiter) and the wait on
    b returned as if durable (found by the hostile review, F1).
    """
    a, b = _always(tmp_path, "a"), _always(tmp_path, "b")
    try:
        a.append(b'{"warm":"a"}\n')
        b.append(b'{"warm":"b"}\n')
        real_fdatasync, real_fsync = os.fdatasync, os.fsync
        a_syncing, b_sealed = threading.Event(), threading.Event()

        def fdatasync(fd):
            if a._active is not None and fd == a._active.fd and not b_sealed.is_set():
                a_syncing.set()
                b_sealed.wait(10)
            return real_fdatasync(fd)

        def fsync(fd):
            if b._active is not None and fd == b._active.fd:
                raise OSError(errno.EIO, "Input/output error")
            return real_fsync(fd)

        monkeypatch.setattr(os, "fdatasync", fdatasync)
        monkeypatch.setattr(os, "fsync", fsync)

        def seal_b():
            assert a_syncing.wait(10)
            b.seal()
            b_sealed.set()

        sealer = threading.Thread(target=seal_b)
        sealer.start()
        with pytest.raises(AppendUncertain, match="fsync failed"):
            append_all([(a, b'{"n":1}\n'), (b, b'{"n":1}\n')], sync=True)
        sealer.join(10)
        assert b._commit.failure_count == 1
        assert a._commit.registered_waits == 0 and b._commit.registered_waits == 0
    finally:
        monkeypatch.undo()
        a.close()
        b.close()


def test_no_wait_is_left_registered_after_synced_requests_that_succeed_or_fail(tmp_path, monkeypatch):
    """Every multi-route synced request ends its waits: none piles up (memory, and the poisoned-range scan)."""
    a, b, c = _always(tmp_path, "a"), _always(tmp_path, "b"), _always(tmp_path, "c")
    try:
        for _ in range(200):
            append_all([(a, b"1\n"), (b, b"2\n"), (c, b"3\n")])
        failing = {"write": False}
        real_write = os.write

        def write(fd, data):
            if failing["write"] and c._active is not None and fd == c._active.fd:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", write)
        failing["write"] = True
        with pytest.raises(AppendUncertain):  # a and b written and registered, then c refused
            append_all([(a, b"1\n"), (b, b"2\n"), (c, b"3\n")])
        for writer in (a, b, c):
            assert writer._commit.registered_waits == 0
    finally:
        monkeypatch.undo()
        for writer in (a, b, c):
            writer.close()
