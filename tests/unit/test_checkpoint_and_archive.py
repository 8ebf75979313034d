from __future__ import annotations

import gzip
import json
import os
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
