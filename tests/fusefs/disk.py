"""The test side of the power-cut disk: mount it, inject faults, cut the power.

    disk = PowerCutDisk(tmp_path).mount()
    spool = disk.new_dir("spool-0")                 # made durable through the mount
    rule = disk.inject("fsync", "*.active", errno="EIO", times=1)
    ...
    after = disk.cut(spool, "spool-0-after")        # freeze spool-0, reboot as spool-0-after
    disk.unmount()

``cut`` freezes the subtree (every call in it fails with EIO from then on, like
a dead machine's disk) and returns a new directory holding exactly what the
model says survived (:mod:`tests.fusefs.model`). Processes that were using the
old subtree are to be killed; new ones start on the returned path. Cutting a
subtree instead of remounting keeps each cut at a few milliseconds, so tests
can afford hundreds, and no kernel cache of the old state can leak into the new.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .faults import FaultRule

__all__ = ["PowerCutDisk", "fuse_missing"]

ROOT = Path(__file__).resolve().parents[2]


def fuse_missing() -> str | None:
    """Why this machine cannot run the disk: only a missing ``/dev/fuse`` is a reason to skip."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is absent (no FUSE in this kernel or container)"
    return None


def _check_installed() -> None:
    if shutil.which("fusermount3") is None:
        raise RuntimeError("fusermount3 is missing: `make test` installs Debian's fuse3 package")
    try:
        import mfusepy  # noqa: F401  (loads libfuse3)
    except (ImportError, OSError) as exc:
        raise RuntimeError(f"mfusepy/libfuse3 unusable ({exc}): `make setup` and Debian's fuse3 provide them") from exc


class PowerCutDisk:
    def __init__(self, base: Path) -> None:
        self.base = Path(base).resolve()
        self.backing = self.base / "backing"
        self.mountpoint = self.base / "mnt"
        self.socket_path = self.base / "control.sock"
        self.log_path = self.base / "daemon.log"
        self.process: subprocess.Popen | None = None
        self._stream = None
        self._lock = threading.Lock()
        self._cuts = itertools.count(1)

    # -- lifetime -------------------------------------------------------------------------

    def mount(self, timeout: float = 30.0) -> PowerCutDisk:
        _check_installed()
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.fusefs.daemon", str(self.backing), str(self.mountpoint),
                 str(self.socket_path)], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
        deadline = time.monotonic() + timeout
        while not self.socket_path.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"power-cut disk did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.01)
        sock = self._connect(deadline)
        self._stream = sock.makefile("rwb")
        sock.close()  # the file object keeps the connection
        self._call("ping")
        while not os.path.ismount(self.mountpoint):
            if time.monotonic() > deadline:
                raise RuntimeError(f"power-cut disk not mounted: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.01)
        return self

    def _connect(self, deadline: float) -> socket.socket:
        # The socket file appears at bind(), before the daemon listens: refused until then.
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.socket_path))
                return sock
            except ConnectionRefusedError:
                sock.close()
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"power-cut disk did not listen: {self.log_path.read_text()[-2000:]}") from None
                time.sleep(0.01)

    def unmount(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(Exception):
            self._call("exit")  # the daemon detaches the mount (lazily: frozen machines may hold files)
        with contextlib.suppress(Exception):
            self._stream.close()
        try:
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            # Files still open on the detached mount keep the daemon serving; killing it aborts the
            # connection, and those descriptors then fail with ENOTCONN.
            self.process.kill()
            self.process.wait(10)
        subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], check=False, capture_output=True)
        self.process = None

    # -- the control socket ---------------------------------------------------------------

    def _call(self, cmd: str, **fields) -> dict:
        with self._lock:
            self._stream.write(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
            self._stream.flush()
            answer = json.loads(self._stream.readline() or b'{"ok": false, "error": "daemon gone"}')
        if not answer.get("ok"):
            raise RuntimeError(f"power-cut disk: {cmd} failed: {answer.get('error')}")
        return answer

    def inject(self, op: str, path: str = "*", **options) -> int:
        """Arm a :class:`FaultRule`; returns its id (for :meth:`fired` and :meth:`clear`)."""
        rule = FaultRule(op, path, **options)  # validated here, where the test sees the error
        return self._call("inject", rule=rule.to_json())["id"]

    def clear(self, rule_id: int | None = None) -> None:
        """Remove one rule, or all of them; releases held calls once no holding rule is left."""
        self._call("clear", id=rule_id)

    def fired(self, rule_id: int) -> int:
        return self._call("fired", id=rule_id)["fired"] or 0

    def stats(self) -> dict:
        return self._call("stats")

    def held(self) -> int:
        """How many calls are being held by rules right now."""
        return self._call("stats")["held"]

    def wait_held(self, count: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.held() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no call held within {timeout}s")
            time.sleep(0.002)

    def release(self) -> None:
        self._call("release")

    # -- directories and power ------------------------------------------------------------

    def rel(self, path: Path) -> str:
        return "/" + str(Path(path).resolve().relative_to(self.mountpoint))

    def new_dir(self, name: str) -> Path:
        """A directory at the mount's top, made durable (its name fsynced)."""
        path = self.mountpoint / name
        path.mkdir()
        fd = os.open(self.mountpoint, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return path

    def cut(self, directory: Path, new_name: str | None = None) -> Path:
        """Cut the power under ``directory``; returns the directory that "rebooted" from its disk."""
        new_name = new_name or f"{Path(directory).name}-cut{next(self._cuts)}"
        self._call("cut", src=self.rel(directory), dst="/" + new_name)
        return self.mountpoint / new_name
