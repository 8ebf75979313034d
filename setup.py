"""The one compiled part: tailer._speedups (everything else is in pyproject.toml).

The two per-record loops of a PutRecords call in C (tailer/_speedups.c; docs/performance.md, round
five). Optional for pip: without a compiler the install goes on and tailer/kinesis.py runs their
Python references instead. The image builds it (deploy/Containerfile fails without it), and
tests/unit/test_speedups.py fails when a development install lacks it.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("tailer._speedups", sources=["tailer/_speedups.c"], optional=True)])
