"""Let freed request buffers leave the process, so that a worker's RSS follows its memory budget.

glibc's malloc raises its mmap threshold each time a large block is freed (up
to 32 MiB): after one large request, the next ones' buffers come from the heap
or a per-thread arena, and freeing them keeps them resident. With 8 waitress
threads (8 arenas) a worker keeps the high-water mark of each thread's largest
request: measured, a storm of bombs held 143 MB where the budget allowed 40 MiB.
Pinning the thresholds (what ``MALLOC_MMAP_THRESHOLD_=131072`` would do at exec)
makes every block over 128 KiB its own mapping, returned when freed, and caps
the arenas. Only glibc has ``mallopt`` with these meanings; elsewhere this is a
no-op that says so. Process-wide: called by the CLI, never by the library.
tests/unit/test_malloc.py fails if glibc stops behaving this way.
"""

from __future__ import annotations

import ctypes
import platform

__all__ = ["pin_malloc"]

# glibc <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value
TRIM_THRESHOLD_BYTES = 128 * 1024
ARENA_MAX = 2


def pin_malloc() -> bool:
    """Pin glibc's mmap and trim thresholds and cap its arenas; False where that is not possible."""
    libc_name, _ = platform.libc_ver()
    if libc_name != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all(mallopt(option, value) == 1 for option, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES), (M_ARENA_MAX, ARENA_MAX)))
