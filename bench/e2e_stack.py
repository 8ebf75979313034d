"""A real receiver and tailer on one spool in front of a Kinesis-API server, sampled over time.

Used by bench/end_to_end.py. ``Sampler`` records both processes' CPU (cores) and
RSS and the spool's size every half second, for the plots and the memory targets.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import requests

from bench.common import pin_env
from bench.receiver import free_port

__all__ = ["Sampler", "Stack", "size_of", "spool_bytes", "wait_shipped"]


class Stack:
    """``spoolship receive`` (1 worker, defaults) + ``spoolship tail`` (defaults + ``tailer_args``)."""

    def __init__(self, server, work: Path, name: str, tailer_args=(), endpoint: str | None = None) -> None:
        self.spool = work / name
        self.stream = server.create_stream(shards=4)
        self.port = free_port()
        env = pin_env()
        base = [sys.executable, "-m", "spoolship"]
        self.receiver = subprocess.Popen(base + ["receive", "--spool-dir", str(self.spool), "--port", str(self.port),
                                                 "--log-level", "error", "--min-free-bytes", "0",
                                                 "--max-spool-bytes", str(4 * 1024**3)],
                                         env=env, stderr=subprocess.DEVNULL)
        self.tailer = subprocess.Popen(base + ["tail", "--spool-dir", str(self.spool), "--stream", self.stream,
                                               "--endpoint-url", endpoint or server.endpoint, "--log-level", "error",
                                               *tailer_args], env=env, stderr=subprocess.DEVNULL)
        try:
            self._wait_ready()
        except RuntimeError:
            self._terminate()
            raise
        self.sampler = Sampler({"receiver": self.receiver.pid, "tailer": self.tailer.pid}, self.spool)
        self.sampler.start()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                # /readyz is on the main port unless --probe-port is given (it is not, here).
                if requests.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.receiver.poll() is not None:
                raise RuntimeError(f"receiver exited {self.receiver.returncode} at start-up")
            time.sleep(0.1)
        raise RuntimeError("receiver did not become ready in 60 s")

    def spool_empty(self) -> bool:
        return not any(self.spool.glob("*.ndjson")) and sum(map(size_of, self.spool.glob("*.active"))) == \
            self.shipped_active_bytes()

    def shipped_active_bytes(self) -> int:
        try:
            offsets = json.loads((self.spool / "checkpoint.json").read_text())["segments"]
        except (OSError, ValueError, KeyError):
            return -1
        return sum(offsets.get(p.name.rsplit(".", 1)[0], 0) for p in self.spool.glob("*.active"))

    def spool_bytes(self) -> int:
        return spool_bytes(self.spool)

    def stop(self) -> None:
        self.sampler.stop()
        self._terminate()

    def _terminate(self) -> None:
        for p in (self.receiver, self.tailer):
            p.terminate()
        for p in (self.receiver, self.tailer):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Sampler(threading.Thread):
    def __init__(self, pids: dict[str, int], spool: Path, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.spool = spool
        self.interval = interval
        self.series: list[dict] = []
        self._stop_event = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        last = {name: sum(p.cpu_times()[:2]) for name, p in self.procs.items()}
        while not self._stop_event.wait(self.interval):
            row = {"t": round(time.monotonic() - self.t0, 2)}
            for name, p in self.procs.items():
                try:
                    cpu = sum(p.cpu_times()[:2])
                    row[f"{name}_cpu"] = round((cpu - last[name]) / self.interval, 3)
                    row[f"{name}_rss_mib"] = round(p.memory_info().rss / 1024**2, 1)
                    last[name] = cpu
                except psutil.NoSuchProcess:
                    pass
            row["spool_mib"] = round(spool_bytes(self.spool) / 1024**2, 1)
            self.series.append(row)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


def size_of(path: Path) -> int:
    """A segment's size, 0 once the tailer has deleted it (between the listing and the stat)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def spool_bytes(spool: Path) -> int:
    return sum(map(size_of, spool.glob("*-*.*"))) if spool.exists() else 0


def wait_shipped(stack: Stack, timeout: float) -> float:
    """The monotonic time at which the tailer had shipped everything on the spool."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if stack.spool_empty():
            return time.monotonic()
        time.sleep(0.1)
    raise RuntimeError("the tailer did not catch up in time")
