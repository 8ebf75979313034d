from __future__ import annotations

import json
import subprocess
import sys

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
