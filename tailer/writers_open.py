"""Whether some process holds a file open for writing: read from ``/proc/<pid>/fd`` and ``fdinfo``.

A sealed segment the tailer never saw a spool writer write (copied in under its
final name: ``jq … > spool/x.ndjson``, ``kubectl exec cat``) may still be
written after a pause at a line end: unlinking it then sends the producer's
next lines into a deleted inode. So before such a file is deleted, the
processes this one can see are asked (Linux ``/proc``; a producer in another
PID namespace is invisible — the copy-in grace of :mod:`tailer.identity`
covers that). Cost: one ``stat`` per open descriptor on the machine, paid
only for such files, at most once per :data:`CHECK_EVERY_SECONDS` each.
"""

from __future__ import annotations

import os

__all__ = ["CHECK_EVERY_SECONDS", "writer_pid"]

CHECK_EVERY_SECONDS = 1.0
_PROC = "/proc"
_WRITE_MODES = (os.O_WRONLY, os.O_RDWR)


def _opened_for_writing(pid: str, fd: str) -> bool:
    try:
        with open(f"{_PROC}/{pid}/fdinfo/{fd}") as info:
            for line in info:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8) & os.O_ACCMODE in _WRITE_MODES
    except (OSError, ValueError, IndexError):
        return False
    return False


def writer_pid(dev: int, ino: int) -> int | None:
    """The pid of a process holding the file (``st_dev``, ``st_ino``) open for writing, or None (none seen,
    or no ``/proc``)."""
    try:
        pids = [name for name in os.listdir(_PROC) if name.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            fds = os.listdir(f"{_PROC}/{pid}/fd")
        except OSError:
            continue  # gone, or not ours to look at
        for fd in fds:
            try:
                st = os.stat(f"{_PROC}/{pid}/fd/{fd}")
            except OSError:
                continue
            if st.st_ino == ino and st.st_dev == dev and _opened_for_writing(pid, fd):
                return int(pid)
    return None
