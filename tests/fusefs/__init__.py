"""A FUSE disk that can lose power and fail on purpose, for the spool's trust tests.

Modelled on LazyFS (the file system Jepsen uses to find fsync bugs): a
passthrough file system over a backing directory that remembers what an fsync
made durable, and can "cut the power" to exactly that. See :mod:`.model` for
what survives a cut (and what the model does not cover), :mod:`.faults` for the
errors it injects, :mod:`.daemon` for the file system, :mod:`.disk` for the
test-side handle.
"""

from .disk import PowerCutDisk, fuse_missing
from .faults import FaultRule

__all__ = ["FaultRule", "PowerCutDisk", "fuse_missing"]
