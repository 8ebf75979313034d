"""Model-based test: random appends, rotations and reads against a simple model.

Whatever the interleaving, reading a segment from any line boundary returns
exactly the lines appended to it after that point, in order, and never a part
of a line — also when reads start at arbitrary byte offsets and use tiny windows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import orjson
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from spooler import FsyncPolicy, SpoolWriter, WriterConfig, list_segments, read_lines

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
