"""JSON-lines logging, configured only here (libraries just call getLogger(__name__)).

Each record is one JSON object: time, level, logger, the short event name
(the message) and the record's ``extra`` key/values. Repeating warnings from
waitress's task queue are rate-limited with a count, so a load spike cannot
flood the log (the failure mode that started this project).
"""

from __future__ import annotations

import logging
import sys
import threading
import time

import orjson

__all__ = ["JsonFormatter", "RateLimitFilter", "configure_logging"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class RateLimitFilter(logging.Filter):
    """Let one record per ``interval_seconds`` through, annotated with how many were dropped."""

    def __init__(self, interval_seconds: float = 10.0) -> None:
        super().__init__()
        self.interval_seconds = interval_seconds
        self._lock = threading.Lock()
        self._next_at = 0.0
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        with self._lock:
            if now < self._next_at:
                self._suppressed += 1
                return False
            record.suppressed = self._suppressed
            self._suppressed = 0
            self._next_at = now + self.interval_seconds
        return True


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("waitress.queue").addFilter(RateLimitFilter())
    for noisy in ("botocore", "boto3", "urllib3", "watchdog", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
