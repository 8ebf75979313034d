from __future__ import annotations

import json
import subprocess
import sys

import pytest

from spooler import CheckpointStore, FsyncPolicy, SpoolWriter, WriterConfig, write_dead_letter
from tests.conftest import child_env, proc_cmd


def spoolship(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spoolship", *args], capture_output=True, text=True,
                          env=child_env(), timeout=60)


def test_status_reports_segments_behind_writers_and_dead_letters(spool_dir):
    sealed = SpoolWriter(WriterConfig(spool_dir, "done", min_free_bytes=0, fsync=FsyncPolicy.NEVER))
    sealed.append(b'{"n":1}\n' * 10)
    sealed.close()
    live = SpoolWriter(WriterConfig(spool_dir, "live", min_free_bytes=0, fsync=FsyncPolicy.NEVER))
    live.append(b'{"n":2}\n' * 5)
    dead = subprocess.Popen(proc_cmd("appender.py", spool_dir, "dead", 10**9), stdout=subprocess.PIPE,
                            env=child_env())
    dead.stdout.readline()
    dead.kill()
    dead.wait()
    with CheckpointStore(spool_dir) as store:
        store.save({"done-00000001": 40})
    write_dead_letter(spool_dir, "x-00000001", 0, [b"junk"], "torn")

    result = spoolship("status", "--spool-dir", str(spool_dir), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    states = {s["segment"].split("-")[0]: s["state"] for s in report["segments"]}
    assert states == {"done": "sealed", "live": "active", "dead": "orphaned"}
    done = next(s for s in report["segments"] if s["segment"] == "done-00000001")
    assert done["shipped_bytes"] == 40 and done["bytes"] == 80
    assert report["bytes_behind"] == report["bytes_total"] - 40
    assert report["writers_alive"] == 1 and report["writers_orphaned"] == 1
    assert report["dead_letters"] == 1 and report["tailer_running"] is False

    table = spoolship("status", "--spool-dir", str(spool_dir))
    assert "1 alive, 1 orphaned" in table.stdout and "dead letters   1" in table.stdout
    live.close()
    assert (spool_dir / "dead-00000001.active").exists(), "status is read-only: it never seals an orphan"


@pytest.mark.parametrize("how", ["replaced", "rewritten in place"])
def test_status_counts_a_segment_replaced_under_its_name_as_unshipped(spool_dir, how):
    """Review 2 and 4: the offset belongs to the file it was saved for; another inode under the name, or the
    same inode rewritten, is shipped by the tailer from its first byte, so status must not call it shipped."""
    from tailer.identity import head_digest

    writer = SpoolWriter(WriterConfig(spool_dir, "old", min_free_bytes=0, fsync=FsyncPolicy.NEVER))
    writer.append(b'{"n":1}\n' * 10)
    writer.close()
    path = spool_dir / "old-00000001.ndjson"
    with CheckpointStore(spool_dir) as store:
        store.save({"old-00000001": 80}, {"old-00000001": {"ino": path.stat().st_ino, "head_bytes": 8,
                                                           "head": head_digest(path.read_bytes()[:8])}})
    shipped = json.loads(spoolship("status", "--spool-dir", str(spool_dir), "--json").stdout)
    assert shipped["bytes_behind"] == 0
    if how == "replaced":
        aside = spool_dir / ".aside"
        aside.write_bytes(b'{"n":2}\n' * 10)
        aside.rename(path)  # a new inode under the same name
    else:
        with open(path, "r+b") as f:  # the same inode
            f.write(b'{"n":2}\n' * 10)
    replaced = json.loads(spoolship("status", "--spool-dir", str(spool_dir), "--json").stdout)
    [segment] = replaced["segments"]
    assert segment["shipped_bytes"] == 0 and replaced["bytes_behind"] == 80, replaced
