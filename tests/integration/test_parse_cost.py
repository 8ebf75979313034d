"""The parse-memory estimate covers what each worst shape really costs: peak RSS, measured.

Every shape of bench/parse_memory.py (containers, numbers, strings, keys,
NDJSON lines, plain and gzip) goes through the receiver's request path in a
fresh process; the kernel's high-water mark of its resident memory must stay
under what the request held from the budget, in the decode+parse phase and in
the serialize phase.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.parse_memory import SHAPES, measure

pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
BODY_BYTES = 1024 * 1024


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_estimate_covers_the_measured_peak(shape):
    row = measure(shape, BODY_BYTES)
    assert row["decode_estimate"] >= row["decode_peak"], row
    assert row["serialize_estimate"] >= row["serialize_peak"], row
