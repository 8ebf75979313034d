"""The tailer's compiled loops (tailer/_speedups.c), or None where they were not built.

pip builds them when a C compiler is there (setup.py); without one the install goes on and the
callers — :meth:`tailer.kinesis.KinesisSink._encode`, :func:`tailer.kinesis_answer.proven_stored` and
:data:`tailer.kpl.encode_lines` — run the Python references the compiled code is tested against. ``SPOOLSHIP_PYTHON_ONLY=1`` runs the
references even where the module is built (to compare the two, or to rule the C out).
"""

from __future__ import annotations

import os

__all__ = ["compiled"]

if os.environ.get("SPOOLSHIP_PYTHON_ONLY") == "1":
    compiled = None
else:
    try:
        from . import _speedups as compiled
    except ImportError:  # not built here: the Python references run
        compiled = None
