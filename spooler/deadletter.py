"""Dead letters: lines that can never be shipped, kept with the reason.

Each dead letter is two files in ``<spool>/dead-letter/``: the raw bytes
(``<segment>@<offset>.bin``) and a JSON reason (``<segment>@<offset>.json``).
Names are derived from where the bytes came from, so writing the same dead
letter twice after a crash replaces it instead of duplicating it. Both files,
and the folder's own name, are durable before this returns: the tailer's
checkpoint moves past the bytes right after.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

from .fsutil import atomic_write_bytes, fsync_dir

__all__ = ["DEAD_LETTER_DIR", "count_dead_letters", "write_dead_letter"]

DEAD_LETTER_DIR = "dead-letter"


def write_dead_letter(
    spool_dir: Path, segment_id: str, offset: int, blocks: Iterable[bytes], reason: str, *, tag: str = ""
) -> Path:
    """Store the bytes (given in blocks, so huge lines stay out of memory) and why.

    ``offset`` is where the bytes start in the segment, or where the range they
    came from starts, with ``tag`` telling lines of that range apart.
    """
    folder = Path(spool_dir) / DEAD_LETTER_DIR
    folder.mkdir(exist_ok=True)
    # Every time, not only after mkdir: a crash after an earlier mkdir may have left the folder's
    # name not yet durable, and with it every dead letter in it (the checkpoint is past them).
    fsync_dir(spool_dir)
    stem = f"{segment_id}@{offset}" + (f"-{tag}" if tag else "")
    data_path = folder / f"{stem}.bin"
    tmp = data_path.with_name(data_path.name + ".tmp")
    length = 0
    with open(tmp, "wb") as out:
        for block in blocks:
            out.write(block)
            length += len(block)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, data_path)
    meta = {"segment": segment_id, "offset": offset, "tag": tag, "length": length, "reason": reason,
            "at": time.time()}
    atomic_write_bytes(folder / f"{stem}.json", json.dumps(meta).encode())
    return data_path


def count_dead_letters(spool_dir: Path) -> int:
    folder = Path(spool_dir) / DEAD_LETTER_DIR
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.iterdir() if p.suffix == ".json")
