"""bench/tailer_profile.py's py-spy summary: samples per function and per thread, read from collapsed stacks.

A synthetic file in py-spy's raw format (``thread (id): name;frame;frame count``) with known
counts; the summary must attribute self and inclusive samples to the right functions (line numbers
folded away), fold the numbered delivery threads together, and skip lines that are not stacks.
"""

from __future__ import annotations

import re

from bench.tailer_profile import summarize_stacks

_RAW = """\
thread (0x7f01): route-default;Shipper.ship_once (tailer/shipper.py:121);split_lines (tailer/packing.py:65) 6
thread (0x7f01): route-default;Shipper.ship_once (tailer/shipper.py:122);split_lines (tailer/packing.py:63) 2
thread (0x7f02): put-records_0;Delivery._put (tailer/delivery.py:164);KinesisSink._result (tailer/kinesis.py:116) 1
thread (0x7f03): put-records_3;Delivery._put (tailer/delivery.py:164) 1
not a stack line
"""


def _row(summary: str, function: str) -> tuple[float, float]:
    match = re.search(rf"^\s+([\d.]+) /\s+([\d.]+)  {re.escape(function)}$", summary, re.M)
    assert match, summary
    return float(match[1]), float(match[2])


def test_samples_are_attributed_per_function_and_per_thread(tmp_path):
    path = tmp_path / "stacks.txt"
    path.write_text(_RAW)
    summary = summarize_stacks(path)
    assert summary.startswith("py-spy: 10 samples holding the GIL (by thread: route-default 80 %, put-records 20 %)")
    assert _row(summary, "split_lines (tailer/packing.py)") == (80.0, 80.0)  # two line numbers, one function
    assert _row(summary, "Delivery._put (tailer/delivery.py)") == (10.0, 20.0)
    assert _row(summary, "KinesisSink._result (tailer/kinesis.py)") == (10.0, 10.0)
    assert "Shipper.ship_once" not in summary  # no samples of its own: not listed among the self rows
