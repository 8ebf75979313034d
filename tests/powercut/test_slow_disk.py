"""A slow disk and the append's GIL (spooler/append_write.py), on the power-cut disk.

A quick append keeps the GIL (nothing else in the process runs for the length of the
call: that is the point, docs/performance.md); a write that takes longer than
``SLOW_WRITE_SECONDS`` sends the next appends to ``os.write``, which releases it, so
that a throttling or stalling disk stops the worker for one write at most, not for
every one. The GIL is observed, not assumed: a thread stamps the clock in a loop,
and the longest gap between its stamps while an append runs says whether it could.
"""

from __future__ import annotations

import threading
import time

import pytest

from spooler import SpoolWriter, WriterConfig, append_write, list_segments

DELAY_SECONDS = 1.0

pytestmark = pytest.mark.skipif(append_write.libc_write is None, reason="no libc write through ctypes here")


@pytest.fixture(autouse=True)
def quick_disk():
    """The process's slow-disk state starts and ends clear (an earlier slow write of this process would
    have the appends release the GIL for a minute)."""
    append_write.SLOW_DISK.release_until = 0.0
    yield append_write.SLOW_DISK
    append_write.SLOW_DISK.release_until = 0.0


def _gaps_while(action) -> list[float]:
    """The pauses of a clock-stamping thread around ``action()`` (run in this thread)."""
    stamps: list[float] = []
    stop = threading.Event()

    def stamp() -> None:
        while not stop.is_set():
            stamps.append(time.monotonic())
            time.sleep(0.002)

    stamper = threading.Thread(target=stamp, daemon=True)
    stamper.start()
    while len(stamps) < 5:
        time.sleep(0.01)
    started = time.monotonic()
    action()
    ended = time.monotonic()
    time.sleep(0.05)
    stop.set()
    stamper.join(10)
    around = [t for t in stamps if t < started][-1:] + [t for t in stamps if started <= t <= ended]
    around += [t for t in stamps if t > ended][:1]
    return [b - a for a, b in zip(around, around[1:], strict=False)]


def _longest_gap_while(action) -> float:
    return max(_gaps_while(action))


def _frozen_while(action) -> float:
    """How long the stamping thread could not run while ``action()`` ran: its pauses of over 0.1 s, added up."""
    return sum(gap for gap in _gaps_while(action) if gap > 0.1)


def test_a_quick_append_keeps_the_gil_and_a_slow_one_hands_the_next_to_os_write(disk, fresh, quick_disk):
    spool = disk.new_dir(f"{fresh.name}-spool")
    writer = SpoolWriter(WriterConfig(spool_dir=spool, writer_id="w", min_free_bytes=0))
    try:
        writer.append(b'{"n":0}\n')  # the segment exists: the next appends are plain writes
        assert writer._write.keeps_gil
        slow_before = quick_disk.slow_writes
        disk.inject("write", disk.rel(spool) + "/*.active", delay_seconds=DELAY_SECONDS, times=1)
        held = _longest_gap_while(lambda: writer.append(b'{"n":1}\n'))
        assert held >= DELAY_SECONDS * 0.8, f"the GIL was released during a quick-path write (gap {held:.3f} s)"
        assert writer._write.slow_writes == quick_disk.slow_writes == slow_before + 1
        assert not writer._write.keeps_gil

        disk.inject("write", disk.rel(spool) + "/*.active", delay_seconds=DELAY_SECONDS, times=1)
        released = _longest_gap_while(lambda: writer.append(b'{"n":2}\n'))
        assert released < DELAY_SECONDS / 2, f"after a slow write the GIL was still held (gap {released:.3f} s)"
        assert writer._write.slow_writes == slow_before + 1, "a write that released the GIL is not timed"
    finally:
        disk.clear()
        writer.close()
    (segment,) = list_segments(spool)
    assert segment.path.read_bytes() == b'{"n":0}\n{"n":1}\n{"n":2}\n'


def test_a_disk_answering_eintr_slowly_again_and_again_never_holds_the_gil(disk, fresh):
    """Each write(2) returns EINTR after 0.3 s, 10 times (an interrupted network disk): the first call, with the
    GIL held, is the only freeze; the write is made again by os.write, with the GIL released, and lands once."""
    spool = disk.new_dir(f"{fresh.name}-spool")
    writer = SpoolWriter(WriterConfig(spool_dir=spool, writer_id="w", min_free_bytes=0))
    try:
        writer.append(b'{"n":0}\n')
        disk.inject("write", disk.rel(spool) + "/*.active", errno="EINTR", delay_seconds=0.3, times=10)
        frozen = _frozen_while(lambda: writer.append(b'{"n":1}\n'))
        assert frozen < 1.0, f"the retries after EINTR held the GIL (the worker stopped for {frozen:.2f} s in all)"
    finally:
        disk.clear()
        writer.close()
    (segment,) = list_segments(spool)
    assert segment.path.read_bytes() == b'{"n":0}\n{"n":1}\n'
