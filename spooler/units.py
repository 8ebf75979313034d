"""Parsing of the sizes and durations that every command accepts.

Kept in the spooler (standard library only) because both the receiver's and the
tailer's command lines take the same kinds of values.
"""

from __future__ import annotations

import re

__all__ = ["parse_duration", "parse_size"]

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Return a byte count from ``"1048576"``, ``"64MiB"``, ``"1.5GB"`` and the like."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"size must not be negative: {text}")
        return text
    match = _SIZE_RE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (use a byte count, or e.g. 64MiB, 1GB)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


_DURATION_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str | float) -> float:
    """Return seconds from ``"1.5"``, ``"250ms"``, ``"2m"`` and the like."""
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"duration must not be negative: {text}")
        return float(text)
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use seconds, or e.g. 250ms, 2m)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or ""]
