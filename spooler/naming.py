"""Names on disk: writer ids and segment file names.

``<writer>-<seq>.active`` while a writer appends, ``<writer>-<seq>.ndjson`` once
sealed. ``seq`` is zero-padded so that ``ls`` sorts segments in write order; the
segment id ``<writer>-<seq>`` never changes, so checkpoints survive the rename.
A writer creates a segment under a hidden temporary name, takes its ``flock``
and only then renames it into view, so no reader ever sees an unlocked
``.active`` file of a live writer.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import time
from dataclasses import dataclass

__all__ = [
    "ACTIVE_SUFFIX",
    "SEALED_SUFFIX",
    "SegmentName",
    "new_writer_id",
    "parse_segment_name",
]

ACTIVE_SUFFIX = ".active"
SEALED_SUFFIX = ".ndjson"
CREATING_PREFIX = ".creating-"
PROBE_PREFIX = ".probe-"
SEQ_DIGITS = 8

_WRITERS_IN_THIS_PROCESS = itertools.count()
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
# A writer id never starts with "." or "-": hidden files (".creating-…") are never segments.
_NAME_RE = re.compile(
    rf"^(?P<writer>[A-Za-z0-9_][A-Za-z0-9_.-]*)-(?P<seq>\d{{{SEQ_DIGITS},}})(?P<suffix>\.active|\.ndjson)$"
)


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


def new_writer_id(worker: str | int = "0", *, hostname: str | None = None) -> str:
    """A writer id unique per process: hostname, worker, pid and start time."""
    host = _UNSAFE.sub("_", hostname if hostname is not None else socket.gethostname()).lstrip(".-") or "host"
    worker_part = _UNSAFE.sub("_", str(worker))
    started = _base36(time.time_ns() // 1000)
    nth = next(_WRITERS_IN_THIS_PROCESS)
    return f"{host}_w{worker_part}_p{os.getpid()}_{started}" + (f"_{nth}" if nth else "")


@dataclass(frozen=True, order=True)
class SegmentName:
    """A parsed segment file name."""

    writer: str
    seq: int
    sealed: bool

    @property
    def segment_id(self) -> str:
        return f"{self.writer}-{self.seq:0{SEQ_DIGITS}d}"

    @property
    def active_name(self) -> str:
        return self.segment_id + ACTIVE_SUFFIX

    @property
    def sealed_name(self) -> str:
        return self.segment_id + SEALED_SUFFIX

    @property
    def file_name(self) -> str:
        return self.sealed_name if self.sealed else self.active_name


def parse_segment_name(file_name: str) -> SegmentName | None:
    """Parse ``<writer>-<seq>.active|.ndjson``; ``None`` for anything else in the spool."""
    match = _NAME_RE.match(file_name)
    if match is None:
        return None
    return SegmentName(
        writer=match.group("writer"),
        seq=int(match.group("seq")),
        sealed=match.group("suffix") == SEALED_SUFFIX,
    )
