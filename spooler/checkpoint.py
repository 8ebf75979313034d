"""The tailer's checkpoint: per segment id, the offset up to which Kinesis acknowledged.

Beside each offset, optionally, the identity of the file it was measured in
(``identities``: inode, a hash of its first ``head_bytes`` bytes — at most
``IDENTITY_BYTES_MAX`` — and a hash of the bytes just before the offset): a
segment replaced under the same name (copied over, rewritten) is recognised as
a new file by the tailer and shipped from its first byte. Checkpoints without
identities (older ones, hand-written ones) are read as before. Offsets must be
JSON integers (``true`` is refused, though Python counts it as 1).

Two files of the same reserved size take turns: ``checkpoint.json`` (the
checkpoint) and ``checkpoint.json.tmp`` (the spare, holding the one before). A
save rewrites the spare *in place* — its blocks are already allocated, so a
full disk does not stop it; deleting shipped segments, the only way to free
the disk, waits for a checkpoint — fsyncs it, and swaps the names::

    write the spare in place, fsync     crash: checkpoint.json is the old one
    checkpoint.json -> .json.old        crash: .json.tmp (fsynced) is the new one
    checkpoint.json.tmp -> .json        crash: .json is the new one
    checkpoint.json.old -> .json.tmp    the old one is the spare again
    fsync the directory

so a crash at any instant leaves the old or the new checkpoint. On load the
stable file is preferred, then an intact spare, then ``.old``; start-up puts the
names back in that order. The content is JSON padded with spaces to the
reserved size (``MIN_RESERVED_BYTES``, or four times what it holds), with a
CRC of its fields first: a rewrite in place torn by a power cut (new sectors
before old ones) never parses as a checkpoint. A spare that does not parse was
never the checkpoint — a crash interrupted its writing (the very first write
included) — so it is ignored; only a stable file that does not parse, with no
intact spare beside it, is an error. When the checkpoint outgrows its
reservation, the spare is written anew at the larger size (a full disk refuses
that: the tailer retries, deleting nothing meanwhile).

``checkpoint.lock`` is held with an exclusive ``flock`` for the store's
lifetime, so a second tailer on the same spool fails at once instead of
double-shipping and double-deleting.

Not thread-safe: the tailer's loop owns it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
import zlib
from pathlib import Path

from .errors import CheckpointCorrupt, CheckpointLocked
from .fsutil import close_settled, fsync_dir

__all__ = ["CHECKPOINT_FILE", "IDENTITY_BYTES_MAX", "MIN_RESERVED_BYTES", "CheckpointStore", "read_checkpoint",
           "read_checkpoint_identities"]

CHECKPOINT_FILE = "checkpoint.json"
SPARE_FILE = CHECKPOINT_FILE + ".tmp"
OLD_FILE = CHECKPOINT_FILE + ".old"
LOCK_FILE = "checkpoint.lock"
FORMAT_VERSION = 1
MIN_RESERVED_BYTES = 16 * 1024
log = logging.getLogger(__name__)


def _body(segments: dict[str, int], updated_at: float, identities: dict[str, dict] | None = None) -> bytes:
    doc: dict = {"segments": segments, "updated_at": updated_at, "version": FORMAT_VERSION}
    if identities:
        doc["identities"] = identities
    return json.dumps(doc, sort_keys=True).encode()


def encode(segments: dict[str, int], updated_at: float, identities: dict[str, dict] | None = None) -> bytes:
    """The checkpoint document, unpadded: the CRC of the fields comes first (sorted keys)."""
    crc = zlib.crc32(_body(segments, updated_at, identities))
    doc: dict = {"crc32": crc, "segments": segments, "updated_at": updated_at, "version": FORMAT_VERSION}
    if identities:
        doc["identities"] = identities
    return json.dumps(doc, sort_keys=True).encode()


def _is_count(value: object) -> bool:
    """A non-negative JSON integer (``true`` is not an offset, though Python's bool is an int)."""
    return type(value) is int and value >= 0


# The most bytes an identity hashes (tailer/identity.py HEAD_BYTES): a larger head_bytes (a hand edit)
# would make every open read that much into memory (2**46: a MemoryError at every start).
IDENTITY_BYTES_MAX = 64


def _is_identity(value: object) -> bool:
    """{ino, head_bytes <= IDENTITY_BYTES_MAX, head}, and optionally the digest of the bytes just before the
    offset (``tail``) with the offset it was taken at (``tail_at``)."""
    if not (isinstance(value, dict) and _is_count(value.get("ino")) and _is_count(value.get("head_bytes"))
            and value["head_bytes"] <= IDENTITY_BYTES_MAX and isinstance(value.get("head"), str)):
        return False
    if "tail" in value or "tail_at" in value:
        return isinstance(value.get("tail"), str) and _is_count(value.get("tail_at"))
    return True


def _parse(raw: bytes) -> tuple[dict[str, int], dict[str, dict]]:
    """(offsets, identities) of a checkpoint document."""
    doc = json.loads(raw)
    if not isinstance(doc, dict) or type(doc.get("version")) is not int or doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"unsupported checkpoint version: {doc.get('version') if isinstance(doc, dict) else doc!r}")
    segments = doc.get("segments")
    if not isinstance(segments, dict) or not all(isinstance(k, str) and _is_count(v) for k, v in segments.items()):
        raise ValueError("checkpoint 'segments' must map segment ids to byte offsets")
    # Checkpoints written before identities (and by hand) have none: their segments are taken on their names.
    identities = doc.get("identities", {})
    if not isinstance(identities, dict) or not all(_is_identity(v) for v in identities.values()):
        raise ValueError("checkpoint 'identities' must map segment ids to {ino, head_bytes (at most "
                         f"{IDENTITY_BYTES_MAX}), head[, tail, tail_at]}}")
    # Files written before the CRC (and by hand) have none; every file this module writes has one.
    if "crc32" in doc and doc["crc32"] != zlib.crc32(_body(segments, doc.get("updated_at"), identities or None)):
        raise ValueError("checkpoint CRC does not match its content (a torn write)")
    return dict(segments), dict(identities)


def _load(spool_dir: Path) -> tuple[tuple[dict[str, int], dict[str, dict]], str | None]:
    """(offsets, identities), and which file they came from (None: no checkpoint yet)."""
    problems: dict[str, str] = {}
    for name in (CHECKPOINT_FILE, SPARE_FILE, OLD_FILE):
        try:
            return _parse((spool_dir / name).read_bytes()), name
        except FileNotFoundError:
            continue
        except (ValueError, UnicodeDecodeError) as exc:
            problems[name] = str(exc)
    if CHECKPOINT_FILE in problems:
        detail = "; ".join(f"{name}: {why}" for name, why in problems.items())
        raise CheckpointCorrupt(f"cannot read checkpoint: {detail}")
    for name, why in problems.items():
        log.warning("partial checkpoint file ignored", extra={"file": name, "error": why})
    return ({}, {}), None


def read_checkpoint(spool_dir: Path) -> dict[str, int]:
    """Read the offsets without taking the lock (for ``spoolship status``)."""
    return _load(Path(spool_dir))[0][0]


def read_checkpoint_identities(spool_dir: Path) -> tuple[dict[str, int], dict[str, dict]]:
    """The offsets and the identities they belong to, without taking the lock (for ``spoolship status``)."""
    return _load(Path(spool_dir))[0]


def _reserved_size(needed: int, current: int) -> int:
    if needed <= current:
        return current
    size = MIN_RESERVED_BYTES
    while size < 4 * needed:
        size *= 2
    return size


def _write_in_place(path: Path, data: bytes) -> None:
    """Rewrite ``path`` from byte 0 with ``data`` padded to its size (grown if too small), fsynced."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        size = _reserved_size(len(data) + 1, os.fstat(fd).st_size)
        view = memoryview(data + b" " * (size - len(data) - 1) + b"\n")
        offset = 0
        while offset < len(view):
            offset += os.pwrite(fd, view[offset:], offset)
        os.fsync(fd)
    finally:
        close_settled(fd, path)  # fsynced, or failing anyway


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
        self._write_pid()
        try:
            (self.offsets, self.identities), source = _load(self._dir)
            self._put_names_back(source)
        except BaseException:
            self.close()
            raise
        self.saves = 0

    def _write_pid(self) -> None:
        """For operators only: written in place (a full disk must not stop the tailer from starting)."""
        try:
            os.pwrite(self._lock_fd, f"{os.getpid():<15}\n".encode(), 0)
            os.ftruncate(self._lock_fd, 16)
        except OSError as exc:
            log.warning("tailer pid not written to the lock file", extra={"error": str(exc)})

    def _put_names_back(self, source: str | None) -> None:
        """After a crash mid-save: the checkpoint found becomes ``checkpoint.json``, ``.old`` the spare."""
        moved = False
        if source in (SPARE_FILE, OLD_FILE):
            os.replace(self._dir / source, self._dir / CHECKPOINT_FILE)
            moved = True
        old = self._dir / OLD_FILE
        if os.path.exists(old):
            if os.path.exists(self._dir / SPARE_FILE):
                old.unlink()
            else:
                os.replace(old, self._dir / SPARE_FILE)
            moved = True
        if moved:
            fsync_dir(self._dir)
            log.warning("checkpoint files put back after an interrupted save", extra={"loaded": source})

    def save(self, offsets: dict[str, int], identities: dict[str, dict] | None = None) -> None:
        """Atomically replace the checkpoint with ``offsets`` (the old one becomes the spare).

        ``identities`` (per segment id: ``ino``, ``head_bytes``, ``head``) say which file an offset
        was measured in, so that a file replaced under the same name never inherits it."""
        stable, spare, old = self._dir / CHECKPOINT_FILE, self._dir / SPARE_FILE, self._dir / OLD_FILE
        identities = {k: v for k, v in (identities or {}).items() if k in offsets}
        _write_in_place(spare, encode(offsets, time.time(), identities))
        had_stable = os.path.exists(stable)
        if had_stable:
            os.replace(stable, old)
        os.replace(spare, stable)
        if had_stable:
            os.replace(old, spare)
        fsync_dir(self._dir)
        self.offsets = dict(offsets)
        self.identities = identities
        self.saves += 1
        if not had_stable:
            self._reserve_spare()

    def _reserve_spare(self) -> None:
        """The first save leaves no spare: make one now, while the disk has room (retried next save)."""
        try:
            _write_in_place(self._dir / SPARE_FILE, encode(self.offsets, time.time(), self.identities))
        except OSError as exc:
            log.warning("checkpoint spare not reserved", extra={"error": str(exc)})

    def close(self) -> None:
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
