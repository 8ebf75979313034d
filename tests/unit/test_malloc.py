"""Pinned malloc thresholds give freed request buffers back; unpinned glibc keeps them (the reason to pin).

Each case runs in a fresh interpreter: allocate and free a 16 MiB buffer three
times, from the main thread and from a second thread (its own arena), and see
how much resident memory stays behind.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from tests.conftest import child_env

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")

SCRIPT = r"""
import sys, threading
from pathlib import Path
from receiver.malloc import pin_malloc

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

pinned = pin_malloc() if sys.argv[1] == "pin" else False
def churn():
    for _ in range(3):
        buffer = b"x" * (16 << 20)
        del buffer
base = rss()
churn()
worker = threading.Thread(target=churn)
worker.start()
worker.join()
print(pinned, rss() - base)
"""


def retained(mode: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                         env=child_env()).stdout.split()
    return out[0] == "True", int(out[1])


def test_freed_buffers_leave_the_process_once_pinned():
    pinned, kept = retained("pin")
    assert pinned
    assert kept < 4 * 1024 * 1024, kept


def test_unpinned_glibc_keeps_them_resident():
    pinned, kept = retained("none")
    assert not pinned
    assert kept >= 12 * 1024 * 1024, f"glibc returned freed buffers by itself ({kept} bytes kept): is pinning still needed?"
