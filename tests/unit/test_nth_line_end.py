"""The cut after the n-th line of a chunk (tailer/reading.py), exact for every mix of line lengths."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tailer.reading import _nth_line_end


@settings(max_examples=300, deadline=None)
@given(lengths=st.lists(st.one_of(st.integers(0, 3), st.integers(0, 300), st.integers(1000, 5000)), min_size=2,
                        max_size=400),
       data=st.data())
def test_the_cut_is_just_past_the_nth_newline(lengths, data):
    chunk = b"".join(b"x" * length + b"\n" for length in lengths) + data.draw(st.sampled_from([b"", b"tail"]))
    n = data.draw(st.integers(1, len(lengths) - 1))
    cut = _nth_line_end(chunk, n)
    assert chunk[:cut].count(b"\n") == n and chunk[cut - 1:cut] == b"\n"
    assert _nth_line_end(chunk, n, chunk.count(b"\n")) == cut  # with the caller's count, as reading does


def test_uniform_lines_and_skewed_ones():
    uniform = b"".join(b"%0199d\n" % i for i in range(10_600))
    skewed = b"\n" * 9_000 + b"y" * 2_000_000 + b"\n" * 2_000
    for chunk in (uniform, skewed, skewed[::-1]):
        for n in (1, 2, 5_000, 9_999, 10_000):
            cut = _nth_line_end(chunk, n)
            assert chunk[:cut].count(b"\n") == n and chunk[cut - 1:cut] == b"\n"
            assert _nth_line_end(chunk, n, chunk.count(b"\n")) == cut
