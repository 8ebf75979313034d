"""Power cuts at the exact moments the hostile review of the spool found, forced by the disk (held,
delayed or failed calls) or by a lock the test holds — never by luck.

- an orphan the tailer sealed keeps every byte (its writer died between interval fsyncs);
- the interval fsync is never held up by a slow capacity scan;
- after a failed fsync, no later fsync makes bytes durable behind the lost ones (a hole of zeros);
- a full disk still lets the tailer checkpoint and delete what it shipped;
- a cut at every step of a checkpoint save leaves the old or the new checkpoint, and the tailer starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time

import pytest

from spooler import (
    CheckpointStore,
    FsyncPolicy,
    SpoolWriter,
    WriterConfig,
    list_segments,
    new_writer_id,
    read_checkpoint,
)
from tailer import Shipper, TailerConfig
from tailer.errors import Unavailable
from tests.powercut.machine import MemorySink, complete_lines

INTERVAL_SECONDS = 0.05
INTERVAL_MARGIN_SECONDS = 0.25  # as in test_power_cuts.py


def fsync_dir(path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DownSink:
    """Kinesis unreachable: the backlog stays in the spool."""

    def put_records(self, records):
        time.sleep(0.01)
        raise Unavailable("kinesis down (test)", code="HTTP503")

    def close(self) -> None:
        pass


def tailer_config(spool, **overrides) -> TailerConfig:
    settings = {"linger_seconds": 0.005, "poll_interval_seconds": 0.02, "checkpoint_interval_seconds": 0.0,
                "max_backoff_seconds": 0.05, "drain_timeout_seconds": 10}
    settings.update(overrides)
    return TailerConfig(spool, "s", **settings)


def step_until(shipper: Shipper, done, timeout: float = 20.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{message} not reached within {timeout}s"
        if not shipper.ship_once():
            time.sleep(0.005)


def event_ids(spool) -> set[int]:
    return {json.loads(line)["n"] for line in complete_lines(spool)}


def test_an_orphan_the_tailer_sealed_keeps_every_byte_through_a_cut(disk, fresh):
    """Finding 1: a writer SIGKILLed between interval fsyncs leaves its last appends in the page cache
    only; the tailer sealed the orphan (rename, directory fsync) without fsyncing it, and nobody ever
    did: a cut seconds later lost every one of those 201s."""
    spool = disk.new_dir(f"{fresh.name}-spool")
    path = spool / "dead_w0_p1_x-00000001.active"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    fsync_dir(spool)  # its name is durable (the writer's create did that), its appends are not
    for n in range(10):
        os.write(fd, b'{"n":%d}\n' % n)
    os.close(fd)  # the process is gone, and its flock with it
    shipper = Shipper(tailer_config(spool), DownSink())
    try:
        step_until(shipper, lambda: [s.state.value for s in list_segments(spool)] == ["sealed"],
                   message="the orphan sealed")
    finally:
        shipper.close()
    after = disk.cut(spool)
    assert event_ids(after) == set(range(10)), "the orphan's bytes were not made durable when it was sealed"


def test_the_interval_fsync_never_waits_behind_a_slow_capacity_scan(disk, fresh):
    """Finding 3: the interval fsync ran on the thread that also scans capacity (a slow listing of a
    huge dead-letter/ held it for seconds); a cut then lost 201s far older than the interval."""
    spool = disk.new_dir(f"{fresh.name}-spool")
    writer = SpoolWriter(WriterConfig(spool, new_writer_id("slow"), fsync=FsyncPolicy.INTERVAL,
                                      fsync_interval_seconds=INTERVAL_SECONDS, segment_age_seconds=600,
                                      min_free_bytes=0))
    acked: dict[int, float] = {}
    try:
        writer.append(b'{"n":0}\n')
        acked[0] = time.monotonic()
        rule = disk.inject("statfs", disk.rel(spool), delay_seconds=1.5)  # every capacity scan takes 1.5 s
        started = time.monotonic()
        n = 1
        while time.monotonic() - started < 1.6 or not disk.fired(rule):
            writer.append(b'{"n":%d}\n' % n)
            acked[n] = time.monotonic()
            n += 1
            time.sleep(0.005)
        cut_at = time.monotonic()
        after = disk.cut(spool)
    finally:
        disk.clear()
        writer.close()
    lost = set(acked) - event_ids(after)
    oldest = max((cut_at - acked[n] for n in lost), default=0.0)
    assert oldest <= INTERVAL_SECONDS + INTERVAL_MARGIN_SECONDS, (
        f"{len(lost)} events lost, the oldest acknowledged {oldest:.2f}s before the cut")


def test_after_a_failed_fsync_no_later_fsync_makes_bytes_durable_behind_the_lost_ones(disk, fresh):
    """Finding 4: an append landing between the failed fdatasync and the writer's noting it went into
    the failing segment; the seal's later fsync made it durable right after the lost (zeroed) range,
    and after a cut the tailer shipped NUL bytes glued to that event. Forced: the disk holds the
    failing fsync, the test holds group commit's lock while the leader comes back from it."""
    spool = disk.new_dir(f"{fresh.name}-spool")
    writer = SpoolWriter(WriterConfig(spool, new_writer_id("hole"), fsync=FsyncPolicy.INTERVAL,
                                      fsync_interval_seconds=3600, min_free_bytes=0))
    try:
        writer.append(b'{"n":1}\n')
        disk.inject("fsync", "*.active", errno="EIO", hold=True, times=1)
        tick = threading.Thread(target=writer._fsync_interval)  # the interval fsync's tick, now
        tick.start()
        disk.wait_held()
        with writer._commit._cond:  # the leader, back from its failed fdatasync, waits for this lock
            disk.clear()  # releases the held fsync: it fails with EIO
            while disk.held():
                time.sleep(0.001)
            time.sleep(0.05)
            writer.append(b'{"n":2}\n')  # a 201: no sync asked
        tick.join(10)
        writer.append(b'{"n":3}\n')  # a new segment
        writer.close()
        after = disk.cut(spool)
    finally:
        writer.close()
    raw = b"".join(segment.path.read_bytes() for segment in list_segments(after, probe=False))
    assert b"\0" not in raw, "bytes made durable behind a hole"
    assert event_ids(after) >= {3}


def _write_sealed(spool, writer_id: str, count: int) -> None:
    with SpoolWriter(WriterConfig(spool, writer_id, segment_bytes=10**6, min_free_bytes=0,
                                  fsync=FsyncPolicy.ALWAYS)) as writer:
        for n in range(count):
            writer.append(b'{"n":%d,"w":"%s"}\n' % (n, writer_id.encode()))


def test_a_full_disk_still_lets_the_tailer_checkpoint_and_delete(disk, fresh):
    """Finding 8: with the disk full the checkpoint's temp file could not be written, and deleting what
    was shipped (the only way to free the disk) waits for a checkpoint: nothing was ever deleted."""
    spool = disk.new_dir(f"{fresh.name}-spool")
    _write_sealed(spool, "a", 20)
    sink = MemorySink()
    shipper = Shipper(tailer_config(spool), sink)
    try:
        step_until(shipper, lambda: not list_segments(spool), message="the first segment shipped")
        _write_sealed(spool, "b", 30)
        _write_sealed(spool, "c", 30)
        # The disk is full: nothing can grow a file or make a new one; rewriting in place still works.
        disk.inject("write", f"{disk.rel(spool)}/*", errno="ENOSPC", grows_only=True)
        disk.inject("truncate", f"{disk.rel(spool)}/*", errno="ENOSPC", grows_only=True)
        disk.inject("create", f"{disk.rel(spool)}/*", errno="ENOSPC")
        disk.inject("mkdir", f"{disk.rel(spool)}/*", errno="ENOSPC")
        step_until(shipper, lambda: not list_segments(spool), message="every shipped segment deleted")
    finally:
        shipper.close()
    assert len(sink.accepted) == 80
    after = disk.cut(spool)
    assert read_checkpoint(after) == {}, "the checkpoint after the cut is the last one saved"
    with CheckpointStore(after):  # the tailer starts again on the full disk
        pass


STEPS = {
    "spare fsync": ("fsync", "/checkpoint.json.tmp", {}),
    "stable to old": ("rename", "/checkpoint.json*", {}),
    "spare to stable": ("rename", "/checkpoint.json*", {"skip": 1}),
    "old to spare": ("rename", "/checkpoint.json*", {"skip": 2}),
    "directory fsync": ("fsyncdir", "", {}),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_a_cut_at_any_step_of_a_checkpoint_save_leaves_the_old_or_the_new_one(disk, fresh, step):
    spool = disk.new_dir(f"{fresh.name}-spool")
    with CheckpointStore(spool) as store:
        store.save({"w-00000001": 1})
        store.save({"w-00000001": 2})
        op, path, options = STEPS[step]
        disk.inject(op, disk.rel(spool) + path, hold=True, times=1, **options)
        saver = threading.Thread(target=lambda: _save_expecting_the_power_cut(store, {"w-00000001": 3}))
        saver.start()
        disk.wait_held()
        after = disk.cut(spool)
        saver.join(10)
    disk.clear()
    assert read_checkpoint(after) in ({"w-00000001": 2}, {"w-00000001": 3})
    with CheckpointStore(after) as again:
        assert again.offsets in ({"w-00000001": 2}, {"w-00000001": 3})
        again.save({"w-00000001": 4})
    assert read_checkpoint(disk.cut(after)) == {"w-00000001": 4}


def _save_expecting_the_power_cut(store: CheckpointStore, offsets: dict[str, int]) -> None:
    with contextlib.suppress(OSError):  # the power went while it was held: EIO
        store.save(offsets)
