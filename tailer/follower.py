"""Wake-ups for the shipper: watchdog (inotify) on the spool directory.

Only segments appearing, being renamed (sealed) or deleted produce events;
appends do not (an inotify event per append would cost more CPU than shipping
the line). The shipper finds growth itself by polling sizes with a backoff,
and rescans the directory every ``--poll-interval`` as a safety net — which is
also how orphans (a writer that died holds no lock any more, which makes no
event) are found. With ``--polling`` a polling observer replaces inotify.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

__all__ = ["SpoolFollower"]


class _Handler(FileSystemEventHandler):
    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._on_change()


class SpoolFollower:
    def __init__(self, spool_dir: Path, on_change: Callable[[], None], *, polling: bool, poll_interval: float) -> None:
        self._observer = PollingObserver(timeout=poll_interval) if polling else Observer()
        self._observer.schedule(
            _Handler(on_change), str(spool_dir), recursive=False,
            event_filter=[FileCreatedEvent, FileMovedEvent, FileDeletedEvent],
        )
        self._observer.daemon = True

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(5)
