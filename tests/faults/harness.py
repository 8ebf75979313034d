"""The fault-injection harness: real processes, real load, and an account of every event.

A :class:`Pipeline` runs a receiver (``--workers 2``) and a tailer as real
processes on one spool, in front of a real Kinesis-API server through a
:class:`FaultProxy`. :class:`Load` posts events with client-chosen ``_id``s from
several threads and remembers each one that got a 201, as the exact bytes it
sent. :func:`account` reads the whole stream back and checks: lost =
acknowledged − delivered is empty; duplicates are counted; every delivered
event is byte-identical to what was accepted (the sent JSON plus the
receiver's ``_received_at``).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.helpers import Proc, segments_left, start_receiver, start_tailer, wait_until
from tests.load import Load  # noqa: F401 (the scenarios import it from here)
from tests.servers.fault_proxy import FaultProxy
from tests.servers.kinesis import KinesisServer

RECEIVED_AT = "_received_at"


class Pipeline:
    def __init__(self, server: KinesisServer, spool: Path, *, shards: int = 2, receiver_args=(), tailer_args=()):
        self.server = server
        self.spool = spool
        self.stream = server.create_stream(shards=shards)
        self.proxy = FaultProxy(server.port, seed=random.randrange(1 << 30))
        self.receiver_args = ["--workers", "2", "--threads", "8", *receiver_args]
        self.tailer_args = ["--concurrency", "3", *tailer_args]
        self.receiver: Proc | None = None
        self.tailer: Proc | None = None
        self.url = ""
        self.rss = RssSampler(self)
        self.notes: list[str] = []

    def start(self) -> Pipeline:
        self.start_receiver()
        self.start_tailer()
        self.rss.start()
        return self

    def start_receiver(self) -> None:
        self.receiver, url = start_receiver(self.spool, *self.receiver_args)
        if self.url:
            self._wait_listening(self.receiver)
        self.url = url
        self._wait_listening(self.receiver)

    def _wait_listening(self, proc: Proc) -> None:
        wait_until(lambda: sum(1 for r in proc.logs if r.get("event") == "receiver listening") >= 2,
                   timeout=60, message="both receiver workers listening")

    def start_tailer(self) -> None:
        self.tailer = start_tailer(self.spool, self.stream, self.proxy.endpoint, *self.tailer_args)

    def receiver_pids(self) -> list[int]:
        try:
            parent = psutil.Process(self.receiver.process.pid)
            return [parent.pid, *(c.pid for c in parent.children())]
        except psutil.NoSuchProcess:
            return []

    def worker_pids(self) -> list[int]:
        """The spawned workers (not multiprocessing's resource tracker, also a child)."""
        pids = []
        for pid in self.receiver_pids()[1:]:
            try:
                if "spawn_main" in " ".join(psutil.Process(pid).cmdline()):
                    pids.append(pid)
            except psutil.NoSuchProcess:
                pass
        return pids

    def kill9_tailer_and_restart(self) -> None:
        self.tailer.kill()
        self.notes.append("tailer kill -9")
        self.start_tailer()

    def kill9_receiver(self) -> None:
        """SIGKILL the supervisor and every worker at once (a crashed container)."""
        pids = self.receiver_pids()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        self.receiver.process.wait(30)
        for pid in pids[1:]:
            wait_until(lambda p=pid: not psutil.pid_exists(p) or psutil.Process(p).status() == "zombie",
                       timeout=30)
        self.notes.append("receiver kill -9 (all processes)")

    def stop(self, *, drain_timeout: float = 120) -> dict:
        """SIGTERM the receiver (seal), then wait for the spool to empty and SIGTERM the tailer."""
        codes = {}
        if self.receiver and self.receiver.process.poll() is None:
            codes["receiver"] = self.receiver.stop(signal.SIGTERM)
        wait_until(lambda: segments_left(self.spool) == 0, timeout=drain_timeout, interval=0.2,
                   message="spool drained")
        codes["tailer"] = self.tailer.stop(signal.SIGTERM)
        self.rss.stop()
        self.proxy.close()
        return codes


class RssSampler(threading.Thread):
    """Peak RSS of the receiver's processes (per process) and of the tailer."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__(daemon=True)
        self.pipeline = pipeline
        self.receiver_peak = 0
        self.tailer_peak = 0
        self.receiver_samples: list[int] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.2):
            worst = 0
            for pid in self.pipeline.receiver_pids():
                with contextlib.suppress(psutil.NoSuchProcess):
                    worst = max(worst, psutil.Process(pid).memory_info().rss)
            self.receiver_peak = max(self.receiver_peak, worst)
            self.receiver_samples.append(worst)
            with contextlib.suppress(psutil.NoSuchProcess, AttributeError):
                self.tailer_peak = max(self.tailer_peak, psutil.Process(self.pipeline.tailer.process.pid).memory_info().rss)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


@dataclass
class Account:
    scenario: str
    acknowledged: int
    delivered: int
    lost: list[str] = field(default_factory=list)
    duplicated: int = 0
    mismatched: list[str] = field(default_factory=list)
    receiver_peak_rss_mib: float = 0.0
    tailer_peak_rss_mib: float = 0.0
    notes: str = ""

    def line(self) -> str:
        return (f"{self.scenario}: acknowledged={self.acknowledged} delivered={self.delivered} "
                f"lost={len(self.lost)} duplicated={self.duplicated} mismatched={len(self.mismatched)} "
                f"receiver_peak_rss={self.receiver_peak_rss_mib:.0f}MiB tailer_peak_rss={self.tailer_peak_rss_mib:.0f}MiB"
                + (f" ({self.notes})" if self.notes else ""))


SUMMARIES: list[str] = []


def account(scenario: str, pipeline: Pipeline, load: Load) -> Account:
    """Read the stream back and compare it with what was acknowledged."""
    delivered: dict[str, list[bytes]] = {}
    for line in pipeline.server.read_lines(pipeline.stream):
        event = json.loads(line)
        delivered.setdefault(event["_id"], []).append(line)
    result = Account(scenario, acknowledged=len(load.acked), delivered=sum(map(len, delivered.values())),
                     receiver_peak_rss_mib=pipeline.rss.receiver_peak / 1024**2,
                     tailer_peak_rss_mib=pipeline.rss.tailer_peak / 1024**2, notes=", ".join(pipeline.notes))
    for event_id, sent in load.acked.items():
        copies = delivered.get(event_id)
        if not copies:
            result.lost.append(event_id)
            continue
        result.duplicated += len(copies) - 1
        stamp = json.loads(copies[0])[RECEIVED_AT]
        expected = sent[:-1] + b',"%s":"%s"}\n' % (RECEIVED_AT.encode(), stamp.encode())
        if any(copy != expected for copy in copies[:1]):
            result.mismatched.append(event_id)
    SUMMARIES.append(result.line())
    return result
