"""What keeps a writer unready after the disk failed it, and what clears it.

Two kinds of trouble, cleared by different proof:

- a **write error** (``ENOSPC``, ``EDQUOT``, ``EIO``, a failed create…): cleared
  when an append or the recovery probe writes again;
- a **failed fsync**: cleared only when an fsync succeeds on another segment than
  the one it failed on, or the recovery probe writes a page and fdatasyncs it.
  An append that merely *writes* proves nothing here — every write goes to the
  page cache — so a disk whose every fsync fails stays unready, instead of
  answering ``/readyz`` 200 while every ``?sync=1`` request gets a 503.

Thread-safe: group commit reports fsyncs from whichever thread led them.
"""

from __future__ import annotations

import logging
import threading

__all__ = ["DiskTrouble"]

log = logging.getLogger(__name__)


class DiskTrouble:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.write_error: str | None = None  # set and cleared under the writer's lock
        self._fsync: tuple[str, object] | None = None  # (why, the segment it failed on)

    def fsync_failed(self, why: str, segment: object) -> None:
        with self._lock:
            self._fsync = (why, segment)

    def fsync_succeeded(self, segment: object) -> None:
        with self._lock:
            if self._fsync is not None and self._fsync[1] is not segment:
                self._fsync = None
                log.info("spool fsync works again")

    def disk_proven(self) -> None:
        """The recovery probe wrote and fsynced: every trouble is over."""
        with self._lock:
            self.write_error = None
            self._fsync = None

    def __bool__(self) -> bool:
        return self.write_error is not None or self._fsync is not None

    def reason(self) -> str | None:
        """Why appends should not be sent here, or ``None``."""
        if self.write_error is not None:
            return f"spool unwritable: {self.write_error}"
        trouble = self._fsync
        return f"spool fsync failing: {trouble[0]}" if trouble is not None else None
