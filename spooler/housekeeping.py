"""Periodic background work on due times, on one thread: the writer's housekeeper.

Each task runs every ``period`` seconds counted from the start (due times, so a
slow run does not push every later one back — the interval fsync's loss bound
stays one interval). A task that raises ``OSError`` is logged and runs again at
its next due time; nothing else is caught.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Housekeeper", "Task"]

log = logging.getLogger(__name__)


@dataclass
class Task:
    name: str
    period_seconds: float
    run: Callable[[], None]
    due: float = 0.0


class Housekeeper:
    def __init__(self, name: str, tasks: list[Task]) -> None:
        now = time.monotonic()
        for task in tasks:
            task.due = now + task.period_seconds
        self._tasks = tasks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait (unless called from a task itself)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(max(0.0, min(t.due for t in self._tasks) - time.monotonic())):
            now = time.monotonic()
            for task in self._tasks:
                if now < task.due:
                    continue
                task.due = max(task.due + task.period_seconds, now)
                try:
                    task.run()
                except OSError as exc:
                    log.error("spool housekeeping failed", extra={"task": task.name, "error": str(exc)})
