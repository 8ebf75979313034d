"""The append's write keeping the GIL (spooler/append_write.py) against ``os.write``, its reference.

Real descriptors only: every errno comes from the kernel (``/dev/full``, a read-only
descriptor, a closed one, a pipe with no reader, a full non-blocking pipe), a short
write from a pipe with room for less than the data, ``EINTR`` from a real signal
interrupting a blocked write. The power-cut disk (tests/powercut/test_slow_disk.py)
covers a slow disk and the GIL itself.
"""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spooler import append_write
from spooler.append_write import (
    KEEP_GIL_MAX_BYTES,
    RELEASE_FOR_SECONDS,
    SLOW_DISK,
    SLOW_WRITE_SECONDS,
    AppendWrite,
    SlowDisk,
)

pytestmark = pytest.mark.skipif(append_write.libc_write is None, reason="no libc write through ctypes here")


def _read_only(tmp_path):
    path = tmp_path / "ro"
    path.write_bytes(b"")
    return os.open(path, os.O_RDONLY)


def _closed(_tmp_path):
    fd = os.open(os.devnull, os.O_WRONLY)
    os.close(fd)
    return fd


def _no_reader(_tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


def _full_pipe(_tmp_path):
    _read_end, write_end = os.pipe()  # the read end stays open (and leaks for the test's life)
    os.set_blocking(write_end, False)
    while True:
        try:
            os.write(write_end, b"x" * 65536)
        except BlockingIOError:
            return write_end


FAILING = {
    "ENOSPC (/dev/full)": (lambda _t: os.open("/dev/full", os.O_WRONLY), errno.ENOSPC),
    "EBADF (read-only)": (_read_only, errno.EBADF),
    "EBADF (closed)": (_closed, errno.EBADF),
    "EPIPE (no reader)": (_no_reader, errno.EPIPE),
    "EAGAIN (full pipe)": (_full_pipe, errno.EAGAIN),
}


@pytest.mark.parametrize("case", list(FAILING))
def test_a_failing_write_raises_what_os_write_raises(tmp_path, case):
    """The same exception class (BlockingIOError, BrokenPipeError, ...), errno and message as os.write."""
    make, expected = FAILING[case]
    caught = {}
    for name, write in [("os.write", os.write), ("append write", AppendWrite())]:
        fd = make(tmp_path)
        with pytest.raises(OSError) as info:
            write(fd, b'{"a":1}\n')
        caught[name] = (type(info.value), info.value.errno, info.value.strerror)
    assert caught["os.write"] == caught["append write"]
    assert caught["os.write"][1] == expected


def _small_pipe(capacity: int) -> tuple[int, int]:
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, capacity)
    os.set_blocking(write_end, False)
    return read_end, write_end


def test_a_short_write_returns_the_count_written_as_os_write_does():
    page = os.sysconf("SC_PAGE_SIZE")
    data = b"y" * (page + 1000)  # more than the pipe holds: the kernel takes what fits
    counts = []
    for write in (os.write, AppendWrite()):
        read_end, write_end = _small_pipe(page)
        counts.append(write(write_end, data))
        assert os.read(read_end, 2 * page) == data[:counts[-1]]
        os.close(read_end)
        os.close(write_end)
    assert counts[0] == counts[1] == page


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=KEEP_GIL_MAX_BYTES + 5000), min_size=1, max_size=6))
def test_appends_land_byte_for_byte_as_with_os_write(tmp_path_factory, pieces):
    """Small bytes go through libc with the GIL held, larger ones and bytearrays through os.write."""
    folder = tmp_path_factory.mktemp("land")
    write = AppendWrite()
    files = {}
    for name, writer in [("reference", os.write), ("append", write)]:
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for n, piece in enumerate(pieces):
                data = bytearray(piece) if n % 3 == 2 else piece
                assert writer(fd, data) == len(piece)
        finally:
            os.close(fd)
        files[name] = path.read_bytes()
    assert files["append"] == files["reference"] == b"".join(pieces)


_EINTR_CHILD = r"""
import os, signal, sys, time
from spooler.append_write import AppendWrite, libc_write
read_end, write_end = os.pipe()
os.set_blocking(write_end, False)
while True:
    try:
        os.write(write_end, b"x" * 65536)
    except BlockingIOError:
        break
os.set_blocking(write_end, True)
fired = []
signal.signal(signal.SIGALRM, lambda *_: fired.append(1))
signal.siginterrupt(signal.SIGALRM, True)
if os.fork() == 0:  # the reader: drains the pipe once the write has been interrupted
    os.close(write_end)
    time.sleep(0.6)
    while os.read(read_end, 1 << 20):
        pass
    os._exit(0)
os.close(read_end)
signal.setitimer(signal.ITIMER_REAL, 0.2)
written = AppendWrite()(write_end, b"z" * 100)
os.close(write_end)
os.wait()
print(written, len(fired))
"""


def test_a_write_interrupted_by_a_signal_is_made_again():
    """A blocked write, a real SIGALRM (EINTR), then room: the write completes, as os.write's (PEP 475)."""
    out = subprocess.run([sys.executable, "-c", _EINTR_CHILD], capture_output=True, text=True, timeout=60,
                         check=True).stdout.split()
    assert out == ["100", "1"], out


def test_the_interrupted_call_really_saw_eintr():
    """The set-up of the test above does interrupt libc's write (else that test would prove nothing)."""
    child = _EINTR_CHILD.replace("written = AppendWrite()(write_end, b\"z\" * 100)",
                                 "import ctypes\n"
                                 "libc = ctypes.PyDLL(None, use_errno=True)\n"
                                 "libc.write.restype = ctypes.c_ssize_t\n"
                                 "written = libc.write(write_end, b'z' * 100, 100)\n"
                                 "written = (written, ctypes.get_errno())")
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    assert out.split()[:2] == ["(-1,", f"{errno.EINTR})"], out


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _SlowLibc:
    """A GIL-keeping write that takes ``took`` seconds of the fake clock."""

    def __init__(self, clock: _Clock) -> None:
        self.clock, self.took, self.calls = clock, 0.0, 0

    def __call__(self, fd: int, data: bytes, n: int) -> int:
        self.calls += 1
        self.clock.now += self.took
        return os.write(fd, data)


def _fake(tmp_path, slow_disk: SlowDisk | None = None, name: str = "seg"):
    clock = _Clock()
    libc = _SlowLibc(clock)
    fd = os.open(tmp_path / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return clock, libc, fd, AppendWrite(clock=clock, gil_keeping_write=libc, slow_disk=slow_disk or SlowDisk())


def test_a_slow_write_sends_the_next_writes_to_os_write_for_a_while(tmp_path):
    clock, libc, fd, write = _fake(tmp_path)
    write(fd, b"a\n")
    assert libc.calls == 1 and write.keeps_gil
    libc.took = SLOW_WRITE_SECONDS * 1.5
    write(fd, b"b\n")
    assert libc.calls == 2 and write.slow_writes == 1 and not write.keeps_gil
    libc.took = 0.0
    clock.now += RELEASE_FOR_SECONDS - 1
    write(fd, b"c\n")
    assert libc.calls == 2, "within the period: os.write, the GIL released"
    clock.now += 1
    assert write.keeps_gil
    write(fd, b"d\n")
    assert libc.calls == 3, "after it: the GIL kept again"
    assert (tmp_path / "seg").read_bytes() == b"a\nb\nc\nd\n"


def test_one_slow_write_releases_the_gil_for_every_writer_of_the_process(tmp_path):
    """Several writers (routes) on one slow disk: one freeze per period for all of them, not one each."""
    shared = SlowDisk()
    clock, libc, fd, first = _fake(tmp_path, shared, "a")
    other_libc = _SlowLibc(clock)
    second = AppendWrite(clock=clock, gil_keeping_write=other_libc, slow_disk=shared)
    other_fd = os.open(tmp_path / "b", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    libc.took = 1.0
    first(fd, b"a\n")
    assert not second.keeps_gil
    second(other_fd, b"b\n")
    assert other_libc.calls == 0 and shared.slow_writes == 1


def test_a_write_just_under_the_threshold_is_not_slow(tmp_path):
    _clock, libc, fd, write = _fake(tmp_path)
    libc.took = SLOW_WRITE_SECONDS * 0.9
    for _ in range(5):
        write(fd, b"a\n")
    assert libc.calls == 5 and write.slow_writes == 0


def test_a_slow_failing_write_counts_as_slow(tmp_path):
    clock, libc, _fd, write = _fake(tmp_path)
    libc.took = 1.0
    with pytest.raises(OSError) as info:
        write(os.open("/dev/full", os.O_WRONLY), b"a\n")
    assert info.value.errno == errno.ENOSPC
    assert write.slow_writes == 1 and not write.keeps_gil


@pytest.mark.parametrize("data", [bytearray(b"a\n"), memoryview(b"a\n"), b"x" * (KEEP_GIL_MAX_BYTES + 1)],
                         ids=["bytearray", "memoryview", "over 64 KiB"])
def test_what_is_not_small_bytes_goes_to_os_write(tmp_path, data):
    _clock, libc, fd, write = _fake(tmp_path)
    assert write(fd, data) == len(data)
    assert libc.calls == 0
    assert (tmp_path / "seg").read_bytes() == bytes(data)


def test_a_replaced_os_write_is_honoured(tmp_path, monkeypatch):
    """Fault layers (and tracers) replace os.write: the writer's appends go through them."""
    _clock, libc, fd, write = _fake(tmp_path)
    seen = []
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: seen.append(bytes(data)) or real(fd, data))
    write(fd, b"a\n")
    assert seen == [b"a\n"] and libc.calls == 0


def test_the_spool_writer_appends_keeping_the_gil(tmp_path):
    """Production wiring: a writer's small appends take the GIL-keeping path (libc through ctypes.PyDLL)."""
    from spooler import SpoolWriter, WriterConfig

    writer = SpoolWriter(WriterConfig(spool_dir=tmp_path, writer_id="w", min_free_bytes=0))
    try:
        assert writer._write._libc_write is append_write.libc_write and writer._write._slow is SLOW_DISK
        writer.append(b'{"a":1}\n')
    finally:
        writer.close()
