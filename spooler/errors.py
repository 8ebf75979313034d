"""The spooler's error hierarchy.

    SpoolError                      base of everything raised by spooler
    ├── AppendFailed                an append did not succeed; answer 503, retry after the hint
    │   ├── AppendRefused           nothing of the append was written (``written = "none"``)
    │   │   ├── SpoolFull           byte cap or free-disk floor reached
    │   │   └── SpoolUnwritable     the disk refused the write (ENOSPC, EIO, read-only, ...)
    │   └── AppendUncertain         the bytes may or may not be in the spool (``written = "unknown"``):
    │                               their fsync failed, or the write was cut short and sealed
    ├── CheckpointLocked            another tailer holds this spool's checkpoint (fatal)
    └── CheckpointCorrupt           the stable checkpoint cannot be read, nor a temp file (fatal)

An ``AppendRefused`` guarantees that nothing of the refused append is left in the
spool: the client may simply send it again. An ``AppendUncertain`` does not: the
events may still be delivered (the page cache had them; the tailer ships what it
reads), so a retry may duplicate them — send an ``_id`` to deduplicate. It never
means "durable": no success is ever reported for bytes whose fsync failed.
"""

from __future__ import annotations

__all__ = [
    "AppendFailed",
    "AppendRefused",
    "AppendUncertain",
    "CheckpointCorrupt",
    "CheckpointLocked",
    "SpoolError",
    "SpoolFull",
    "SpoolUnwritable",
]


class SpoolError(Exception):
    """Base class of every error the spooler raises."""


class AppendFailed(SpoolError):
    """The append did not succeed; try again after ``retry_after_seconds``.

    ``written`` says what is known of its bytes: ``"none"`` or ``"unknown"``.
    """

    written = "unknown"

    def __init__(self, message: str, *, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class AppendRefused(AppendFailed):
    """Nothing of the append was written."""

    written = "none"


class SpoolFull(AppendRefused):
    """The spool is over ``max_spool_bytes`` or the disk is under ``min_free_bytes``."""


class SpoolUnwritable(AppendRefused):
    """The operating system refused the write or the segment could not be opened."""


class AppendUncertain(AppendFailed):
    """The bytes reached the file but their durability is unknown (a failed fsync or a torn write).

    The segment they are in has been sealed: nothing more is acknowledged from it.
    """

    written = "unknown"


class CheckpointLocked(SpoolError):
    """A second tailer tried to use a spool whose checkpoint is already held."""


class CheckpointCorrupt(SpoolError):
    """The checkpoint on disk cannot be parsed; refusing to guess offsets."""
