"""Review items 1, 2, 3 and 12: any change to a segment file under the tailer, against a real shipper on real files.

One table of cases, each a change an operator or a tool can make to a segment while the tailer follows it
(copied in, replaced by a new inode larger or smaller, replaced while the tailer was down, rewritten in place
with or without the old line ends, truncated and regrown, replaced between the last listing and the
deletion; a checkpoint edited to point inside a line). The invariant over all of them: every line the file
holds at the end is shipped, nothing but whole lines of some version of the file is ever shipped (no
fragment), nothing is dead-lettered, and the spool ends empty.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from spooler import (
    CheckpointCorrupt,
    CheckpointStore,
    count_dead_letters,
    list_segments,
    read_checkpoint,
)
from spooler.checkpoint import CHECKPOINT_FILE
from tests.unit.test_shipper import FakeSink, make_shipper, run_until, write_lines

SID = "cp-00000001"


def lines_of(tag: str, count: int, pad: int = 0) -> list[bytes]:
    return [b'{"%s":%d,"p":"%s"}\n' % (tag.encode(), i, b"x" * ((i * 7 + pad) % 23)) for i in range(count)]


def replace_file(path, data: bytes) -> None:
    """Write aside, then rename over: a new inode under the same name."""
    aside = path.with_name(".aside-" + path.name)
    aside.write_bytes(data)
    os.rename(aside, path)


def rewrite_in_place(path, data: bytes) -> None:
    """Truncate and write again: the same inode."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)


def wait_idle(shipper, timeout=30.0):
    deadline = time.monotonic() + timeout
    while shipper._inflight and time.monotonic() < deadline:
        shipper.ship_once()
        time.sleep(0.005)


def assert_whole_lines(sink, *versions: list[bytes]) -> None:
    known = set().union(*map(set, versions))
    fragments = [line for line in sink.accepted if line not in known]
    assert not fragments, f"shipped what no version of the file holds as a line: {fragments[:3]}"


def _copied_in(spool_dir):
    """cp / zcat into the spool: an empty sealed file appears, then grows (mid-line pieces)."""
    lines = lines_of("c", 300)
    data = b"".join(lines)
    fd = os.open(spool_dir / f"{SID}.ndjson", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink, quiet_seconds=1.0)
    for _ in range(5):
        shipper.request_rescan()
        shipper.ship_once()
    at_line_end = len(b"".join(lines[:100]))
    for piece in (data[:1001], data[1001:at_line_end], data[at_line_end:5003], data[5003:]):
        os.write(fd, piece)
        for _ in range(3):
            shipper.request_rescan()
            shipper.ship_once()
    os.close(fd)
    return sink, shipper, [lines], lines


def _sealed_then(change):
    """A sealed segment read and in flight (Kinesis holds the calls), then ``change(path)`` -> new lines."""
    def case(spool_dir):
        _, old = write_lines(spool_dir, "cp", 60, segment_bytes=10**9)
        [segment] = list_segments(spool_dir)
        sink = FakeSink()
        sink.gate.clear()
        shipper = make_shipper(spool_dir, sink)
        run_until(shipper, lambda: shipper._inflight)
        new = change(segment.path)
        sink.gate.set()
        return sink, shipper, [old, new], new
    return case


def _replaced(count):
    def change(path):
        new = lines_of("n", count)
        replace_file(path, b"".join(new))
        return new
    return change


def _replaced_between_listing_and_deletion(spool_dir):
    """Shipped and checkpointed; replaced before the next listing: the deletion must not take the new file."""
    _, old = write_lines(spool_dir, "cp", 40, segment_bytes=10**9)
    [segment] = list_segments(spool_dir)
    sink = FakeSink()
    sink.gate.clear()
    shipper = make_shipper(spool_dir, sink, poll_interval_seconds=3600.0)
    run_until(shipper, lambda: shipper._inflight)
    new = lines_of("n", 40)
    replace_file(segment.path, b"".join(new))
    sink.gate.set()
    wait_idle(shipper)
    shipper.ship_once()  # acknowledgements, checkpoint, deletion: no listing in between
    assert segment.path.exists(), "the replacement was deleted unshipped"
    shipper.request_rescan()
    return sink, shipper, [old, new], new


def _active_then(change):
    """An active segment shipped and acknowledged up to its end, then ``change(path)``; then sealed."""
    def case(spool_dir):
        writer, old = write_lines(spool_dir, "cp", 50, seal=False, segment_bytes=10**9)
        [segment] = list_segments(spool_dir)
        sink = FakeSink()
        shipper = make_shipper(spool_dir, sink)
        run_until(shipper, lambda: len(sink.accepted) == 50 and not shipper._dirty)
        new = change(segment.path)
        writer.close()  # seals it (a rename: the same inode as the path holds now)
        shipper.request_rescan()
        return sink, shipper, [old, new], new
    return case


def _rewritten(count, same_line_ends=False):
    def change(path):
        new = [b'{"o":%d,"p":"%s"}\n' % (i, b"x" * ((i * 7) % 23)) for i in range(count)] if same_line_ends \
            else lines_of("rewritten", count, pad=3)
        rewrite_in_place(path, b"".join(new))
        return new
    return change


def _restarted_after_replacement(spool_dir):
    """The tailer was down while the file was replaced: the old inode's offset must not apply to the new one."""
    writer, old = write_lines(spool_dir, "cp", 50, seal=False, segment_bytes=10**9)
    sink = FakeSink()
    first = make_shipper(spool_dir, sink)
    run_until(first, lambda: len(sink.accepted) == 50 and not first._dirty)
    first.close()
    writer.close()
    [segment] = list_segments(spool_dir)
    new = lines_of("n", 80)
    replace_file(segment.path, b"".join(new))
    sink.accepted.clear()
    shipper = make_shipper(spool_dir, sink)
    return sink, shipper, [new], new


def _checkpoint_inside_a_line(spool_dir):
    """A hand-edited checkpoint (no identity) pointing into line 10: shipping resumes at line 11."""
    _, lines = write_lines(spool_dir, "cp", 30, segment_bytes=10**9)
    [segment] = list_segments(spool_dir)
    inside = len(b"".join(lines[:10])) + 3
    with CheckpointStore(spool_dir) as store:
        store.save({segment.segment_id: inside})
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink)
    return sink, shipper, [lines], lines[11:]


def _fixed_shape(tag: bytes, count: int) -> list[bytes]:
    """Fixed-shape events: every line the same length, line 0 the same in every version."""
    first = b'{"event":"heartbeat","host":"web-01","region":"eu-west-1","tenant":"acme","seq":0000}\n'
    return [first] + [b'{"event":"heartbeat","host":"web-01","region":"eu-west-1","tenant":"%s","seq":%04d}\n'
                      % (tag, i) for i in range(1, count)]


def _shipped_not_deleted(spool_dir, old: list[bytes]):
    """A sealed segment copied in, shipped and checkpointed, not deleted yet (the copy-in grace holds it)."""
    path = spool_dir / f"{SID}.ndjson"
    path.write_bytes(b"".join(old))
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink, copy_in_grace_seconds=3600.0, quiet_seconds=3600.0)
    size = path.stat().st_size
    run_until(shipper, lambda: len(sink.accepted) == len(old) and read_checkpoint(spool_dir) == {SID: size})
    return path, sink, shipper


def _may_delete_soon(shipper) -> None:
    shipper._tracker.identity.copy_in_grace_seconds = shipper._tracker.identity.quiet_seconds = 0.05


def _rewritten_same_head_and_line_lengths(spool_dir):
    """`cp new seg` over a shipped segment (same inode, O_TRUNC): same first line, lines of the same length,
    so byte N-1 is a newline again (review 2, item 1b)."""
    old, new = _fixed_shape(b"acme", 10), _fixed_shape(b"beta", 20)
    path, sink, shipper = _shipped_not_deleted(spool_dir, old)
    rewrite_in_place(path, b"".join(new))
    _may_delete_soon(shipper)
    return sink, shipper, [old, new], new


def _rewritten_same_size_after_shipping(spool_dir):
    """Shipped to its end, then rewritten with other lines of the same total size: the deletion must not
    take it on the word of its inode and size."""
    old, new = _fixed_shape(b"acme", 10), _fixed_shape(b"beta", 10)
    path, sink, shipper = _shipped_not_deleted(spool_dir, old)
    rewrite_in_place(path, b"".join(new))
    _may_delete_soon(shipper)
    return sink, shipper, [old, new], new


def _restarted_after_replacement_same_head(spool_dir):
    """Shipped and checkpointed, not deleted; replaced by a new inode with the same first line while the
    tailer was down (review 2, item 1a)."""
    old = _fixed_shape(b"acme", 10)
    path, sink, first = _shipped_not_deleted(spool_dir, old)
    first.close()
    new = [old[0]] + lines_of("n", 30)
    replace_file(path, b"".join(new))
    sink.accepted.clear()
    return sink, make_shipper(spool_dir, sink), [new], new


def _restarted_after_rewrite_same_head(spool_dir):
    """Shipped and checkpointed, not deleted; rewritten in place (same inode) with lines of the same length
    while the tailer was down."""
    old, new = _fixed_shape(b"acme", 10), _fixed_shape(b"beta", 20)
    path, sink, first = _shipped_not_deleted(spool_dir, old)
    first.close()
    rewrite_in_place(path, b"".join(new))
    sink.accepted.clear()
    return sink, make_shipper(spool_dir, sink), [new], new


CASES = {
    "copied in: empty at first, then growing": _copied_in,
    "replaced by a new inode, larger": _sealed_then(_replaced(120)),
    "replaced by a new inode, smaller": _sealed_then(_replaced(20)),
    "replaced between the listing and the deletion": _replaced_between_listing_and_deletion,
    "replaced while the tailer was down": _restarted_after_replacement,
    "truncated and regrown past the read offset": _active_then(_rewritten(90)),
    "rewritten in place, line ends where they were": _active_then(_rewritten(50, same_line_ends=True)),
    "truncated below the read offset, then grown": _active_then(_rewritten(10)),
    "checkpoint edited to point inside a line": _checkpoint_inside_a_line,
    "rewritten in place, same first bytes and line lengths": _rewritten_same_head_and_line_lengths,
    "rewritten in place to the same size after shipping": _rewritten_same_size_after_shipping,
    "replaced while the tailer was down, same first bytes": _restarted_after_replacement_same_head,
    "rewritten while the tailer was down, same first bytes and line lengths": _restarted_after_rewrite_same_head,
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_any_change_to_a_segment_under_the_tailer_ships_the_file_as_it_is_now(spool_dir, case):
    sink, shipper, versions, final = CASES[case](spool_dir)
    run_until(shipper, lambda: not list_segments(spool_dir, probe=False) and not shipper._inflight, timeout=20)
    shipper.close()
    missing = [line for line in final if line not in set(sink.accepted)]
    assert not missing, f"{len(missing)} of {len(final)} lines the file holds now were never shipped"
    assert_whole_lines(sink, *versions)
    assert count_dead_letters(spool_dir) == 0
    assert read_checkpoint(spool_dir) == {}


def test_a_replacement_is_logged_and_counted(spool_dir, caplog):
    sink, shipper, _, _ = _sealed_then(_replaced(120))(spool_dir)
    run_until(shipper, lambda: not list_segments(spool_dir, probe=False) and not shipper._inflight, timeout=20)
    shipper.close()
    assert sum(shipper.metrics.segments_replaced.labels(how)._value.get()
               for how in ("new_inode", "rewritten", "checkpoint_mid_line")) >= 1
    assert any("another file" in r.message for r in caplog.records if r.levelname == "ERROR")


def test_the_checkpoint_records_which_file_each_offset_belongs_to(spool_dir):
    writer, _ = write_lines(spool_dir, "cp", 20, seal=False, segment_bytes=10**9)
    [segment] = list_segments(spool_dir)
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink)
    run_until(shipper, lambda: len(sink.accepted) == 20 and not shipper._dirty)
    shipper.close()
    writer.close()
    doc = json.loads((spool_dir / CHECKPOINT_FILE).read_text())
    identity = doc["identities"][segment.segment_id]
    assert identity["ino"] == os.stat(segment.path.with_suffix(".ndjson")).st_ino
    assert identity["head_bytes"] > 0 and identity["head"]


def test_the_same_content_under_a_new_inode_keeps_its_offset_across_a_restart(spool_dir):
    """A volume restored from a copy (or inode numbers that change across mounts): nothing re-sent."""
    writer, old = write_lines(spool_dir, "cp", 50, seal=False, segment_bytes=10**9)
    sink = FakeSink()
    first = make_shipper(spool_dir, sink)
    run_until(first, lambda: len(sink.accepted) == 50 and not first._dirty)
    first.close()
    writer.close()
    [segment] = list_segments(spool_dir)
    more = lines_of("more", 5)
    replace_file(segment.path, segment.path.read_bytes() + b"".join(more))
    sink.accepted.clear()
    shipper = make_shipper(spool_dir, sink)
    run_until(shipper, lambda: not list_segments(spool_dir, probe=False))
    shipper.close()
    assert sink.accepted == more, "only what the first tailer had not shipped"


@pytest.mark.parametrize("offset", ["true", "false", "1.0", '"12"', "-1", "null"])
def test_a_checkpoint_offset_that_is_not_a_json_integer_is_refused(spool_dir, offset):
    (spool_dir / CHECKPOINT_FILE).write_text('{"version": 1, "segments": {"cp-00000001": ' + offset + '}}')
    with pytest.raises(CheckpointCorrupt):
        read_checkpoint(spool_dir)


def test_a_checkpoint_version_true_is_not_version_1(spool_dir):
    (spool_dir / CHECKPOINT_FILE).write_text('{"version": true, "segments": {}}')
    with pytest.raises(CheckpointCorrupt):
        read_checkpoint(spool_dir)


def test_an_old_checkpoint_without_identities_is_still_honoured(spool_dir):
    _, lines = write_lines(spool_dir, "cp", 30, segment_bytes=10**9)
    [segment] = list_segments(spool_dir)
    (spool_dir / CHECKPOINT_FILE).write_text(json.dumps(
        {"version": 1, "segments": {segment.segment_id: len(b"".join(lines[:12]))}}))
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink)
    run_until(shipper, lambda: not list_segments(spool_dir, probe=False))
    shipper.close()
    assert sink.accepted == lines[12:]


def test_an_empty_sealed_segment_is_deleted_once_it_has_stayed_empty(spool_dir):
    started = time.monotonic()
    (spool_dir / f"{SID}.ndjson").touch()
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink, quiet_seconds=0.3)
    result = []
    runner = threading.Thread(target=lambda: result.append(
        run_until(shipper, lambda: not list_segments(spool_dir, probe=False), timeout=20)))
    runner.start()
    runner.join(30)
    assert time.monotonic() - started >= 0.25, "deleted before it had stayed empty for the quiet period"
    assert result == [None]


@pytest.mark.parametrize("identity", [
    {"ino": 1, "head_bytes": 2**46, "head": "ab"},  # review 2, item 6: a MemoryError at every start
    {"ino": 1, "head_bytes": 65, "head": "ab"},
    {"ino": 1, "head_bytes": 64, "head": "ab", "tail": "cd"},  # a tail without the offset it was taken at
    {"ino": 1, "head_bytes": 64, "head": "ab", "tail": 1, "tail_at": 3},
    {"ino": 1, "head_bytes": 64, "head": "ab", "tail": "cd", "tail_at": -1},
], ids=["head_bytes 2**46", "head_bytes 65", "tail without tail_at", "tail not a string", "tail_at -1"])
def test_a_hand_edited_identity_out_of_range_is_refused(spool_dir, identity):
    (spool_dir / CHECKPOINT_FILE).write_text(json.dumps(
        {"version": 1, "segments": {SID: 3}, "identities": {SID: identity}}))
    with pytest.raises(CheckpointCorrupt):
        read_checkpoint(spool_dir)


def test_the_checkpoint_records_a_hash_of_the_bytes_before_each_offset(spool_dir):
    path, _, shipper = _shipped_not_deleted(spool_dir, _fixed_shape(b"acme", 10))
    shipper.close()
    identity = json.loads((spool_dir / CHECKPOINT_FILE).read_text())["identities"][SID]
    assert identity["tail_at"] == path.stat().st_size and identity["tail"]


def _wait_shipped(shipper, sink, spool_dir, path, count):
    size = path.stat().st_size
    run_until(shipper, lambda: len(sink.accepted) == count and read_checkpoint(spool_dir) == {SID: size})
    deadline = time.monotonic() + 1.5  # past the grace and the /proc re-check interval: deletion is due
    while time.monotonic() < deadline:
        shipper.ship_once()
        time.sleep(0.01)


@pytest.mark.parametrize("then", ["nothing", "chmod", "moved in"])
def test_a_file_copied_in_is_not_deleted_while_a_process_holds_it_open_for_writing(spool_dir, tmp_path, then):
    """Review 2, item 2: `producer > spool/x.ndjson` pauses at a line end; its next lines must not go into an
    unlinked inode. Review 3, finding 4: also when something moved its ctime past its mtime (a chmod, a
    volume's fsGroup chown, an `mv` of a file still being written), which took it for a sealed segment."""
    lines = lines_of("w", 10)
    path = spool_dir / f"{SID}.ndjson"
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink)
    written = path if then != "moved in" else tmp_path / "elsewhere.ndjson"
    with open(written, "wb", buffering=0) as producer:
        producer.write(b"".join(lines[:5]))
        time.sleep(0.02)  # a tick later: the ctime the change sets is past the mtime
        if then == "chmod":
            os.chmod(path, 0o640)
        elif then == "moved in":
            os.rename(written, path)
        assert then == "nothing" or os.stat(path).st_ctime_ns > os.stat(path).st_mtime_ns
        _wait_shipped(shipper, sink, spool_dir, path, 5)
        assert path.exists(), "deleted while a process still held it open for writing"
        producer.write(b"".join(lines[5:]))
    run_until(shipper, lambda: not list_segments(spool_dir, probe=False))
    shipper.close()
    assert sink.accepted == lines


def test_a_file_copied_in_is_deleted_only_after_the_copy_in_grace(spool_dir):
    """The producer closed the file between its pieces (or runs where /proc cannot see it): the grace holds."""
    lines = lines_of("g", 10)
    path = spool_dir / f"{SID}.ndjson"
    path.write_bytes(b"".join(lines[:5]))
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink, copy_in_grace_seconds=3600.0)
    _wait_shipped(shipper, sink, spool_dir, path, 5)
    assert path.exists(), "deleted before the copy-in grace"
    with open(path, "ab") as producer:
        producer.write(b"".join(lines[5:]))
    shipper._tracker.identity.copy_in_grace_seconds = 0.05
    run_until(shipper, lambda: not list_segments(spool_dir, probe=False))
    shipper.close()
    assert sink.accepted == lines


@pytest.mark.parametrize("sealed_by", ["writer", "tailer-for-an-orphan"])
def test_a_segment_sealed_before_the_tailer_started_is_not_taken_for_a_copy_in(spool_dir, sealed_by):
    """A seal in the same clock tick as the last append left ctime == mtime, so every segment sealed while
    the tailer was down (the whole backlog after a restart) waited out the copy-in grace — and a /proc scan
    each — while the spool cap counted it. A seal moves the mtime back: ctime > mtime however fast."""
    from spooler import FsyncPolicy, SpoolWriter, WriterConfig
    from spooler.segments import seal_orphan

    lines = lines_of("s", 20)
    if sealed_by == "writer":
        with SpoolWriter(WriterConfig(spool_dir, "fast", min_free_bytes=0, fsync=FsyncPolicy.NEVER)) as writer:
            for line in lines:
                writer.append(line)
    else:
        orphan = spool_dir / "dead_w0_p1_x-00000001.active"
        orphan.write_bytes(b"".join(lines))
        [segment] = list_segments(spool_dir, probe=True)
        assert seal_orphan(segment) is not None
    [segment] = list_segments(spool_dir, probe=False)
    st = os.stat(segment.path)
    assert st.st_ctime_ns > st.st_mtime_ns, "a seal that leaves ctime == mtime looks like a copy-in"
    sink = FakeSink()
    shipper = make_shipper(spool_dir, sink, copy_in_grace_seconds=3600.0)
    run_until(shipper, lambda: not list_segments(spool_dir, probe=False))  # before: an hour's grace
    shipper.close()
    assert sink.accepted == lines


def test_one_proc_scan_answers_for_every_file_and_only_after_its_quiet_period():
    """A restart's backlog of segments the tailer never saw written costs a /proc scan a second, not one per
    segment; a scan begun before a file's quiet period ended says nothing about it; a file found open is
    asked about again after the next scan."""
    from tailer.writers_open import CHECK_EVERY_SECONDS, WriterScan

    clock = {"wall": 1000.0, "mono": 50.0}
    scans, open_files = [], {(1, 10): 4242}
    scan = WriterScan(scan=lambda: scans.append(clock["wall"]) or dict(open_files),
                      wall=lambda: clock["wall"], monotonic=lambda: clock["mono"])
    assert [scan.writer_of(1, ino, quiet_since=999.0) for ino in range(11, 111)] == [None] * 100
    assert scan.writer_of(1, 10, quiet_since=999.0) == 4242
    assert len(scans) == 1, "one scan for a hundred files"
    assert scan.writer_of(1, 11, quiet_since=1000.5) is False, "the scan began before its quiet period ended"
    clock["wall"] += CHECK_EVERY_SECONDS
    clock["mono"] += CHECK_EVERY_SECONDS
    open_files.clear()  # the producer closed it
    assert scan.writer_of(1, 11, quiet_since=1000.5) is None
    assert scan.writer_of(1, 10, quiet_since=999.0) is None
    assert len(scans) == 2
    clock["wall"] -= 3600  # the wall clock stepped back: the rate limit keeps to the monotonic clock
    clock["mono"] += CHECK_EVERY_SECONDS
    scan.writer_of(1, 12, quiet_since=0.0)
    assert len(scans) == 3


def test_the_proc_scan_finds_this_process_writing_and_not_reading():
    import tempfile

    from tailer.writers_open import open_for_writing

    with tempfile.NamedTemporaryFile() as writing, open(__file__, "rb") as reading:
        found = open_for_writing()
        st_w, st_r = os.fstat(writing.fileno()), os.fstat(reading.fileno())
        assert found.get((st_w.st_dev, st_w.st_ino)) == os.getpid()
        assert (st_r.st_dev, st_r.st_ino) not in found
