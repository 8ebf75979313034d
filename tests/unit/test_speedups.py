"""The compiled loops (tailer/_speedups.c) are built where the tests run, and can be switched off.

A development install or CI run without them would test the Python references only and benchmark
a tailer the image does not ship (the image's build fails without them): so their absence fails
here, with the reason, rather than skipping. What they compute is held to the references in
tests/unit/test_put_records_body.py, tests/unit/test_put_records_answer.py and tests/unit/test_kpl_records.py.
"""

from __future__ import annotations

import os
import subprocess
import sys


def test_the_compiled_loops_are_built():
    try:
        import tailer._speedups  # noqa: F401
    except ImportError as exc:
        raise AssertionError("tailer._speedups is not built: `make setup` compiles it (it needs gcc and the "
                             f"Python headers): {exc}") from exc


def test_spoolship_python_only_runs_the_python_references():
    code = ("import tailer.speedups as s, tailer.kinesis_answer as a, tailer.kpl as k; "
            "print(s.compiled is None, a.proven_stored is a.stored_count, k.encode_lines is k._encode_lines)")
    for value, expected in (("1", "True True True"), ("", "False False False")):
        env = {**os.environ, "SPOOLSHIP_PYTHON_ONLY": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.split() == expected.split(), out
