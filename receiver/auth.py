"""API keys from ``--api-key-file``: one key per line, ``#`` comments allowed.

Keys are accepted as ``Authorization: Bearer <key>`` or ``X-Api-Key: <key>`` and
compared in constant time against every configured key. The file is checked for
changes at most every ``RELOAD_CHECK_SECONDS`` (on requests and on ``/metrics``
scrapes), so a rotated Kubernetes Secret takes effect without a restart.

A file can be seen half-written (an editor or ``echo >`` writes it in several
steps), so what a reload takes from it is decided here, once:

- it is read stably: stat, read, stat again; a file that changed meanwhile is
  read again;
- complete lines count at once; a last line without its newline counts only
  once the file has stayed unchanged for ``SETTLE_SECONDS`` (a writer may be in
  the middle of it; ``kubectl create secret --from-literal`` never writes one);
- a file changed less than ``SETTLE_SECONDS`` ago that holds no complete key is
  a rewrite in progress: the previous keys stay until it settles;
- a settled file without any key means no key is valid: every request gets 401
  (fail closed), and an error is logged at each check;
- a deleted or unreadable file keeps the last good keys, with an error logged at
  each check and ``file_ok`` false (``spoolship_receiver_api_key_file_ok`` 0);
- a line shorter than ``MIN_KEY_CHARS`` (16) is not a key: a guessable key, or
  the prefix a stalled writer left behind (which the settle rule alone would
  take after 2 s). At start it is an error naming the line; on a reload the line
  is ignored, with an error logged at each check;
- at start, a file without keys or that cannot be read is an error
  (:class:`KeyFileError`, which the CLI shows as a usage error).

Replacing the file atomically (write a temp file, rename it — what the kubelet
does for Secrets) never shows a half-written state at all.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import Unauthorized

__all__ = ["MIN_KEY_CHARS", "RELOAD_CHECK_SECONDS", "SETTLE_SECONDS", "ApiKeys", "KeyFileError"]

log = logging.getLogger(__name__)
RELOAD_CHECK_SECONDS = 5.0
SETTLE_SECONDS = 2.0
READ_ATTEMPTS = 3
MIN_KEY_CHARS = 16  # `openssl rand -hex 16` gives 32


class KeyFileError(ValueError):
    """The key file cannot be used at start: unreadable, without keys, or with a key too short."""


@dataclass(frozen=True)
class _KeyFile:
    signature: tuple[int, int, int, int]  # inode, size, mtime, ctime: any write or replacement changes it
    complete: tuple[bytes, ...]  # keys on lines that end in a newline
    unterminated: bytes | None  # a last line without its newline, if it holds a key
    modified_ns: int
    too_short: tuple[int, ...] = ()  # numbers of complete lines whose key is shorter than MIN_KEY_CHARS
    last_line: int = 1  # the number of the unterminated line

    def tail_key(self, settled: bool) -> bytes | None:
        """The unterminated last line as a key: once settled, and only if long enough."""
        tail = self.unterminated
        return tail if settled and tail is not None and len(tail) >= MIN_KEY_CHARS else None

    def short_lines(self, settled: bool) -> tuple[int, ...]:
        tail_short = settled and self.unterminated is not None and len(self.unterminated) < MIN_KEY_CHARS
        return (*self.too_short, self.last_line) if tail_short else self.too_short


class _Unstable(Exception):
    """The file kept changing while it was read."""


def _read_bytes(path: Path) -> bytes:
    return path.read_bytes()


def _signature(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _key(line: bytes) -> bytes | None:
    line = line.strip()
    return line if line and not line.startswith(b"#") else None


def _keys(lines: list[bytes]) -> tuple[tuple[bytes, ...], tuple[int, ...]]:
    """The keys of complete lines, and the numbers of the lines too short to be keys."""
    keys: list[bytes] = []
    short: list[int] = []
    for number, line in enumerate(lines, start=1):
        key = _key(line)
        if key is None:
            continue
        if len(key) < MIN_KEY_CHARS:
            short.append(number)
        else:
            keys.append(key)
    return tuple(keys), tuple(short)


def _read_key_file(path: Path) -> _KeyFile:
    """Stat, read, stat again until the two agree; raises OSError or _Unstable."""
    for _attempt in range(READ_ATTEMPTS):
        before = os.stat(path)
        data = _read_bytes(path)
        after = os.stat(path)
        if _signature(before) == _signature(after) and len(data) == after.st_size:
            *lines, last = data.split(b"\n")
            complete, too_short = _keys(lines)
            return _KeyFile(_signature(after), complete, _key(last), after.st_mtime_ns, too_short, len(lines) + 1)
    raise _Unstable(f"{path} changed while being read, {READ_ATTEMPTS} times")


def _presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key is not None:
        return x_api_key
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return token.strip()
    return None


class ApiKeys:
    """The keys in use, reloaded from the file as described above. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._keys: tuple[bytes, ...] = ()
        self._loaded: tuple[int, int, int, int] | None = None  # signature of the file the keys came from
        self._pending_since: tuple[tuple[int, int, int, int], float] | None = None
        self._settled = True
        self.file_ok = True
        self._checked_at = time.monotonic()
        self._load_at_start()

    @property
    def count(self) -> int:
        return len(self._keys)

    def check(self, authorization: str | None, x_api_key: str | None) -> None:
        """Raise :class:`Unauthorized` unless the request carries a valid key."""
        presented = _presented_key(authorization, x_api_key)
        if not presented:
            raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>' or 'X-Api-Key'")
        if not self._matches(presented):
            raise Unauthorized("the API key is not valid")

    def is_valid(self, authorization: str | None, x_api_key: str | None) -> bool:
        presented = _presented_key(authorization, x_api_key)
        return bool(presented) and self._matches(presented)

    def _matches(self, presented: str) -> bool:
        self.refresh()
        candidate = presented.encode("utf-8", "replace")
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        return matched

    # -- reloading ---------------------------------------------------------------------

    def refresh(self, *, force: bool = False) -> None:
        """Check the file if ``RELOAD_CHECK_SECONDS`` have passed (or ``force``); never raises."""
        now = time.monotonic()
        if not force and now - self._checked_at < RELOAD_CHECK_SECONDS:
            return
        if not self._lock.acquire(blocking=False):
            return  # another thread is checking; this request uses the keys in use
        try:
            self._checked_at = now
            self._check()
        finally:
            self._lock.release()

    def _check(self) -> None:
        try:
            found = _read_key_file(self._path)
        except (OSError, _Unstable) as exc:
            self.file_ok = False
            log.error("api key file unreadable; keeping the last good keys",
                      extra={"path": str(self._path), "error": str(exc), "keys": len(self._keys)})
            return
        if not self.file_ok:
            log.info("api key file readable again", extra={"path": str(self._path)})
        self.file_ok = True
        if found.signature != self._loaded or not self._settled:
            self._take(found)
        short = found.short_lines(found.signature == self._loaded and self._settled)
        if short:
            log.error("api key lines too short; ignored", extra={"path": str(self._path), "lines": list(short),
                                                                 "min_chars": MIN_KEY_CHARS})
        if not self._keys:
            log.error("api key file holds no keys; every request is refused", extra={"path": str(self._path)})

    def _take(self, found: _KeyFile) -> None:
        settled = self._is_settled(found)
        tail = found.tail_key(settled)
        keys = found.complete + ((tail,) if tail is not None else ())
        if not keys and not settled:
            return  # a rewrite in progress: keep the keys in use until it settles
        changed = keys != self._keys
        self._keys, self._loaded, self._settled = keys, found.signature, settled
        if changed:
            log.info("api keys reloaded", extra={"keys": len(keys), "pending_last_line": not settled})

    def _is_settled(self, found: _KeyFile) -> bool:
        """Unchanged for SETTLE_SECONDS: by its mtime, or (for an mtime in the future) by our own clock."""
        if time.time_ns() - found.modified_ns >= SETTLE_SECONDS * 1e9:
            return True
        now = time.monotonic()
        if self._pending_since is None or self._pending_since[0] != found.signature:
            self._pending_since = (found.signature, now)
        return now - self._pending_since[1] >= SETTLE_SECONDS

    def _load_at_start(self) -> None:
        deadline = time.monotonic() + SETTLE_SECONDS + 1.0
        while True:
            try:
                found = _read_key_file(self._path)
            except (OSError, _Unstable) as exc:
                raise KeyFileError(f"cannot read API key file {self._path}: {exc}") from None
            settled = self._is_settled(found) or time.monotonic() >= deadline
            if found.complete or settled:
                break
            time.sleep(0.05)  # only a fresh, still incomplete file: wait for its writer to finish
        short = found.short_lines(settled)
        if short:
            lines = ", ".join(map(str, short))
            raise KeyFileError(f"API key file {self._path}: line {lines} holds a key shorter than {MIN_KEY_CHARS} "
                               "characters (make keys with e.g. `openssl rand -hex 16`)")
        self._take(found)
        if not self._keys:
            raise KeyFileError(f"API key file {self._path} holds no API keys")
