"""Test helpers: live servers on 127.0.0.1 port 0, subprocess runners, spool readers."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from receiver.app import create_app
from receiver.config import ReceiverConfig
from receiver.server import bind_socket, make_server
from spooler import iter_chunks, list_segments
from tests.conftest import child_env


def spool_lines(spool_dir: Path) -> list[bytes]:
    """Every complete line in the spool, segment by segment."""
    out = []
    for segment in list_segments(spool_dir, probe=False):
        for chunk in iter_chunks(segment.path):
            out.extend(chunk.data.splitlines(keepends=True))
    return out


def spool_events(spool_dir: Path) -> list[dict]:
    return [json.loads(line) for line in spool_lines(spool_dir)]


class LiveReceiver:
    """A real waitress server with the receiver app, in this process, on an ephemeral port."""

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        self.app = create_app(config)
        self.state = self.app.extensions["spoolship"]
        sock = bind_socket("127.0.0.1", 0, reuse_port=False)
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = make_server(self.app, sock, config, keys=self.state.keys)
        self.probes = None
        if config.probe_port is not None:
            from receiver.probe_listener import ProbeListener

            self.probes = ProbeListener(self.state, config, bind_socket("127.0.0.1", config.probe_port,
                                                                        reuse_port=False)).start()
            self.probe_url = f"http://127.0.0.1:{self.probes.port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        def close_all():
            for dispatcher in list(self.server._map.values()):
                dispatcher.close()

        self.server.pull_trigger_thunk(close_all)
        self.thread.join(10)
        self.server.task_dispatcher.shutdown()
        if self.probes is not None:
            self.probes.close()
        self.state.writer.close()


RUNNING: list[Proc] = []  # every Proc started; tests/conftest.py kills what a test left running


class Proc:
    """A `spoolship` sub-command as a real subprocess, its JSON log lines collected."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        self.args = args
        self.logs: list[dict] = []
        self.raw: list[str] = []
        full_env = child_env()
        full_env.update(env or {})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "spoolship", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env, text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        RUNNING.append(self)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.raw.append(line)
            with contextlib.suppress(ValueError):
                self.logs.append(json.loads(line))

    def wait_for_log(self, event: str, timeout: float = 30, **fields) -> dict:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for record in self.logs[seen:]:
                if record.get("event") == event and all(record.get(k) == v for k, v in fields.items()):
                    return record
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no log {event!r} {fields} within {timeout}s; output:\n{''.join(self.raw[-50:])}")

    def stop(self, sig: int = 15, timeout: float = 60) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
        try:
            return self.process.wait(timeout)
        finally:
            self._reader.join(5)

    def kill(self) -> None:
        """SIGKILL this process and any children it had (a supervisor's workers)."""
        import psutil

        if self.process.poll() is None:
            try:
                children = psutil.Process(self.process.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                children = []
            self.process.kill()
            for child in children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
        self.process.wait(30)


def start_receiver(spool_dir: Path, *extra: str) -> tuple[Proc, str]:
    """`spoolship receive` on port 0; returns the process and its base URL."""
    proc = Proc("receive", "--spool-dir", str(spool_dir), "--port", "0", "--min-free-bytes", "0", *extra)
    workers = "--workers" in extra and extra[extra.index("--workers") + 1] != "1"
    record = proc.wait_for_log("supervisor started" if workers else "receiver listening")
    return proc, f"http://127.0.0.1:{record['port']}"


def start_tailer(spool_dir: Path, stream: str, endpoint: str, *extra: str, firehose: bool = False) -> Proc:
    """`spoolship tail` to ``stream`` (a Firehose delivery stream with ``firehose``)."""
    proc = Proc("tail", "--spool-dir", str(spool_dir), "--delivery-stream" if firehose else "--stream", stream,
                "--endpoint-url", endpoint,
                "--linger", "0.05", "--checkpoint-interval", "0.2", "--poll-interval", "0.5",
                "--max-backoff", "0.5", *extra)
    proc.wait_for_log("tailer started")
    return proc


def wait_until(predicate, timeout: float = 60, interval: float = 0.1, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"{message} not reached within {timeout}s")


def write_segments(spool_dir: Path, writer_id: str, count: int, *, segment_bytes: int = 256 * 1024,
                   size: int = 120) -> list[bytes]:
    """Append ``count`` numbered lines through a real writer and seal; returns the lines."""
    from spooler import FsyncPolicy, SpoolWriter, WriterConfig

    lines = []
    pad = b"p" * max(0, size - 40)
    with SpoolWriter(WriterConfig(spool_dir, writer_id, segment_bytes=segment_bytes, min_free_bytes=0,
                                  fsync=FsyncPolicy.NEVER)) as writer:
        for i in range(count):
            line = b'{"w":"%s","n":%d,"p":"%s"}\n' % (writer_id.encode(), i, pad)
            writer.append(line)
            lines.append(line)
    return lines


def write_sealed(path: Path, data: bytes) -> None:
    """Put ``data`` at ``path`` as a writer's seal leaves a segment: written aside, marked
    (:func:`spooler.segment_files.mark_sealed`: ctime past mtime), renamed in. A file written straight under
    its final name is a copy-in, which the tailer keeps for the copy-in grace (30 s) after shipping it."""
    from spooler.segment_files import mark_sealed

    aside = path.with_name(".aside-" + path.name)
    aside.write_bytes(data)
    fd = os.open(aside, os.O_RDONLY)
    try:
        mark_sealed(fd)
    finally:
        os.close(fd)
    os.rename(aside, path)


def segments_left(spool_dir: Path) -> int:
    from spooler import list_segments

    return len(list_segments(spool_dir, probe=False))
