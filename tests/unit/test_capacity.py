"""Capacity: what counts toward --max-spool-bytes, and counting it cheaply (hostile review of the spool,
findings 2 and 3)."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import spooler.tree_usage as tree_usage
from spooler.capacity import CapacityGuard, measure_usage
from spooler.tree_usage import TreeUsage


def full_walk(path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(folder, name)
            if not os.path.islink(full):
                total += os.lstat(full).st_size
    return total


def test_bytes_moved_into_an_archive_inside_the_spool_are_counted_by_the_scan_that_drops_the_segment(spool_dir):
    """Finding 2: the subdirectories were re-counted only every 2 s, so a segment the tailer moved into
    an archive inside the spool dropped out of the count at once and the cap was overshot 4.4x."""
    (spool_dir / "archive").mkdir()
    segment = spool_dir / "w-00000001.ndjson"
    segment.write_bytes(b'{"pad":"' + b"x" * 5000 + b'"}\n')
    guard = CapacityGuard(spool_dir, max_spool_bytes=10**9, min_free_bytes=0)
    before = guard.spool_bytes
    shutil.copyfile(segment, spool_dir / "archive" / ".w-00000001.ndjson.tmp")  # what archive_segment does
    os.replace(spool_dir / "archive" / ".w-00000001.ndjson.tmp", spool_dir / "archive" / segment.name)
    segment.unlink()
    guard.rescan()  # the append path's (never slow): it leaves this to the background scan
    assert guard.spool_bytes >= before, "the archived bytes are not counted"
    guard.update(guard.measure(), 0)  # the background scan
    assert guard.spool_bytes >= before, "the archived bytes are not counted"
    assert guard.spool_bytes == full_walk(spool_dir)


def test_an_unchanged_subdirectory_is_not_read_again(spool_dir, monkeypatch):
    """Finding 3: the walk of 200,000 dead letters held the writer's thread for seconds every 2 s."""
    folder = spool_dir / "dead-letter"
    folder.mkdir()
    for i in range(300):
        (folder / f"s-{i}@0.bin").write_bytes(b"x" * i)
    counter = TreeUsage(folder)
    assert counter.measure() == full_walk(folder)
    read = counter.entries_read
    assert counter.measure() == full_walk(folder)
    assert counter.entries_read > read, "a directory changed less than a second ago is read again"
    settled_clock = time.time_ns() + 5 * 10**9
    monkeypatch.setattr(tree_usage.time, "time_ns", lambda: settled_clock)
    counter.measure()
    read = counter.entries_read
    for _ in range(3):
        assert counter.measure() == full_walk(folder)
    assert counter.entries_read == read, "a settled, unchanged directory was read again"
    (folder / "new@0.bin").write_bytes(b"y" * 77)
    os.utime(folder, ns=(settled_clock - 4 * 10**9,) * 2)  # even if the clock tick did not move its mtime
    assert counter.measure() == full_walk(folder)


def test_a_file_still_being_written_is_measured_until_it_settles(spool_dir):
    folder = spool_dir / "archive"
    folder.mkdir()
    counter = TreeUsage(folder)
    growing = folder / ".w-00000001.ndjson.gz.tmp"
    with open(growing, "wb") as out:
        for _ in range(5):
            out.write(b"z" * 1000)
            out.flush()
            assert counter.measure() == full_walk(folder)


def test_the_reread_limit_holds_back_a_busy_directory_only_while_no_segment_left(spool_dir):
    guard = CapacityGuard(spool_dir, max_spool_bytes=10**9, min_free_bytes=0)
    (spool_dir / "dead-letter").mkdir()
    guard.update(guard.measure(), 0)
    (spool_dir / "dead-letter" / "a@0.bin").write_bytes(b"d" * 300)
    (spool_dir / "w-00000001.ndjson").write_bytes(b"{}\n")
    guard.update(guard.measure(), 0)  # may keep the old dead-letter count: read again within 2 s
    (spool_dir / "w-00000001.ndjson").unlink()
    guard.update(guard.measure(), 0)  # a segment left: every changed subdirectory is read now
    assert guard.spool_bytes == full_walk(spool_dir) == 300


def test_the_append_paths_rescan_credits_freed_bytes_at_once_when_no_subdirectory_changed(spool_dir, monkeypatch):
    """While refusing, an append re-measures (at most every 50 ms) so that appends resume as soon as the
    tailer deletes: that must stay quick, and exact when nothing moved into a subdirectory."""
    settled_clock = time.time_ns() + 5 * 10**9  # dead-letter/ has been quiet for a while
    monkeypatch.setattr(tree_usage.time, "time_ns", lambda: settled_clock)
    (spool_dir / "dead-letter").mkdir()
    (spool_dir / "dead-letter" / "a@0.bin").write_bytes(b"d" * 300)
    (spool_dir / "w-00000001.ndjson").write_bytes(b"x" * 1000)
    guard = CapacityGuard(spool_dir, max_spool_bytes=10**9, min_free_bytes=0)
    assert guard.spool_bytes == 1300
    (spool_dir / "w-00000001.ndjson").unlink()  # shipped and deleted
    guard.rescan()
    assert guard.spool_bytes == full_walk(spool_dir) == 300


# -- the counter against a full walk, over random trees -------------------------------------------------------

OPS = st.lists(st.tuples(st.sampled_from(["create", "grow", "rename", "unlink", "mkdir", "replace"]),
                         st.integers(0, 7), st.integers(0, 3000)), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, settled=st.booleans())
def test_the_counter_agrees_with_a_full_walk_after_any_changes(tmp_path_factory, ops, settled):
    """Files are written under a temporary name and renamed into place, never rewritten once settled
    (what the tailer does in dead-letter/ and an archive), in nested directories. ``settled``: the clock
    runs ahead, so every directory's stamp is trusted and every file taken as settled; a change then
    moves its directory's mtime explicitly (a real clock would, a tick later)."""
    root = tmp_path_factory.mktemp("tree")
    with pytest.MonkeyPatch.context() as monkeypatch:  # per example, not per test
        if settled:
            clock = time.time_ns() + 30 * 10**9
            monkeypatch.setattr(tree_usage.time, "time_ns", lambda: clock)
        _apply_and_compare(root, ops, settled=settled)


def _apply_and_compare(root, ops, *, settled: bool) -> None:
    dirs = [root]
    stamp = [time.time_ns() - 10**9]
    counter = TreeUsage(root)

    def touched(folder):
        stamp[0] += 1000
        os.utime(folder, ns=(stamp[0], stamp[0]))

    for op, pick, size in ops:
        folder = dirs[pick % len(dirs)]
        files = sorted(p for p in folder.iterdir() if p.is_file())
        if op == "create":
            (folder / f"f{len(files)}-{size}.tmp").write_bytes(b"x" * size)
        elif op == "grow" and not settled:
            tmps = [p for p in files if p.suffix == ".tmp"]
            if tmps:
                with open(tmps[pick % len(tmps)], "ab") as out:
                    out.write(b"g" * size)
            continue
        elif op == "rename" and files:
            source = files[pick % len(files)]
            os.replace(source, folder / (source.stem + f"-r{size}.bin"))
        elif op == "unlink" and files:
            files[pick % len(files)].unlink()
        elif op == "mkdir":
            new = folder / f"d{len(dirs)}"
            new.mkdir()
            dirs.append(new)
        elif op == "replace" and files:
            target = files[pick % len(files)]
            (folder / "incoming.tmp").write_bytes(b"r" * size)
            os.replace(folder / "incoming.tmp", target)
        else:
            continue
        touched(folder)
        assert counter.measure() == full_walk(root), f"after {op} in {folder.name}"
    assert measure_usage(root).other_bytes == full_walk(root) - sum(
        p.stat().st_size for p in root.iterdir() if p.is_file())
