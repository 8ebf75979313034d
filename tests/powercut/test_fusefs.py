"""The power-cut disk itself: what survives a cut, and that every fault reaches the caller.

These pin the model (tests/fusefs/model.py) that every other power-cut test relies on;
each case is one that a pass-through file system without the model would get wrong.
"""

from __future__ import annotations

import errno
import os
import threading

import pytest

from tests.fusefs.model import FileNode


def write_file(path, data: bytes, *, fsync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_only_fsynced_bytes_survive(disk, fresh):
    fd = os.open(fresh / "f", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, b"kept\n")
    os.fdatasync(fd)
    os.write(fd, b"lost\n")
    fsync_dir(fresh)
    after = disk.cut(fresh)
    assert (after / "f").read_bytes() == b"kept\n"
    with pytest.raises(OSError) as frozen:
        os.write(fd, b"x\n")
    assert frozen.value.errno == errno.EIO, "the old disk is dead after the cut"
    os.close(fd)


def test_a_name_needs_a_directory_fsync(disk, fresh):
    write_file(fresh / "named", b"data\n", fsync=True)
    fsync_dir(fresh)
    write_file(fresh / "unnamed", b"data\n", fsync=True)  # content durable, name not
    after = disk.cut(fresh)
    assert sorted(os.listdir(after)) == ["named"]


def test_a_file_whose_name_is_durable_but_content_is_not_is_empty(disk, fresh):
    write_file(fresh / "f", b"never fsynced\n", fsync=False)
    fsync_dir(fresh)
    after = disk.cut(fresh)
    assert (after / "f").read_bytes() == b""


def test_rename_and_unlink_revert_without_a_directory_fsync(disk, fresh):
    write_file(fresh / "a", b"A\n", fsync=True)
    write_file(fresh / "b", b"B\n", fsync=True)
    fsync_dir(fresh)
    os.rename(fresh / "a", fresh / "a2")
    os.unlink(fresh / "b")
    after = disk.cut(fresh)
    assert sorted(os.listdir(after)) == ["a", "b"]
    assert (after / "b").read_bytes() == b"B\n"
    os.rename(after / "a", after / "a2")
    fsync_dir(after)
    assert sorted(os.listdir(disk.cut(after))) == ["a2", "b"]


def test_a_new_subdirectory_vanishes_with_its_files_unless_its_parent_is_fsynced(disk, fresh):
    (fresh / "sub").mkdir()
    write_file(fresh / "sub" / "f", b"x\n", fsync=True)
    fsync_dir(fresh / "sub")
    after = disk.cut(fresh)
    assert os.listdir(after) == []
    (after / "sub").mkdir()
    write_file(after / "sub" / "f", b"x\n", fsync=True)
    fsync_dir(after / "sub")
    fsync_dir(after)
    assert (disk.cut(after) / "sub" / "f").read_bytes() == b"x\n"


def test_a_failed_fsync_loses_its_bytes_for_good(disk, fresh):
    """fsyncgate: the next fsync succeeds but the bytes of the failed one are not on disk."""
    fd = os.open(fresh / "f", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    fsync_dir(fresh)
    os.write(fd, b"one\n")
    os.fsync(fd)
    os.write(fd, b"two\n")
    disk.inject("fsync", "*/f", errno="EIO", times=1)
    with pytest.raises(OSError) as failed:
        os.fsync(fd)
    assert failed.value.errno == errno.EIO
    os.write(fd, b"three\n")
    os.fsync(fd)  # "succeeds"
    os.close(fd)
    assert (fresh / "f").read_bytes() == b"one\ntwo\nthree\n", "the page cache still has it"
    assert (disk.cut(fresh) / "f").read_bytes() == b"one\n\0\0\0\0three\n", "the disk does not"


def test_a_truncate_is_content_until_fsynced(disk, fresh):
    write_file(fresh / "f", b"0123456789", fsync=True)
    fsync_dir(fresh)
    os.truncate(fresh / "f", 4)
    after = disk.cut(fresh)
    assert (after / "f").read_bytes() == b"0123456789"


FAULTS = [
    ("create", lambda d: os.open(d / "new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)),
    ("open", lambda d: os.open(d / "existing", os.O_RDONLY)),
    ("write", lambda d: write_file(d / "existing", b"x\n", fsync=False)),
    ("fsync", lambda d: write_file(d / "existing", b"x\n", fsync=True)),
    ("fsyncdir", lambda d: fsync_dir(d)),
    ("rename", lambda d: os.rename(d / "existing", d / "renamed")),
    ("unlink", lambda d: os.unlink(d / "existing")),
    ("mkdir", lambda d: os.mkdir(d / "sub")),
    ("truncate", lambda d: os.truncate(d / "existing", 0)),
    ("readdir", lambda d: os.listdir(d)),
    ("statfs", lambda d: os.statvfs(d)),
]
ERRNOS = ["ENOSPC", "EIO", "EFBIG", "EDQUOT", "EROFS"]


@pytest.mark.parametrize("err", ERRNOS)
@pytest.mark.parametrize(("op", "call"), FAULTS, ids=[f[0] for f in FAULTS])
def test_every_fault_reaches_the_caller_once_and_then_clears(disk, fresh, op, call, err):
    write_file(fresh / "existing", b"e\n", fsync=True)
    rule = disk.inject(op, f"{disk.rel(fresh)}*", errno=err, times=1)
    with pytest.raises(OSError) as failed:
        call(fresh)
    assert failed.value.errno == getattr(errno, err)
    assert disk.fired(rule) == 1
    result = call(fresh)  # the second time it works
    if isinstance(result, int):
        os.close(result)


@pytest.mark.parametrize("err", ["EIO", "ENOSPC"])
def test_a_flush_fault_is_what_close_returns_and_the_descriptor_is_closed_anyway(disk, fresh, err):
    """As NFS or a FUSE file system reports a deferred write error at close()."""
    fd = os.open(fresh / "f", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, b"x\n")
    rule = disk.inject("flush", "*/f", errno=err, times=1)
    with pytest.raises(OSError) as failed:
        os.close(fd)
    assert failed.value.errno == getattr(errno, err) and disk.fired(rule) == 1
    with pytest.raises(OSError) as closed:
        os.fstat(fd)
    assert closed.value.errno == errno.EBADF


def test_a_full_disk_refuses_growth_but_rewrites_in_place(disk, fresh):
    write_file(fresh / "f", b"0123456789", fsync=True)
    disk.inject("write", f"{disk.rel(fresh)}/*", errno="ENOSPC", grows_only=True)
    disk.inject("truncate", f"{disk.rel(fresh)}/*", errno="ENOSPC", grows_only=True)
    fd = os.open(fresh / "f", os.O_RDWR)
    try:
        assert os.pwrite(fd, b"abcde", 3) == 5
        with pytest.raises(OSError) as grown:
            os.pwrite(fd, b"XYZ", 9)
        assert grown.value.errno == errno.ENOSPC
        with pytest.raises(OSError):
            os.ftruncate(fd, 20)
        os.ftruncate(fd, 4)  # shrinking needs no block
    finally:
        os.close(fd)
    assert (fresh / "f").read_bytes() == b"012a"


def test_a_short_write_returns_its_count(disk, fresh):
    fd = os.open(fresh / "f", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    disk.inject("write", "*/f", short=True, times=1)
    assert os.write(fd, b"0123456789") == 5
    assert os.write(fd, b"abc") == 3
    os.close(fd)
    assert (fresh / "f").read_bytes() == b"01234abc"


def test_a_held_call_fails_when_the_power_goes_while_it_waits(disk, fresh):
    fd = os.open(fresh / "f", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, b"pending\n")
    fsync_dir(fresh)
    disk.inject("fsync", "*/f", hold=True, times=1)
    outcome = {}

    def fsync():
        try:
            os.fsync(fd)
            outcome["fsync"] = "ok"
        except OSError as exc:
            outcome["fsync"] = errno.errorcode[exc.errno]

    thread = threading.Thread(target=fsync)
    thread.start()
    disk.wait_held()
    after = disk.cut(fresh)
    thread.join(10)
    os.close(fd)
    assert outcome == {"fsync": "EIO"}
    assert (after / "f").read_bytes() == b""


def test_the_model_merges_and_subtracts_ranges():
    node = FileNode(b"abc")
    node.wrote(3, 5)
    node.wrote(5, 8)
    assert node.dirty == [(3, 8)]
    node.sync_failed()
    assert node.lost == [(3, 8)] and node.dirty == []
    node.wrote(4, 6)
    assert node.lost == [(3, 4), (6, 8)]
    node.synced(lambda s, e: b"Z" * (e - s), 9)
    assert bytes(node.durable) == b"abc\0ZZ\0\0\0"
