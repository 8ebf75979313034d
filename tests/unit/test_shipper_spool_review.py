"""The tailer's side of the hostile review of the spool: holes, archives inside the spool, empty
segments, descriptors whose close reports an error."""

from __future__ import annotations

import errno
import json
import os

import pytest

from spooler import (
    DEAD_LETTER_DIR,
    FsyncPolicy,
    SpoolUnwritable,
    SpoolWriter,
    WriterConfig,
    list_segments,
    read_checkpoint,
)
from tailer import TailerConfig
from tailer.kpl import deaggregate, is_aggregated
from tests.unit.test_shipper import FakeSink, make_shipper, run_until, write_lines


@pytest.mark.parametrize("aggregate", [False, True], ids=["plain", "aggregated"])
def test_a_line_with_nul_bytes_is_dead_lettered_never_shipped(spool_dir, aggregate):
    """Finding 4: after a failed fsync and a power cut a segment held zeros (the lost range) glued to
    the next event, and the tailer shipped the zeros as part of a record."""
    event = b'{"n":2,"note":"appended after the failed fsync"}\n'
    good = [b'{"n":1}\n', b'{"n":3}\n']
    (spool_dir / "w-00000001.ndjson").write_bytes(good[0] + b"\0" * 300 + event + good[1])
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink, aggregate=aggregate, drain_timeout_seconds=10)
    assert shipper.drain() == 0
    shipped = [line for record in sink.accepted
               for line in ([data for _key, data in deaggregate(record)] if is_aggregated(record) else [record])]
    assert not [line for line in shipped if b"\0" in line], "NUL bytes reached the stream"
    assert sorted(shipped) == good
    kept = [p for p in (spool_dir / DEAD_LETTER_DIR).glob("*.bin")]
    assert [p.read_bytes() for p in kept] == [b"\0" * 300 + event], "the event behind the hole is kept whole"
    reason = json.loads(kept[0].with_suffix(".json").read_text())["reason"]
    assert "NUL" in reason
    assert not list_segments(spool_dir, probe=False)


def _archive_bytes(archive) -> int:
    return sum(p.stat().st_size for p in archive.iterdir() if p.is_file())


def test_the_archive_is_pruned_right_after_each_archiving(spool_dir):
    """Finding 2: the archive was pruned only every 60 s; inside the spool it counts toward the
    receivers' cap, so the spool stayed 'full' for a minute while it grew past --archive-max-bytes."""
    archive = spool_dir / "archive"
    budget = 3000
    shipper = make_shipper(spool_dir, FakeSink(), archive_dir=archive, archive_gzip=False,
                           archive_max_bytes=budget)
    for writer in ("a", "b", "c", "d", "e"):
        write_lines(spool_dir, writer, 80)
        run_until(shipper, lambda: not list_segments(spool_dir, probe=False))
        assert _archive_bytes(archive) <= budget, f"the archive holds {_archive_bytes(archive)} bytes"


def test_an_archive_inside_the_spool_without_a_byte_limit_is_refused_at_start_up(spool_dir, tmp_path):
    with pytest.raises(ValueError, match="--archive-max-bytes"):
        TailerConfig(spool_dir, "s", archive_dir=spool_dir / "archive")
    with pytest.raises(ValueError, match="inside the spool"):
        TailerConfig(spool_dir, "s", archive_dir=spool_dir / "a" / "b", archive_max_age_seconds=60)
    TailerConfig(spool_dir, "s", archive_dir=spool_dir / "archive", archive_max_bytes=10**6)
    TailerConfig(spool_dir, "s", archive_dir=tmp_path / "elsewhere")


@pytest.mark.parametrize("how", ["same path", "relative", "through a symlink", "route archive = route spool"])
def test_an_archive_that_is_the_spool_itself_is_refused_at_start_up(spool_dir, tmp_path, monkeypatch, how):
    """Review 3, finding 1: --archive-dir equal to the spool was taken for "an archive inside the spool";
    pruning then deleted unshipped sealed segments, live writers' .active files and the checkpoint (4,500
    of 7,750 acknowledged events lost, exit 0). With routes, --archive-dir <spool root> gives every route
    the archive <root>/<route>: its own spool."""
    if how == "route archive = route spool":
        import tomllib

        from spoolship.config_file import parse_plan

        plan = parse_plan(tomllib.loads(
            '[routes.events]\ndestination = "main"\n[destinations.main]\ntype = "kinesis"\nstream = "s"\n'),
            tmp_path / "c.toml", spool_dir=spool_dir, check_destinations=False)
        with pytest.raises(ValueError, match="is the spool itself"):
            plan.tailer_configs(archive_dir=spool_dir, archive_max_bytes=10**6)
        return
    archive = {"same path": spool_dir, "relative": None, "through a symlink": tmp_path / "link"}[how]
    if how == "relative":
        monkeypatch.chdir(spool_dir.parent)
        archive = type(spool_dir)(spool_dir.name)
    elif how == "through a symlink":
        archive.symlink_to(spool_dir)
    with pytest.raises(ValueError, match="is the spool itself"):
        TailerConfig(spool_dir, "s", archive_dir=archive, archive_max_bytes=10**6)


@pytest.fixture
def bind_mounted(tmp_path):
    """``mount(source) -> path``: the same directory under a second path, as a pod mounts one volume twice."""
    import subprocess

    mounted = []

    def mount(source):
        target = tmp_path / f"bind{len(mounted)}"
        target.mkdir()
        result = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"bind mounts unavailable here: {result.stderr.decode().strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", str(target)], capture_output=True)


def test_an_archive_that_is_the_spool_under_a_bind_mount_is_refused(spool_dir, bind_mounted):
    """Review 4, finding 1: paths compared with resolve() let the spool's own volume mounted a second time
    pass as the archive; pruning then deleted unshipped segments (4,650 of 8,200 acknowledged events lost),
    and it was not even asked for --archive-max-bytes. Compared by device and inode now."""
    other_path = bind_mounted(spool_dir)
    with pytest.raises(ValueError, match="is the spool itself"):
        TailerConfig(spool_dir, "s", archive_dir=other_path, archive_max_bytes=10**6)
    with pytest.raises(ValueError, match="inside the spool"):
        TailerConfig(spool_dir, "s", archive_dir=other_path / "archive")


def test_a_route_whose_archive_is_another_routes_spool_is_refused(tmp_path):
    """Review 4, finding 2: with --archive-dir <root>/arch and a route spooling to arch/events, route
    events' archive <root>/arch/events was the clicks route's spool (625 of 8,150 acknowledged events lost)."""
    import tomllib

    from spoolship.config_file import parse_plan

    root = tmp_path / "spool"
    plan = parse_plan(tomllib.loads(
        '[routing]\nfield = "type"\ndefault = "events"\n'
        '[routes.events]\ndestination = "main"\n'
        '[routes.clicks]\ndestination = "main"\nvalues = ["click"]\nspool_dir = "arch/events"\n'
        '[destinations.main]\ntype = "kinesis"\nstream = "s"\n'),
        tmp_path / "c.toml", spool_dir=root, check_destinations=False)
    assert plan.route("clicks").spool_dir == root / "arch" / "events"
    with pytest.raises(ValueError, match="in route clicks's spool"):
        plan.tailer_configs(archive_dir=root / "arch", archive_max_bytes=10**6)
    assert len(plan.tailer_configs(archive_dir=tmp_path / "archive")) == 2


def test_a_directory_holding_a_spools_checkpoint_is_never_pruned(spool_dir):
    """Defence in depth for what start-up cannot see (another mount namespace): archive names are the
    names of a spool's unshipped segments."""
    from spooler import prune_archive
    from spooler.archive import ArchiveIsASpool

    _, lines = write_lines(spool_dir, "w", 50)
    shipper = make_shipper(spool_dir, FakeSink(), linger_seconds=3600, poll_interval_seconds=3600)
    shipper.close()  # took the checkpoint lock, shipped nothing
    before = sorted(p.name for p in spool_dir.iterdir())
    with pytest.raises(ArchiveIsASpool):
        prune_archive(spool_dir, max_bytes=0, max_age_seconds=0)
    assert sorted(p.name for p in spool_dir.iterdir()) == before


def test_pruning_removes_only_what_the_archiver_wrote(tmp_path):
    """Review 3, finding 1 (defence in depth): a directory given as the archive by mistake keeps every file
    the archiver did not write — checkpoints, .active segments, an operator's notes."""
    from spooler import prune_archive

    archive = tmp_path / "archive"
    archive.mkdir()
    kept = ["checkpoint.json.tmp", "w-00000001.active", "notes.txt", "data.ndjson",
            ".w-00000002.ndjson.gz.tmp", "w-00000003.ndjson.bak"]
    pruned = ["w-00000004.ndjson", "w-00000005.ndjson.gz"]
    for name in kept + pruned:
        (archive / name).write_bytes(b"x" * 100)
    removed = prune_archive(archive, max_bytes=0, max_age_seconds=0)
    assert sorted(p.name for p in removed) == sorted(pruned)
    assert sorted(p.name for p in archive.iterdir()) == sorted(kept)


def test_an_empty_segment_from_a_refused_write_never_blocks_the_drain(spool_dir, monkeypatch):
    """Finding 7 (the review's exact case): one refused write, the recovery probe opens a fresh segment,
    the receiver shuts down and seals it empty after the tailer's last checkpoint; the drain must end
    with 0 (it used to wait for a checkpoint entry of the empty segment and exit 1)."""
    import spooler.writer as writer_module

    monkeypatch.setattr(writer_module, "RECOVERY_PROBE_SECONDS", 0.02)
    writer = SpoolWriter(WriterConfig(spool_dir, "rcv", min_free_bytes=0, fsync=FsyncPolicy.INTERVAL))
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink, drain_timeout_seconds=5)
    writer.append(b'{"n":1}\n')
    writer.seal()
    run_until(shipper, lambda: not list_segments(spool_dir, probe=False) and sink.accepted)
    real_write = os.write
    failed = []

    def refuse_once(fd, data):
        if not failed:
            failed.append(fd)
            raise OSError(errno.EIO, "Input/output error")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", refuse_once)
    with pytest.raises(SpoolUnwritable):  # a 503 "written: none"
        writer.append(b'{"n":2}\n')
    monkeypatch.setattr(os, "write", real_write)
    run_until(shipper, lambda: writer.refusal() is None and list_segments(spool_dir, probe=False))
    writer.close()  # seals the fresh, empty segment
    assert [s.size for s in list_segments(spool_dir, probe=False)] == [0]
    assert shipper.drain() == 0
    assert not list_segments(spool_dir, probe=False)
    assert read_checkpoint(spool_dir) == {}


def test_a_segment_descriptor_whose_close_reports_an_error_never_stops_the_tailer(spool_dir, monkeypatch):
    _, lines = write_lines(spool_dir, "a", 300, segment_bytes=1500)
    real_close = os.close

    def close_reports_eio(fd):
        real_close(fd)
        raise OSError(errno.EIO, "Input/output error")

    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink, drain_timeout_seconds=10)
    monkeypatch.setattr(os, "close", close_reports_eio)
    try:
        run_until(shipper, lambda: not list_segments(spool_dir, probe=False))
    finally:
        monkeypatch.setattr(os, "close", real_close)
    assert sorted(sink.accepted) == sorted(lines)


def test_one_unreadable_segment_does_not_strand_the_later_segments_of_its_writer(spool_dir):
    """Review 3, finding 2: only each writer's first unfinished segment was ever offered for reading, so one
    segment whose open kept failing (a bad block, EACCES) stranded every later segment of that writer — with
    one receiver worker, every new event — until the spool filled."""
    from tests.unit.test_shipper import FlakyOps

    class OneBadFile(FlakyOps):
        bad = True

        def open_segment(self, path):
            if self.bad and path.name.startswith("w-00000001"):
                raise OSError(errno.EIO, "injected EIO opening the first segment")
            return super().open_segment(path)

    ops = OneBadFile()
    _, w_lines = write_lines(spool_dir, "w", 300, segment_bytes=2048)
    _, v_lines = write_lines(spool_dir, "v", 20)
    first = {s.segment_id for s in list_segments(spool_dir, probe=False)}
    assert {"w-00000001", "w-00000002", "w-00000003"} <= first
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink, ops=ops)
    unreadable = (spool_dir / "w-00000001.ndjson").read_bytes().splitlines(keepends=True)
    rest = [line for line in w_lines if line not in set(unreadable)] + v_lines
    run_until(shipper, lambda: set(rest) <= set(sink.accepted)
              and {s.segment_id for s in list_segments(spool_dir, probe=False)} == {"w-00000001"})
    assert not set(unreadable) & set(sink.accepted)
    ops.bad = False  # the disk is readable again: the segment is shipped too
    run_until(shipper, lambda: not list_segments(spool_dir, probe=False))
    shipper.close()
    assert sorted(sink.accepted) == sorted(w_lines + v_lines)


def test_a_segment_whose_reads_keep_failing_backs_off_instead_of_retrying_every_50_ms(spool_dir, caplog):
    """Review 4, finding 4: the fstat before each read succeeded and ended the segment's backoff, so a read
    that kept failing was tried every 50 ms for ever, each try logging a failure and a recovery."""
    import logging
    import time

    from tests.unit.test_shipper import FlakyOps

    class UnreadableTail(FlakyOps):
        def read_lines(self, fd, offset, max_bytes):
            self.calls["bad_reads"] = self.calls.get("bad_reads", 0) + 1
            raise OSError(errno.EIO, "injected EIO reading")

    ops = UnreadableTail()
    write_lines(spool_dir, "w", 20)
    shipper = make_shipper(spool_dir, FakeSink(), ops=ops, max_backoff_seconds=1.0)
    caplog.set_level(logging.INFO, logger="tailer.spoolio")
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        shipper.ship_once()
        time.sleep(0.01)
    shipper.close()
    # Backoff 50 ms doubling to 1 s: about 7 tries in 2.5 s (it was one every 50 ms: ~50).
    assert 2 <= ops.calls["bad_reads"] <= 12, ops.calls["bad_reads"]
    assert not [r for r in caplog.records if "recovered" in r.getMessage()], "no recovery while it fails"
