"""`spoolship tail --exit-when-empty`: the scale-down rescue of a spool no receiver writes to any more.

Issue 17 item 3, end to end against a local Kinesis server: a spool with sealed and orphaned segments and a
checkpoint → exit 0, spool empty, every line in the stream, nothing re-sent that the checkpoint covered.
"""

from __future__ import annotations

import subprocess
from collections import Counter

from spooler import CheckpointStore, count_dead_letters, list_segments, read_checkpoint
from tests.conftest import child_env, proc_cmd
from tests.helpers import Proc, write_segments


def orphan_from_a_killed_writer(spool_dir, writer_id: str, lines_at_least: int) -> list[bytes]:
    """A real writer process appends, then is SIGKILLed: its .active segment is an orphan nobody holds."""
    proc = subprocess.Popen(proc_cmd("appender.py", spool_dir, writer_id, 10**9), stdout=subprocess.PIPE,
                            env=child_env(), text=True)
    for _ in range(lines_at_least):
        proc.stdout.readline()
    proc.kill()
    proc.wait()
    [segment] = [s for s in list_segments(spool_dir) if s.name.writer == writer_id]
    data = segment.path.read_bytes()
    return data[:data.rfind(b"\n") + 1].splitlines(keepends=True)


def test_exit_when_empty_ships_from_the_checkpoint_then_exits_0_with_the_spool_empty(moto, spool_dir):
    stream = moto.create_stream(shards=2)
    sealed = write_segments(spool_dir, "sealed", 3000, segment_bytes=64 * 1024)
    orphaned = orphan_from_a_killed_writer(spool_dir, "killed", 500)
    segments = {s.segment_id: s for s in list_segments(spool_dir)}
    assert any(s.state.value == "orphaned" for s in segments.values())
    first_sealed = min(sid for sid in segments if sid.startswith("sealed"))
    orphan_id = next(sid for sid in segments if sid.startswith("killed"))
    covered_sealed = sealed[:100]  # all in the first segment (~540 lines each)
    covered_orphan = orphaned[:50]
    with CheckpointStore(spool_dir) as store:  # a previous tailer shipped this much before the pod went away
        store.save({first_sealed: len(b"".join(covered_sealed)), orphan_id: len(b"".join(covered_orphan))})

    tailer = Proc("tail", "--spool-dir", str(spool_dir), "--stream", stream, "--endpoint-url", moto.endpoint,
                  "--exit-when-empty", "--linger", "0.05", "--poll-interval", "0.5")
    code = tailer.process.wait(120)
    tailer._reader.join(5)
    assert code == 0, "".join(tailer.raw[-30:])
    assert any(r.get("event") == "spool empty; exiting" for r in tailer.logs)

    assert not list_segments(spool_dir, probe=False), "spool empty"
    assert read_checkpoint(spool_dir) == {}
    assert count_dead_letters(spool_dir) <= 1, "at most the killed writer's torn last line"
    delivered = Counter(moto.read_lines(stream))
    expected = sealed[len(covered_sealed):] + orphaned[len(covered_orphan):]
    assert all(delivered[line] == 1 for line in expected), "every line after the checkpoint, once"
    assert not any(delivered[line] for line in covered_sealed + covered_orphan), "nothing the checkpoint covered"
    assert sum(delivered.values()) == len(expected)


def test_exit_when_empty_on_an_empty_spool_exits_0_at_once(moto, spool_dir):
    stream = moto.create_stream(shards=1)
    tailer = Proc("tail", "--spool-dir", str(spool_dir), "--stream", stream, "--endpoint-url", moto.endpoint,
                  "--exit-when-empty")
    assert tailer.process.wait(60) == 0
