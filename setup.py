"""The one compiled part: tailer._speedups (everything else is in pyproject.toml).

The tailer's per-record loops of a PutRecords call and its per-line loop of an aggregate, in C
(tailer/_speedups.c; docs/performance.md, rounds five and six). Optional for pip: without a compiler
the install goes on and the tailer runs their Python references instead. The image builds it (deploy/Containerfile fails without it), and
tests/unit/test_speedups.py fails when a development install lacks it.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("tailer._speedups", sources=["tailer/_speedups.c"], optional=True)])
