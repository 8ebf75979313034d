"""kinesalite, started by a test process that is then killed, stops by itself (test servers never outlive
their test run: an orphan of a killed run was found holding its port and memory an hour later)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.servers.kinesis import Kinesalite

ROOT = Path(__file__).resolve().parents[2]
_STARTER = """
import sys, time
from tests.servers.kinesis import Kinesalite
server = Kinesalite().start()
print(server.process.pid, flush=True)
time.sleep(600)
"""


def test_kinesalite_exits_when_the_process_that_started_it_is_killed():
    why_not = Kinesalite.available()
    if why_not:
        pytest.skip(f"kinesalite tests skipped: {why_not}")
    starter = subprocess.Popen([sys.executable, "-c", _STARTER], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        node = psutil.Process(int(starter.stdout.readline()))
        assert node.is_running()
        starter.send_signal(signal.SIGKILL)  # no cleanup runs: only the closed pipe tells kinesalite
        starter.wait(10)
        deadline = time.monotonic() + 10
        while node.is_running() and node.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.05)
        alive = node.is_running() and node.status() != psutil.STATUS_ZOMBIE
        if alive:
            node.kill()
        assert not alive, "kinesalite outlived the process that started it"
    finally:
        if starter.poll() is None:
            starter.kill()
