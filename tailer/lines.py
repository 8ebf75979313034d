"""Spool lines: a chunk read from a segment, split at its newlines.

A line is the bytes up to and including a ``\\n``; bytes after the last newline are not a line yet
(a write still in progress, or a torn one). The packers (tailer/packing.py) and the KPL encoder's
Python reference (tailer/kpl.py) split the same way.
"""

from __future__ import annotations

import re

__all__ = ["LINE", "split_lines"]

LINE = re.compile(rb"[^\n]*\n")


def split_lines(data: bytes) -> list[bytes]:
    """The lines of a chunk, each with its ``\\n`` (bytes after the last newline are left out).

    ``bytes.splitlines`` is one C loop but also splits at ``\\r``, which compact JSON never holds
    raw (it is escaped in strings) but a line in the spool might: then the regular expression.
    """
    if b"\r" in data or not data.endswith(b"\n"):
        return LINE.findall(data)
    return data.splitlines(True)
