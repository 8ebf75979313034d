"""Review item 14: --exit-when-empty never exits 0 while a live writer holds the spool.

The class: every state a writer can be in when the spool's segments are all shipped — between two
segments (the last sealed, the next not created yet: no ``.active`` file), with an active segment, closed,
died without closing (its presence file left, unlocked). Invariant: the tailer exits 0 only when no live
writer is left, and then promptly; everything the writer wrote is shipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from spooler import FsyncPolicy, SpoolWriter, WriterConfig, list_segments
from spooler.presence import PRESENCE_PREFIX, live_writers
from tests.unit.test_shipper import FakeSink, make_shipper


def start(shipper):
    result = []
    runner = threading.Thread(target=lambda: result.append(shipper.run(threading.Event())), daemon=True)
    runner.start()
    return runner, result


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def writer_of(spool_dir, writer_id="live"):
    return SpoolWriter(WriterConfig(spool_dir, writer_id, segment_bytes=10**9, min_free_bytes=0,
                                    fsync=FsyncPolicy.NEVER))


@pytest.mark.parametrize("state", ["between segments", "active segment"])
def test_a_live_writer_keeps_the_tailer_running_until_it_closes(spool_dir, state):
    writer = writer_of(spool_dir)
    writer.append(b"".join(b'{"n":%d}\n' % i for i in range(100)))
    if state == "between segments":
        writer.seal()  # sealed; the next segment is created only by the next append
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink, exit_when_empty=True)
    runner, result = start(shipper)
    wait_for(lambda: len(sink.accepted) == 100 and not list_segments(spool_dir, probe=False)
             if state == "between segments" else len(sink.accepted) == 100)
    time.sleep(0.5)
    assert runner.is_alive() and not result, f"exited {result} while a writer is alive ({state})"
    writer.append(b'{"after":1}\n')
    writer.close()
    shipper.request_rescan()
    runner.join(20)
    assert result == [0]
    assert len(sink.accepted) == 101, "what the writer wrote meanwhile is shipped too"


def test_a_writer_that_died_does_not_keep_the_tailer_running(spool_dir):
    code = ("import sys, os; from pathlib import Path; from spooler import SpoolWriter, WriterConfig, FsyncPolicy;"
            "w = SpoolWriter(WriterConfig(Path(sys.argv[1]), 'dead', min_free_bytes=0, fsync=FsyncPolicy.NEVER));"
            "w.append(b'{\"d\":1}\\n'); w.seal(); os._exit(0)")
    subprocess.run([sys.executable, "-c", code, str(spool_dir)], check=True,
                   env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert [p for p in os.listdir(spool_dir) if p.startswith(PRESENCE_PREFIX)], "it left its presence file"
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink, exit_when_empty=True)
    runner, result = start(shipper)
    runner.join(20)
    assert result == [0] and sink.accepted == [b'{"d":1}\n']
    assert live_writers(spool_dir) == [] and not [p for p in os.listdir(spool_dir) if p.startswith(PRESENCE_PREFIX)]


def test_a_writer_is_present_from_its_start_to_its_close(spool_dir):
    writer = writer_of(spool_dir, "w1")
    assert live_writers(spool_dir) == ["w1"]
    writer.close()
    assert live_writers(spool_dir) == []
    assert not [p for p in os.listdir(spool_dir) if p.startswith(PRESENCE_PREFIX)]
