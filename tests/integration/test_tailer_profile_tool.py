"""bench/tailer_profile.py, the tool docs/performance.md's round four was measured with, still runs.

Not a benchmark: a small file through a real tailer and kinesalite, and the tool's report read
back — the lines it says it shipped, a CPU figure, and the per-thread table.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from bench import tailer_profile
from tests.servers.kinesis import Kinesalite


def test_the_profile_tool_ships_the_file_and_reports_its_cpu(capsys):
    why_not = Kinesalite.available()
    if why_not:
        pytest.skip(f"kinesalite tests skipped: {why_not}")
    assert tailer_profile.main(["--lines", "3000", "--warm-up-lines", "500", "--idle-seconds", "0.2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^plain: 3,000 lines in [\d.]+ s; CPU [\d.]+ s \(user [\d.]+, system [\d.]+\)", out, re.M), out
    assert "threads, user+system CPU-s" in out


def test_the_profile_tool_samples_the_tailer_s_python_with_py_spy(capsys, tmp_path):
    why_not = Kinesalite.available()
    if why_not:
        pytest.skip(f"kinesalite tests skipped: {why_not}")
    if not (shutil.which("py-spy") or (Path(sys.executable).parent / "py-spy").exists()):
        pytest.fail("py-spy is missing: it is one of the bench extras (make setup)")
    stacks = tmp_path / "stacks.txt"
    assert tailer_profile.main(["--lines", "20000", "--warm-up-lines", "500", "--idle-seconds", "0.2",
                                "--py-spy", str(stacks)]) == 0
    out = capsys.readouterr().out
    assert "route-default" in stacks.read_text(), "no sample of the tailer's loop thread"
    samples = re.search(r"^py-spy: (\d+) samples holding the GIL", out, re.M)
    assert samples and int(samples[1]) > 0, out
    assert re.search(r"^\s+[\d.]+ /\s+[\d.]+  \S+ \(tailer/", out, re.M), out  # the tailer's own functions
