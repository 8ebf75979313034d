"""The tailer's checkpoint: per segment id, the offset up to which Kinesis acknowledged.

``checkpoint.json`` is versioned and replaced atomically (temp, fsync, rename,
fsync dir), so a crash at any instant leaves the old or the new file. On load
the stable file is preferred; if it is missing or unreadable an intact temp
file (from a write interrupted after its fsync) is used. A temp file that does
not parse was never the checkpoint — a crash interrupted its writing (the very
first write included) — so it is ignored; only a stable file that does not
parse, with no intact temp file beside it, is an error. ``checkpoint.lock`` is
held with an exclusive ``flock`` for the store's lifetime, so a second tailer on
the same spool fails at once instead of double-shipping and double-deleting.

Not thread-safe: the tailer's loop owns it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from pathlib import Path

from .errors import CheckpointCorrupt, CheckpointLocked
from .fsutil import atomic_write_bytes

__all__ = ["CHECKPOINT_FILE", "CheckpointStore", "read_checkpoint"]

CHECKPOINT_FILE = "checkpoint.json"
LOCK_FILE = "checkpoint.lock"
FORMAT_VERSION = 1
log = logging.getLogger(__name__)


def _parse(raw: bytes) -> dict[str, int]:
    doc = json.loads(raw)
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"unsupported checkpoint version: {doc.get('version') if isinstance(doc, dict) else doc!r}")
    segments = doc.get("segments")
    if not isinstance(segments, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in segments.items()
    ):
        raise ValueError("checkpoint 'segments' must map segment ids to byte offsets")
    return dict(segments)


def read_checkpoint(spool_dir: Path) -> dict[str, int]:
    """Read the offsets without taking the lock (for ``spoolship status``)."""
    stable = spool_dir / CHECKPOINT_FILE
    temp = stable.with_name(stable.name + ".tmp")
    problem = None
    try:
        return _parse(stable.read_bytes())
    except FileNotFoundError:
        pass
    except (ValueError, UnicodeDecodeError) as exc:
        problem = f"{stable.name}: {exc}"
    try:
        return _parse(temp.read_bytes())
    except FileNotFoundError:
        pass
    except (ValueError, UnicodeDecodeError) as exc:
        if problem is not None:
            raise CheckpointCorrupt(f"cannot read checkpoint: {problem}; {temp.name}: {exc}") from None
        log.warning("partial checkpoint temp file ignored", extra={"file": temp.name, "error": str(exc)})
        return {}
    if problem is not None:
        raise CheckpointCorrupt(f"cannot read checkpoint: {problem}")
    return {}


class CheckpointStore:
    """Owns a spool's checkpoint for as long as it is open."""

    def __init__(self, spool_dir: Path) -> None:
        self._dir = Path(spool_dir)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self._dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise CheckpointLocked(
                f"another tailer holds {self._dir / LOCK_FILE}; only one tailer may ship a spool"
            ) from None
        os.ftruncate(self._lock_fd, 0)
        os.write(self._lock_fd, f"{os.getpid()}\n".encode())
        self.offsets: dict[str, int] = read_checkpoint(self._dir)
        self.saves = 0

    def save(self, offsets: dict[str, int]) -> None:
        """Atomically replace the checkpoint with ``offsets``."""
        doc = {"version": FORMAT_VERSION, "updated_at": time.time(), "segments": offsets}
        atomic_write_bytes(self._dir / CHECKPOINT_FILE, json.dumps(doc, sort_keys=True).encode())
        self.offsets = dict(offsets)
        self.saves += 1

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
