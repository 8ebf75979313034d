"""Whether some process holds a file open for writing: read from ``/proc/<pid>/fd`` and ``fdinfo``.

A sealed segment the tailer never saw a spool writer write (copied in under its
final name: ``jq … > spool/x.ndjson``, ``kubectl exec cat``) may still be
written after a pause at a line end: unlinking it then sends the producer's
next lines into a deleted inode. So before such a file is deleted, the
processes this one can see are asked (Linux ``/proc``; a producer in another
PID namespace is invisible — the copy-in grace of :mod:`tailer.identity`
covers that). Cost: one ``stat`` per open descriptor the tailer can see, paid
only while such files wait for deletion, and shared: one look at ``/proc``
answers for every file (:class:`WriterScan`), at most once per
:data:`CHECK_EVERY_SECONDS` — a backlog of thousands of segments after a
restart costs one scan a second, not one per segment.
"""

from __future__ import annotations

import os
import time

__all__ = ["CHECK_EVERY_SECONDS", "WriterScan", "open_for_writing"]

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


def open_for_writing() -> dict[tuple[int, int], int]:
    """(``st_dev``, ``st_ino``) of every file some process holds open for writing -> one such pid
    (empty without ``/proc``)."""
    found: dict[tuple[int, int], int] = {}
    try:
        pids = [name for name in os.listdir(_PROC) if name.isdigit()]
    except OSError:
        return found
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
            key = (st.st_dev, st.st_ino)
            if key not in found and _opened_for_writing(pid, fd):
                found[key] = int(pid)
    return found


class WriterScan:
    """One ``/proc`` scan shared by every file waiting for deletion. A file asks with the wall time its
    quiet period ended: only a scan begun after that moment answers for it (a producer that reopened the
    file before then is seen). A scan is reused for ``CHECK_EVERY_SECONDS``, then taken again (a file
    found open is asked about again later: its producer may have closed it)."""

    def __init__(self, scan=open_for_writing, wall=time.time, monotonic=time.monotonic) -> None:
        self._scan, self._wall, self._monotonic = scan, wall, monotonic
        self._taken_at = float("-inf")  # wall time the last scan began (quiet periods are wall times: mtimes)
        self._taken_mono = float("-inf")  # and its monotonic time (the rate limit, whatever the wall clock does)
        self._writers: dict[tuple[int, int], int] = {}

    def writer_of(self, dev: int, ino: int, quiet_since: float) -> int | None | bool:
        """The pid holding the file open for writing, None if none, or False: not known yet (ask later)."""
        if self._monotonic() - self._taken_mono >= CHECK_EVERY_SECONDS:
            self._taken_at, self._taken_mono = self._wall(), self._monotonic()
            self._writers = self._scan()
        if self._taken_at < quiet_since:
            return False
        return self._writers.get((dev, ino))
