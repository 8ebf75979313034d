from __future__ import annotations

import errno
import gzip
import json
import os
import stat
import time

import pytest

from spooler import (
    CHECKPOINT_FILE,
    CheckpointCorrupt,
    CheckpointLocked,
    CheckpointStore,
    archive_segment,
    count_dead_letters,
    prune_archive,
    read_checkpoint,
    write_dead_letter,
)


def test_checkpoint_round_trip_is_versioned(spool_dir):
    with CheckpointStore(spool_dir) as store:
        store.save({"w-00000001": 120})
    doc = json.loads((spool_dir / CHECKPOINT_FILE).read_text())
    assert doc["version"] == 1 and doc["segments"] == {"w-00000001": 120}
    with CheckpointStore(spool_dir) as again:
        assert again.offsets == {"w-00000001": 120}


def test_second_store_on_the_same_spool_is_refused(spool_dir):
    with CheckpointStore(spool_dir), pytest.raises(CheckpointLocked, match="only one tailer"):
        CheckpointStore(spool_dir)
    CheckpointStore(spool_dir).close()  # free again once the first is closed


def test_corrupt_checkpoint_is_an_error_not_a_silent_reset(spool_dir):
    (spool_dir / CHECKPOINT_FILE).write_text("{not json")
    with pytest.raises(CheckpointCorrupt):
        read_checkpoint(spool_dir)


def test_intact_temp_file_is_used_when_the_stable_file_is_missing(spool_dir):
    (spool_dir / (CHECKPOINT_FILE + ".tmp")).write_text(json.dumps({"version": 1, "segments": {"a-00000001": 5}}))
    assert read_checkpoint(spool_dir) == {"a-00000001": 5}


def test_dead_letters_keep_bytes_and_reason_idempotently(spool_dir):
    write_dead_letter(spool_dir, "w-00000001", 40, [b"torn", b" tail"], "torn write")
    path = write_dead_letter(spool_dir, "w-00000001", 40, [b"torn tail"], "torn write")
    assert path.read_bytes() == b"torn tail"
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["reason"] == "torn write" and meta["length"] == 9
    assert count_dead_letters(spool_dir) == 1


def test_archive_gzips_then_removes_and_prunes_oldest(tmp_path, spool_dir):
    archive = tmp_path / "archive"
    paths = []
    for i in range(3):
        seg = spool_dir / f"w-{i:08d}.ndjson"
        seg.write_bytes(b'{"i":%d}\n' % i * 1000)
        paths.append(archive_segment(seg, archive))
        assert not seg.exists()
        os.utime(paths[-1], (time.time() - 100 + i, time.time() - 100 + i))
    assert gzip.decompress(paths[0].read_bytes()) == b'{"i":0}\n' * 1000
    removed = prune_archive(archive, max_bytes=paths[2].stat().st_size, max_age_seconds=None)
    assert removed == paths[:2]
    assert prune_archive(archive, max_bytes=None, max_age_seconds=10) == paths[2:]


@pytest.mark.parametrize("partial", [b"", b'{"version": 1, "segm', b"\x00" * 40], ids=["empty", "cut", "zeros"])
def test_a_temp_file_that_does_not_parse_was_never_the_checkpoint(spool_dir, partial):
    """Defect 4: a crash during the very first checkpoint write left a partial temp file and no
    stable file; the tailer then refused to start until someone deleted it by hand."""
    (spool_dir / (CHECKPOINT_FILE + ".tmp")).write_bytes(partial)
    assert read_checkpoint(spool_dir) == {}
    with CheckpointStore(spool_dir) as store:
        assert store.offsets == {}
        store.save({"w-00000001": 7})
    assert read_checkpoint(spool_dir) == {"w-00000001": 7}


def test_a_partial_temp_file_never_hides_the_stable_checkpoint(spool_dir):
    with CheckpointStore(spool_dir) as store:
        store.save({"w-00000001": 9})
    (spool_dir / (CHECKPOINT_FILE + ".tmp")).write_bytes(b'{"version": 1, "seg')
    assert read_checkpoint(spool_dir) == {"w-00000001": 9}


def test_a_corrupt_stable_file_with_a_corrupt_temp_file_is_still_an_error(spool_dir):
    (spool_dir / CHECKPOINT_FILE).write_text("{not json")
    (spool_dir / (CHECKPOINT_FILE + ".tmp")).write_text("{nor this")
    with pytest.raises(CheckpointCorrupt, match="checkpoint.json"):
        read_checkpoint(spool_dir)


# -- a full disk, torn rewrites, interrupted saves (hostile review of the spool, finding 8) --------------------

def _full_disk(monkeypatch):
    """Every write that would make a file larger fails with ENOSPC (a disk with no free block left);
    rewriting allocated bytes in place still works."""
    real_write, real_pwrite = os.write, os.pwrite

    def grows(fd, length, offset=None):
        st = os.fstat(fd)
        start = st.st_size if offset is None else offset
        return stat.S_ISREG(st.st_mode) and start + length > st.st_size

    def write(fd, data):
        if grows(fd, len(data)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    def pwrite(fd, data, offset):
        if grows(fd, len(data), offset):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "pwrite", pwrite)


def test_the_checkpoint_can_still_be_saved_when_the_disk_is_full(spool_dir, monkeypatch):
    """Finding 8: with the disk full, writing checkpoint.json.tmp failed with ENOSPC; deleting shipped
    segments (the only way to free the disk) waits for a checkpoint, so nothing was ever freed."""
    with CheckpointStore(spool_dir) as store:
        store.save({"w-00000001": 100, "w-00000002": 0})
        _full_disk(monkeypatch)
        for n in range(5):
            store.save({"w-00000001": 100 + n, "w-00000002": 7 * n})
    monkeypatch.undo()
    assert read_checkpoint(spool_dir) == {"w-00000001": 104, "w-00000002": 28}
    with CheckpointStore(spool_dir) as again:  # starts on a full disk too (the pid is best effort)
        assert again.offsets == {"w-00000001": 104, "w-00000002": 28}


def test_a_tailer_starts_on_a_full_disk(spool_dir, monkeypatch):
    (spool_dir / "checkpoint.lock").write_bytes(b"")
    _full_disk(monkeypatch)
    with CheckpointStore(spool_dir) as store:
        assert store.offsets == {}


def test_a_rewrite_in_place_torn_at_any_sector_never_reads_as_a_checkpoint(spool_dir):
    """The spare is rewritten in place; a power cut may leave new sectors before old ones. No such mix
    parses (the CRC comes first), so a load falls back to the other file: old or new, never a third."""
    old = {f"writer_w0_p1_abc-{i:08d}": 1000 + i for i in range(200)}
    new = {f"writer_w0_p1_abc-{i:08d}": 2999 + i for i in range(200)}
    with CheckpointStore(spool_dir) as store:
        store.save(old)
        store.save(new)  # checkpoint.json: new; the spare: old
    spare = (spool_dir / (CHECKPOINT_FILE + ".tmp")).read_bytes()
    stable = (spool_dir / CHECKPOINT_FILE).read_bytes()
    assert len(spare) == len(stable) >= 16 * 1024
    for cut in range(512, len(stable), 512):
        mixed = stable[:cut] + spare[cut:]
        if mixed in (stable, spare):
            continue
        (spool_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
        (spool_dir / (CHECKPOINT_FILE + ".tmp")).write_bytes(mixed)
        assert read_checkpoint(spool_dir) == {}, f"a rewrite torn at byte {cut} read as a checkpoint"


class _Crash(BaseException):
    """The machine stopped here (not an OSError: nothing may handle it)."""


@pytest.mark.parametrize("step", range(5))
def test_a_save_interrupted_at_any_step_leaves_the_old_or_the_new_checkpoint(spool_dir, monkeypatch, step):
    with CheckpointStore(spool_dir) as store:
        store.save({"w-00000001": 1})
        store.save({"w-00000001": 2})
    calls = {"n": 0}
    real_fsync, real_replace = os.fsync, os.replace

    def crash_at(real):
        def hook(*args):
            calls["n"] += 1
            if calls["n"] > step:
                raise _Crash
            return real(*args)
        return hook

    store = CheckpointStore(spool_dir)
    monkeypatch.setattr(os, "fsync", crash_at(real_fsync))  # the spare's fsync, then the directory's
    monkeypatch.setattr(os, "replace", crash_at(real_replace))  # the three renames in between
    with pytest.raises(_Crash):
        store.save({"w-00000001": 3})
    monkeypatch.undo()
    store.close()
    assert read_checkpoint(spool_dir) in ({"w-00000001": 2}, {"w-00000001": 3})
    with CheckpointStore(spool_dir) as again:  # puts the names back
        assert again.offsets in ({"w-00000001": 2}, {"w-00000001": 3})
        assert sorted(p.name for p in spool_dir.iterdir()) == ["checkpoint.json", "checkpoint.json.tmp",
                                                               "checkpoint.lock"]
        again.save({"w-00000001": 4})
    assert read_checkpoint(spool_dir) == {"w-00000001": 4}


def test_a_failed_archive_write_leaves_no_partial_file_behind(tmp_path, spool_dir, monkeypatch):
    """A failed archive write (ENOSPC, EFBIG) left its temp file until a retry succeeded: on a full disk
    it held the very space the retry needed."""
    archive = tmp_path / "archive"
    segment = spool_dir / "w-00000001.ndjson"
    segment.write_bytes(b'{"i":1}\n' * 5000)
    real_fsync = os.fsync

    def efbig(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EFBIG, "File too large")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", efbig)
    with pytest.raises(OSError):
        archive_segment(segment, archive, compress=False)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert os.listdir(archive) == [], "a partial archive temp file was left behind"
    assert segment.exists(), "the segment stays until its archive is complete"
