"""The spool under real processes: SIGKILL mid-append, many writers at once, orphans,
and checkpoints killed mid-write."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from spooler import (
    CHECKPOINT_FILE,
    CheckpointLocked,
    CheckpointStore,
    FsyncPolicy,
    SegmentState,
    SpoolWriter,
    WriterConfig,
    iter_chunks,
    list_segments,
    new_writer_id,
    read_checkpoint,
    remove_stale_creating,
    seal_orphan,
)
from tests.conftest import child_env, proc_cmd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "procs"))
from mixed_appender import run as run_appender  # noqa: E402


def all_records(spool_dir: Path) -> list[bytes]:
    out = []
    for segment in list_segments(spool_dir):
        for chunk in iter_chunks(segment.path):
            out.extend(chunk.data.splitlines())
    return out


def test_sigkill_mid_append_loses_no_acknowledged_record(spool_dir):
    rng = random.Random(7)
    acknowledged: dict[str, int] = {}
    for round_ in range(5):
        writer_id = f"crash{round_}"
        proc = subprocess.Popen(
            proc_cmd("appender.py", spool_dir, writer_id, 50_000, 3), stdout=subprocess.PIPE, env=child_env()
        )
        # Kill only once the child is appending: under load its start-up alone can take longer than
        # any fixed sleep (a kill before the first append proves nothing and used to fail the test).
        first = proc.stdout.readline()
        assert first.strip(), "the child started appending"
        time.sleep(0.05 + rng.random() * 0.5)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        acks = (first + out).split()
        acknowledged[writer_id] = int(acks[-1])

    states = {s.name.writer: s.state for s in list_segments(spool_dir)}
    assert set(states.values()) <= {SegmentState.SEALED, SegmentState.ORPHANED}
    assert SegmentState.ORPHANED in states.values(), "a killed writer leaves an orphaned segment"

    seen: dict[str, list[int]] = {}
    for line in all_records(spool_dir):
        record = json.loads(line)  # a torn tail would fail here: only whole lines come back
        seen.setdefault(record["w"], []).append(record["n"])
    for writer_id, last_ack in acknowledged.items():
        numbers = seen[writer_id]
        assert numbers == list(range(len(numbers))), "in order, no gaps, no duplicates"
        assert len(numbers) > last_ack, f"{writer_id}: acknowledged {last_ack}, found {len(numbers) - 1}"


def test_threads_and_processes_append_at_once_without_interleaving(spool_dir):
    count = 3000
    procs = [
        subprocess.Popen(proc_cmd("mixed_appender.py", spool_dir, f"proc{i}", count, 2), env=child_env())
        for i in range(3)
    ]
    config = WriterConfig(spool_dir, new_writer_id("threads"), segment_bytes=64 * 1024, min_free_bytes=0,
                          fsync=FsyncPolicy.NEVER)
    with SpoolWriter(config) as writer:
        run_appender(writer, "threads", count, 8)
    for proc in procs:
        assert proc.wait(timeout=120) == 0

    counts = Counter()
    for line in all_records(spool_dir):
        record = json.loads(line)
        assert record["pad"] == "y" * (record["n"] % 300), "line intact"
        counts[(record["tag"], record["n"])] += 1
    expected = {(tag, n) for tag in ["threads", "proc0", "proc1", "proc2"] for n in range(count)}
    assert set(counts) == expected
    assert set(counts.values()) == {1}, "every record exactly once"
    assert all(s.state is SegmentState.SEALED for s in list_segments(spool_dir))


def test_orphan_is_detected_only_when_its_writer_is_dead(spool_dir):
    alive = SpoolWriter(WriterConfig(spool_dir, "alive", min_free_bytes=0, fsync=FsyncPolicy.NEVER))
    alive.append(b"{}\n")
    proc = subprocess.Popen(proc_cmd("appender.py", spool_dir, "doomed", 10**9), stdout=subprocess.PIPE,
                            env=child_env())
    proc.stdout.readline()
    proc.kill()
    proc.wait()
    states = {s.name.writer: s for s in list_segments(spool_dir)}
    assert states["alive"].state is SegmentState.ACTIVE
    assert states["doomed"].state is SegmentState.ORPHANED
    assert seal_orphan(states["alive"]) is None, "a live writer's segment is never sealed by others"
    sealed = seal_orphan(states["doomed"])
    assert sealed.state is SegmentState.SEALED and sealed.path.name.endswith(".ndjson")
    alive.close()


def test_checkpoint_killed_mid_write_leaves_old_or_new(spool_dir):
    rng = random.Random(3)
    last_seen = 0
    for _ in range(25):
        proc = subprocess.Popen(proc_cmd("checkpointer.py", spool_dir), stdout=subprocess.PIPE, env=child_env())
        proc.stdout.readline()
        time.sleep(rng.random() * 0.05)
        proc.kill()
        out, _ = proc.communicate()
        offsets = read_checkpoint(spool_dir)  # raises on a corrupt or empty file
        assert len(offsets) == 50 and len(set(offsets.values())) == 1
        generation = next(iter(offsets.values()))
        assert generation >= last_seen, "never goes back to an older checkpoint"
        last_seen = generation
    # A kill between the save's renames leaves the new checkpoint as the spare (read_checkpoint takes it);
    # the next store puts the names back.
    with CheckpointStore(spool_dir) as store:
        assert next(iter(store.offsets.values())) == last_seen
    assert json.loads((spool_dir / CHECKPOINT_FILE).read_bytes())["version"] == 1


def test_second_tailer_process_is_refused(spool_dir):
    proc = subprocess.Popen(proc_cmd("checkpointer.py", spool_dir), stdout=subprocess.PIPE, env=child_env())
    try:
        proc.stdout.readline()
        with pytest.raises(CheckpointLocked):
            CheckpointStore(spool_dir)
    finally:
        proc.kill()
        proc.wait()
    CheckpointStore(spool_dir).close()


def test_sealing_waits_for_concurrent_appends(spool_dir):
    """Threads appending while segments roll at a tiny size: no sealed segment grows after sealing."""
    config = WriterConfig(spool_dir, "roll", segment_bytes=500, min_free_bytes=0, fsync=FsyncPolicy.NEVER)
    sizes_at_seal: dict[str, int] = {}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            for segment in list_segments(spool_dir, probe=False):
                if segment.state is SegmentState.SEALED:
                    sizes_at_seal.setdefault(segment.segment_id, segment.size)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with SpoolWriter(config) as writer:
        run_appender(writer, "roll", 2000, 6)
    stop.set()
    watcher.join()
    final = {s.segment_id: s.size for s in list_segments(spool_dir)}
    for segment_id, size in sizes_at_seal.items():
        assert final[segment_id] == size, f"{segment_id} grew after it was sealed"
    assert len(all_records(spool_dir)) == 2000
    assert os.listdir(spool_dir)


def test_creating_files_are_removed_only_once_their_writer_is_dead(spool_dir):
    """Defect 6: a worker killed between creating and renaming its segment leaves ``.creating-…``.
    It is removed once nobody holds its lock — never while its (frozen) writer still does."""
    proc = subprocess.Popen(proc_cmd("stuck_creating.py", spool_dir, "frozen"), stdout=subprocess.PIPE,
                            env=child_env())
    try:
        assert proc.stdout.readline() == b"stuck\n"
        [hidden] = [p for p in os.listdir(spool_dir) if p.startswith(".creating-")]
        assert remove_stale_creating(spool_dir, older_than_seconds=0) == [], "its writer still holds it"
        assert hidden in os.listdir(spool_dir)
    finally:
        proc.kill()
        proc.wait()
    # Its presence file (spooler/presence.py) goes with it: the writer is dead.
    assert remove_stale_creating(spool_dir, older_than_seconds=0) == [hidden, ".writer-frozen.lock"]
    assert os.listdir(spool_dir) == []
