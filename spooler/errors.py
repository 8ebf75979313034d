"""The spooler's error hierarchy.

    SpoolError                      base of everything raised by spooler
    ├── AppendRefused               an append was not written; the caller may retry later
    │   ├── SpoolFull               byte cap or free-disk floor reached (retryable, has a hint)
    │   └── SpoolUnwritable         the disk refused the write (ENOSPC, EIO, read-only, ...)
    ├── CheckpointLocked            another tailer holds this spool's checkpoint (fatal)
    └── CheckpointCorrupt           neither the checkpoint nor its temp file can be read (fatal)

An ``AppendRefused`` guarantees that nothing of the refused append is left in the
spool: the receiver may answer 503 and the client may simply send it again.
"""

from __future__ import annotations

__all__ = [
    "AppendRefused",
    "CheckpointCorrupt",
    "CheckpointLocked",
    "SpoolError",
    "SpoolFull",
    "SpoolUnwritable",
]


class SpoolError(Exception):
    """Base class of every error the spooler raises."""


class AppendRefused(SpoolError):
    """Nothing of the append was written; try again after ``retry_after_seconds``."""

    def __init__(self, message: str, *, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class SpoolFull(AppendRefused):
    """The spool is over ``max_spool_bytes`` or the disk is under ``min_free_bytes``."""


class SpoolUnwritable(AppendRefused):
    """The operating system refused the write or the segment could not be opened."""


class CheckpointLocked(SpoolError):
    """A second tailer tried to use a spool whose checkpoint is already held."""


class CheckpointCorrupt(SpoolError):
    """The checkpoint on disk cannot be parsed; refusing to guess offsets."""
