"""Model-based test: random appends, rotations and reads against a simple model.

Whatever the interleaving, reading a segment from any line boundary returns
exactly the lines appended to it after that point, in order, and never a part
of a line — also when reads start at arbitrary byte offsets and use tiny windows.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

import orjson
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from spooler import (
    AppendRefused,
    AppendUncertain,
    FsyncPolicy,
    SegmentState,
    SpoolWriter,
    WriterConfig,
    list_segments,
    read_lines,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
events = st.dictionaries(st.text(max_size=8), json_values, max_size=4)


class SpoolMachine(RuleBasedStateMachine):
    """The model is the list of every line appended, in order; segments must partition it."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="spool-model-"))
        self.writer = SpoolWriter(
            WriterConfig(self.dir, "model", segment_bytes=400, min_free_bytes=0, fsync=FsyncPolicy.NEVER)
        )
        self.appended: list[bytes] = []

    def segments_as_model_lines(self) -> dict[str, list[bytes]]:
        """Split the model's lines by the segments' sizes; fails if a line straddles two."""
        out, cursor = {}, 0
        for segment in list_segments(self.dir, probe=False):
            lines, size = [], 0
            while size < segment.size:
                assert cursor < len(self.appended), "segment holds bytes nobody appended"
                lines.append(self.appended[cursor])
                size += len(self.appended[cursor])
                cursor += 1
            assert size == segment.size, "a line straddles two segments"
            out[segment.segment_id] = lines
        assert cursor == len(self.appended), "appended lines missing from the spool"
        return out

    @rule(batch=st.lists(events, min_size=1, max_size=5))
    def append(self, batch):
        lines = [orjson.dumps(e) + b"\n" for e in batch]
        self.writer.append(b"".join(lines))
        self.appended.extend(lines)

    @rule()
    def rotate(self):
        self.writer.seal()

    @precondition(lambda self: self.appended)
    @rule(data=st.data(), window=st.integers(min_value=1, max_value=600))
    def read_from_random_offset(self, data, window):
        per_segment = self.segments_as_model_lines()
        segment_id = data.draw(st.sampled_from(sorted(per_segment)))
        lines = per_segment[segment_id]
        index = data.draw(st.integers(min_value=0, max_value=len(lines)))
        path = next(s.path for s in list_segments(self.dir, probe=False) if s.segment_id == segment_id)
        fd = os.open(path, os.O_RDONLY)
        try:
            got, offset = [], sum(len(line) for line in lines[:index])
            while True:
                chunk = read_lines(fd, offset, window)
                if chunk.is_empty:
                    break
                if chunk.oversized:
                    got.append(b"<oversized>")
                else:
                    got.extend(chunk.data.splitlines(keepends=True))
                offset = chunk.end
        finally:
            os.close(fd)
        expected = [line if len(line) <= window else b"<oversized>" for line in lines[index:]]
        assert got == expected

    @invariant()
    def segments_partition_the_appended_lines_in_order(self):
        per_segment = self.segments_as_model_lines()
        for segment in list_segments(self.dir, probe=False):
            assert segment.path.read_bytes() == b"".join(per_segment[segment.segment_id])

    def teardown(self):
        self.writer.close()
        shutil.rmtree(self.dir, ignore_errors=True)


SpoolMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestSpoolModel = SpoolMachine.TestCase


class FaultySpoolMachine(RuleBasedStateMachine):
    """Random appends (some with sync) under random disk faults: short writes, write errors,
    failed fsyncs, failed segment creates. The model: lines acknowledged, refused ("none") and
    uncertain ("unknown"). Whatever happens, the spool holds every acknowledged line in order,
    no refused one, only whole lines outside a sealed segment's torn tail, and no segment ever
    shrinks (a tailer may have read it)."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="spool-faults-"))
        self.writer = SpoolWriter(WriterConfig(self.dir, "faulty", segment_bytes=300, segment_age_seconds=3600,
                                               min_free_bytes=0, fsync=FsyncPolicy.NEVER))
        self.lines: list[tuple[bytes, str]] = []  # (line, "acked" | "refused" | "uncertain"), in append order
        self.sizes: dict[str, int] = {}
        self.n = 0

    def _lines(self, count: int) -> list[bytes]:
        out = []
        for _ in range(count):
            out.append(b'{"n":%d,"p":"%s"}\n' % (self.n, b"x" * (self.n % 23)))
            self.n += 1
        return out

    def _append(self, lines: list[bytes], *, sync: bool, patches: dict) -> None:
        from unittest import mock

        with contextlib.ExitStack() as stack:
            for name, replacement in patches.items():
                stack.enter_context(mock.patch.object(os, name, replacement))
            try:
                self.writer.append(b"".join(lines), sync=sync)
                outcome = "acked"
            except AppendUncertain:
                outcome = "uncertain"
            except AppendRefused:
                outcome = "refused"
        self.lines.extend((line, outcome) for line in lines)

    @rule(count=st.integers(1, 4), sync=st.booleans())
    def append(self, count, sync):
        self._append(self._lines(count), sync=sync, patches={})

    @rule(count=st.integers(1, 4), keep=st.integers(1, 60), rest_fails=st.booleans())
    def short_write(self, count, keep, rest_fails):
        real_write, calls = os.write, []

        def short(fd, data):
            calls.append(1)
            if len(calls) == 1:
                return real_write(fd, bytes(data)[: max(1, min(keep, len(data) - 1))])
            if rest_fails:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, data)

        self._append(self._lines(count), sync=False, patches={"write": short})

    @rule(count=st.integers(1, 4), err=st.sampled_from([errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG]))
    def write_error(self, count, err):
        def failing(fd, data):
            raise OSError(err, os.strerror(err))

        self._append(self._lines(count), sync=False, patches={"write": failing})

    @rule(count=st.integers(1, 4))
    def fsync_fails(self, count):
        def failing(fd):
            raise OSError(errno.EIO, "Input/output error")

        self._append(self._lines(count), sync=True, patches={"fdatasync": failing})

    @rule(count=st.integers(1, 4), step=st.sampled_from(["open", "rename"]))
    def create_fails(self, count, step):
        self.writer.seal()  # the next append must create a segment
        real = getattr(os, step)

        def failing(*args, **kwargs):
            if ".creating-" in str(args[0]):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)

        self._append(self._lines(count), sync=False, patches={step: failing})

    @rule()
    def rotate(self):
        self.writer.seal()

    @invariant()
    def every_acknowledged_line_in_order_nothing_refused_nothing_shrunk(self):
        whole = []
        for segment in list_segments(self.dir, probe=False):
            assert segment.size >= self.sizes.get(segment.segment_id, 0), f"{segment.segment_id} shrank"
            self.sizes[segment.segment_id] = segment.size
            data = segment.path.read_bytes()
            if not data.endswith(b"\n") and data:
                assert segment.state is SegmentState.SEALED, "a torn tail in a segment still appended to"
                data = data[: data.rfind(b"\n") + 1]
            whole.extend(data.splitlines(keepends=True))
        refused = {line for line, outcome in self.lines if outcome == "refused"}
        assert not refused & set(whole), "a refused line is in the spool"
        uncertain = {line for line, outcome in self.lines if outcome == "uncertain"}
        assert [line for line in whole if line not in uncertain] == [
            line for line, outcome in self.lines if outcome == "acked"]

    def teardown(self):
        self.writer.close()
        shutil.rmtree(self.dir, ignore_errors=True)


FaultySpoolMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestFaultySpoolModel = FaultySpoolMachine.TestCase
