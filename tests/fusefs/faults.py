"""Faults the disk injects: an errno, a short write, a slowed or held call — on chosen
operations and paths.

A rule matches an operation name and an ``fnmatch`` pattern on the path inside
the mount (for a rename, either name). It may let the first ``skip`` matching
calls through, then fire ``times`` times (``None``: until cleared). Firing can
delay the call, hold it until released (a forced interleaving: the test knows
the call is in flight and decides when it ends), and then fail it with
``errno`` or, for a write, write only half the bytes and return that count.
A rule with neither ``errno`` nor ``short`` only delays or holds.

Operation names: ``create``, ``open``, ``read``, ``write``, ``truncate``,
``fsync`` (file fsync and fdatasync), ``fsyncdir``, ``rename``, ``unlink``,
``mkdir``, ``rmdir``, ``readdir``, ``statfs``, ``flush`` (every ``close`` of a
file descriptor: its errno is what ``close`` returns, as NFS or a FUSE file
system reports a deferred write error; the descriptor is closed all the same),
or ``*`` for any of them. An ``fsync`` rule may tell ``fsync`` from
``fdatasync`` (``datasync``). A ``write`` or ``truncate`` rule with
``grows_only`` fires only for a call that makes the file larger: a full disk
(``ENOSPC`` with ``grows_only``) still lets a file be rewritten in place, as a
disk with no free block left does for blocks already allocated.
"""

from __future__ import annotations

import errno as errno_module
import fnmatch
from dataclasses import asdict, dataclass

__all__ = ["OPERATIONS", "FaultRule"]

OPERATIONS = frozenset({"create", "open", "read", "write", "truncate", "fsync", "fsyncdir", "rename",
                        "unlink", "mkdir", "rmdir", "readdir", "statfs", "flush", "*"})


@dataclass
class FaultRule:
    op: str
    path: str = "*"
    errno: str | None = None  # a name from the errno module: "ENOSPC", "EIO", ...
    short: bool = False
    times: int | None = None
    skip: int = 0
    delay_seconds: float = 0.0
    hold: bool = False
    datasync: bool | None = None  # fsync only: True matches fdatasync, False a full fsync, None both
    grows_only: bool = False  # write/truncate only: fire only when the call makes the file larger

    def __post_init__(self) -> None:
        if self.op not in OPERATIONS:
            raise ValueError(f"unknown operation {self.op!r}; one of {sorted(OPERATIONS)}")
        if self.errno is not None and not hasattr(errno_module, self.errno):
            raise ValueError(f"unknown errno {self.errno!r}")
        if self.short and self.op not in ("write", "*"):
            raise ValueError("only a write can be short")
        if self.grows_only and self.op not in ("write", "truncate", "*"):
            raise ValueError("only a write or a truncate can grow a file")

    @property
    def errno_value(self) -> int | None:
        return getattr(errno_module, self.errno) if self.errno else None

    def matches(self, op: str, paths: tuple[str, ...], datasync: bool | None = None, grows: bool | None = None) -> bool:
        if self.datasync is not None and datasync is not None and self.datasync != datasync:
            return False
        if self.grows_only and not grows:
            return False
        return self.op in (op, "*") and any(fnmatch.fnmatchcase(p, self.path) for p in paths if p)

    def to_json(self) -> dict:
        return asdict(self)
