"""API keys from ``--api-key-file``: one key per line, ``#`` comments allowed.

Keys are accepted as ``Authorization: Bearer <key>`` or ``X-Api-Key: <key>`` and
compared in constant time against every configured key. The file is re-read
when it changes (checked at most every few seconds), so a rotated Kubernetes
Secret takes effect without a restart.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from pathlib import Path

from .errors import Unauthorized

__all__ = ["ApiKeys"]

log = logging.getLogger(__name__)
RELOAD_CHECK_SECONDS = 5.0


def _read_keys(path: Path) -> list[bytes]:
    keys = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keys.append(line.encode())
    if not keys:
        raise ValueError(f"{path} holds no API keys")
    return keys


class ApiKeys:
    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._keys = _read_keys(self._path)
        self._mtime = os.stat(self._path).st_mtime_ns
        self._checked_at = time.monotonic()
        self._lock = threading.Lock()

    def check(self, authorization: str | None, x_api_key: str | None) -> None:
        presented = x_api_key
        if presented is None and authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer":
                presented = token.strip()
        if not presented:
            raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>' or 'X-Api-Key'")
        self._maybe_reload()
        candidate = presented.encode("utf-8", "replace")
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        if not matched:
            raise Unauthorized("the API key is not valid")

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < RELOAD_CHECK_SECONDS:
            return
        with self._lock:
            self._checked_at = now
            try:
                mtime = os.stat(self._path).st_mtime_ns
                if mtime != self._mtime:
                    self._keys = _read_keys(self._path)
                    self._mtime = mtime
                    log.info("api keys reloaded", extra={"keys": len(self._keys)})
            except (OSError, ValueError) as exc:
                log.error("api keys not reloaded; keeping the old ones", extra={"error": str(exc)})
