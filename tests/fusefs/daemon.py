"""The power-cut file system: a passthrough FUSE daemon (mfusepy over libfuse3) with a model
of what is durable, fault rules, and a control socket.

usage: python -m tests.fusefs.daemon BACKING MOUNTPOINT CONTROL_SOCKET

Every call goes to the backing directory (absolute paths: libfuse may chdir to
/) and is mirrored in the :mod:`.model`; one lock serialises them, except the
delays and holds of fault rules, which wait outside it. The control socket
takes one JSON object per line and answers one per line (see ``Control``):
inject and clear rules, count what fired, release held calls, and ``cut`` —
freeze a subtree (every later call in it fails with EIO, as on a dead machine)
and write its durable image as a new subtree beside it, for the test to
"reboot" on. When the controlling test process goes away the daemon unmounts
itself, so a crashed test never leaves a dead mount behind.

Limits of the daemon (beyond the model's): no hard links, symlinks or extended
attributes; a file unlinked while open can still be read, written, fsynced and
closed, but ``fstat`` on it fails with ESTALE (libfuse has no path for it).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import mfusepy
from mfusepy import FUSE, FuseOSError, Operations

from tests.fusefs.faults import FaultRule
from tests.fusefs.model import DirNode, FileNode, load_tree, materialize

log = logging.getLogger("fusefs")
_STAT_FIELDS = ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size",
                "st_atime_ns", "st_mtime_ns", "st_ctime_ns")


def _backing_flags(flags: int) -> int:
    """Writable handles are opened read-write: an fsync reads the dirty ranges back for the model.
    O_APPEND is dropped: the kernel already gives each write its offset (the end of the file)."""
    flags &= ~(os.O_APPEND | os.O_CREAT | os.O_EXCL)
    if flags & os.O_ACCMODE == os.O_WRONLY:
        flags = (flags & ~os.O_ACCMODE) | os.O_RDWR
    return flags


def _split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent or "/", name


class _Armed:
    """A rule with its counters."""

    def __init__(self, rule_id: int, rule: FaultRule) -> None:
        self.id = rule_id
        self.rule = rule
        self.seen = 0
        self.fired = 0

    def take(self) -> bool:
        self.seen += 1
        if self.seen <= self.rule.skip or (self.rule.times is not None and self.fired >= self.rule.times):
            return False
        self.fired += 1
        return True


class PowerCutFS(Operations):
    use_ns = True

    def __init__(self, backing: Path) -> None:
        self.root = str(backing.resolve())
        self._mutex = threading.RLock()
        self.tree = load_tree(Path(self.root))
        self.handles: dict[int, tuple[FileNode, str]] = {}
        self.rules: dict[int, _Armed] = {}
        self._next_rule = 1
        self.frozen: list[str] = []
        self.calls: Counter = Counter()
        self.held = 0
        self.release_event = threading.Event()
        self.mounted = threading.Event()

    # -- plumbing ------------------------------------------------------------------------

    def _real(self, path: str) -> str:
        return self.root + path

    def _node(self, path: str) -> FileNode | DirNode | None:
        node: FileNode | DirNode | None = self.tree
        for part in filter(None, path.split("/")):
            if not isinstance(node, DirNode):
                return None
            node = node.current.get(part)
        return node

    def _dir(self, path: str) -> DirNode:
        node = self._node(path)
        if not isinstance(node, DirNode):
            raise FuseOSError(errno.ENOENT)
        return node

    def _is_frozen(self, path: str) -> bool:
        return any(path == f or path.startswith(f + "/") for f in self.frozen)

    def _enter(self, op: str, *paths: str, datasync: bool | None = None, grows: bool | None = None) -> FaultRule | None:
        """Count the call, find the rule that fires for it, wait out its delay or hold."""
        with self._mutex:
            self.calls[op if datasync is None else ("fdatasync" if datasync else "fsync")] += 1
            if any(self._is_frozen(p) for p in paths if p):
                raise FuseOSError(errno.EIO)
            fired = next((a.rule for a in self.rules.values()
                          if a.rule.matches(op, paths, datasync, grows) and a.take()), None)
        if fired is None:
            return None
        if fired.delay_seconds:
            time.sleep(fired.delay_seconds)
        if fired.hold:
            with self._mutex:
                self.held += 1
            self.release_event.wait()
            with self._mutex:
                self.held -= 1
        with self._mutex:
            if any(self._is_frozen(p) for p in paths if p):
                raise FuseOSError(errno.EIO)  # the power went while it was held
        if fired.errno_value is not None:
            raise FuseOSError(fired.errno_value)
        return fired

    def _handle(self, fh: int, path: str | None) -> tuple[FileNode, str]:
        node, opened_as = self.handles[fh]
        return node, path or opened_as

    # -- metadata -------------------------------------------------------------------------

    def getattr(self, path, fh=None):
        if path is not None and self._is_frozen(path):
            raise FuseOSError(errno.EIO)
        if fh is not None and fh in self.handles:
            st = os.fstat(fh)
        elif path is None:
            raise FuseOSError(errno.ENOENT)
        else:
            st = os.lstat(self._real(path))
        return {key.replace("_ns", ""): getattr(st, key) for key in _STAT_FIELDS}

    def access(self, path, amode):
        if not os.access(self._real(path), amode):
            raise FuseOSError(errno.EACCES)
        return 0

    def chmod(self, path, mode):
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path, uid, gid):
        os.chown(self._real(path), uid, gid)
        return 0

    def utimens(self, path, times=None):
        os.utime(self._real(path), ns=times) if times else os.utime(self._real(path))
        return 0

    def statfs(self, path):
        self._enter("statfs", path)
        st = os.statvfs(self._real(path))
        return {key: getattr(st, key) for key in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                                                   "f_files", "f_ffree", "f_favail", "f_flag", "f_namemax")}

    def readdir(self, path, fh):
        self._enter("readdir", path)
        return [".", "..", *os.listdir(self._real(path))]

    # -- names ----------------------------------------------------------------------------

    def create(self, path, mode, flags=os.O_WRONLY):
        self._enter("create", path)
        with self._mutex:
            parent, name = _split(path)
            directory = self._dir(parent)
            fd = os.open(self._real(path), _backing_flags(flags) | os.O_CREAT | (flags & os.O_EXCL), mode)
            node = directory.current.get(name)
            if not isinstance(node, FileNode):
                node = directory.current[name] = FileNode()
            if flags & os.O_TRUNC:
                node.truncated(0)
            self.handles[fd] = (node, path)
            return fd

    def open(self, path, flags):
        self._enter("open", path)
        with self._mutex:
            node = self._node(path)
            if not isinstance(node, FileNode):
                raise FuseOSError(errno.ENOENT if node is None else errno.EISDIR)
            fd = os.open(self._real(path), _backing_flags(flags))
            if flags & os.O_TRUNC:
                node.truncated(0)
            self.handles[fd] = (node, path)
            return fd

    def mkdir(self, path, mode):
        self._enter("mkdir", path)
        with self._mutex:
            parent, name = _split(path)
            directory = self._dir(parent)
            os.mkdir(self._real(path), mode)
            directory.current[name] = DirNode()
        return 0

    def rmdir(self, path):
        self._enter("rmdir", path)
        with self._mutex:
            parent, name = _split(path)
            os.rmdir(self._real(path))
            self._dir(parent).current.pop(name, None)
        return 0

    def unlink(self, path):
        self._enter("unlink", path)
        with self._mutex:
            parent, name = _split(path)
            os.unlink(self._real(path))
            self._dir(parent).current.pop(name, None)
        return 0

    def rename(self, old, new):
        self._enter("rename", old, new)
        with self._mutex:
            (old_parent, old_name), (new_parent, new_name) = _split(old), _split(new)
            os.rename(self._real(old), self._real(new))
            source, target = self._dir(old_parent), self._dir(new_parent)
            node = source.current.pop(old_name)
            target.current[new_name] = node
            for fh, (handle_node, opened_as) in list(self.handles.items()):
                if handle_node is node:
                    self.handles[fh] = (node, new)
                elif opened_as.startswith(old + "/"):
                    self.handles[fh] = (handle_node, new + opened_as[len(old):])
        return 0

    # -- content --------------------------------------------------------------------------

    def read(self, path, size, offset, fh):
        _, where = self._handle(fh, path)
        self._enter("read", where)
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        node, where = self._handle(fh, path)
        rule = self._enter("write", where, grows=offset + len(data) > os.fstat(fh).st_size)
        if rule is not None and rule.short and len(data) > 1:
            data = data[: len(data) // 2]
        with self._mutex:
            if self._is_frozen(where):
                raise FuseOSError(errno.EIO)
            written = os.pwrite(fh, data, offset)
            node.wrote(offset, offset + written)
        return written

    def truncate(self, path, length, fh=None):
        where = path if fh is None else self._handle(fh, path)[1]
        size = os.stat(self._real(where)).st_size if fh is None else os.fstat(fh).st_size
        self._enter("truncate", where, grows=length > size)
        with self._mutex:
            node = self._node(where) if fh is None else self.handles[fh][0]
            if fh is None:
                os.truncate(self._real(where), length)
            else:
                os.ftruncate(fh, length)
            if isinstance(node, FileNode):
                node.truncated(length)
        return 0

    def fsync(self, path, datasync, fh):
        node, where = self._handle(fh, path)
        try:
            self._enter("fsync", where, datasync=bool(datasync))
        except FuseOSError as exc:
            if exc.errno != errno.EIO or not self._is_frozen(where):
                with self._mutex:
                    node.sync_failed()  # fsyncgate: what it should have written is gone for good
            raise
        with self._mutex:
            if self._is_frozen(where):
                raise FuseOSError(errno.EIO)
            node.synced(lambda start, end: os.pread(fh, end - start, start), os.fstat(fh).st_size)
        return 0

    def fsyncdir(self, path, datasync, fh):
        self._enter("fsyncdir", path)
        with self._mutex:
            if self._is_frozen(path):
                raise FuseOSError(errno.EIO)
            self._dir(path).synced()
        return 0

    def flush(self, path, fh):
        # Called at every close() of a descriptor (maybe more than once per handle, after dup):
        # what a rule fails here is what close() returns. Not failed by a cut: the processes of a
        # dead machine release their descriptors, and tests close theirs after a cut.
        where = self._handle(fh, path)[1] if fh in self.handles else path
        if not self._is_frozen(where):
            self._enter("flush", where)
        return 0

    def release(self, path, fh):
        with self._mutex:
            self.handles.pop(fh, None)
        os.close(fh)
        return 0

    def init_with_config(self, conn_info, config_3):
        # (No nullpath_ok: fault rules match paths. With hard_remove, libfuse still passes no path
        # for a file unlinked while open; the calls that take a handle then use the one it was opened as.)
        self.mounted.set()

    # -- control --------------------------------------------------------------------------

    def inject(self, rule: FaultRule) -> int:
        with self._mutex:
            rule_id = self._next_rule
            self._next_rule += 1
            self.rules[rule_id] = _Armed(rule_id, rule)
            self.release_event.clear() if rule.hold else None
            return rule_id

    def clear(self, rule_id: int | None) -> None:
        with self._mutex:
            if rule_id is None:
                self.rules.clear()
            else:
                self.rules.pop(rule_id, None)
            if not any(a.rule.hold for a in self.rules.values()):
                self.release_event.set()

    def cut(self, src: str, dst: str) -> None:
        """Power cut for the subtree ``src``: freeze it, and write its durable image as ``dst``."""
        with self._mutex:
            node = self._dir(src)
            self.frozen.append(src)
            self.release_event.set()  # held calls now fail with EIO
            materialize(node, Path(self._real(dst)))
            parent, name = _split(dst)
            rebooted = load_tree(Path(self._real(dst)))
            directory = self._dir(parent)
            directory.current[name] = rebooted
            directory.durable[name] = rebooted


class Control:
    """One JSON request per line on a Unix socket; one JSON answer per line."""

    def __init__(self, fs: PowerCutFS, sock_path: str, mountpoint: str) -> None:
        self.fs = fs
        self.mountpoint = mountpoint
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(sock_path)
        self.server.listen(1)

    def serve(self) -> None:
        conn, _ = self.server.accept()
        with conn, conn.makefile("rwb") as stream:
            for line in stream:
                try:
                    answer = self.handle(json.loads(line))
                except Exception as exc:  # the test sees the error instead of a hung socket
                    answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                stream.write(json.dumps(answer).encode() + b"\n")
                stream.flush()
                if answer.get("exit"):
                    break
        # The test process is gone (or asked us to go): never leave a dead mount behind.
        subprocess.run(["fusermount3", "-u", "-z", self.mountpoint], check=False)

    def handle(self, request: dict) -> dict:
        fs, cmd = self.fs, request["cmd"]
        if cmd == "ping":
            return {"ok": fs.mounted.wait(30)}
        if cmd == "inject":
            return {"ok": True, "id": fs.inject(FaultRule(**request["rule"]))}
        if cmd == "clear":
            fs.clear(request.get("id"))
            return {"ok": True}
        if cmd == "fired":
            with fs._mutex:
                armed = fs.rules.get(request["id"])
                return {"ok": True, "fired": armed.fired if armed else None}
        if cmd == "stats":
            with fs._mutex:
                return {"ok": True, "calls": dict(fs.calls), "held": fs.held,
                        "fired": {str(a.id): a.fired for a in fs.rules.values()}}
        if cmd == "release":
            fs.release_event.set()
            return {"ok": True}
        if cmd == "cut":
            fs.cut(request["src"], request["dst"])
            return {"ok": True}
        if cmd == "exit":
            return {"ok": True, "exit": True}
        raise ValueError(f"unknown command {cmd!r}")


def main(argv: list[str]) -> int:
    backing, mountpoint, sock_path = Path(argv[0]), argv[1], argv[2]
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    fs = PowerCutFS(backing)
    control = Control(fs, sock_path, mountpoint)
    threading.Thread(target=control.serve, name="control", daemon=True).start()
    with contextlib.suppress(RuntimeError):
        FUSE(fs, mountpoint, foreground=True, nothreads=False, hard_remove=True, direct_io=True,
             fsname="powercutfs", subtype="powercutfs")
    log.warning("unmounted (mfusepy %s)", getattr(mfusepy, "__version__", "?"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
