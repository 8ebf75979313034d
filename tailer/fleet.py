"""Several shipping loops in one process: one per route spool, each on a thread of its own.

``spoolship tail --config F`` ships every route's spool to that route's
destination. Each loop is a :class:`tailer.shipper.Shipper` with everything of
its own — follower, checkpoint, batches, thread pool, sink and HTTP connections,
backoff, metrics (labelled ``route``) — so a destination that is down or
throttled only makes its own loop wait: nothing the loops share (the process's
CPU, the metrics registry, the log) is held while a loop waits. SIGTERM drains
every loop at once, each within ``--drain-timeout``; a loop still running
``EXIT_MARGIN_SECONDS`` after that (a thread hung where no deadline reaches) is
left behind: the process exits 1 without it (``spoolship tail`` then ends with
``os._exit``, so no pool thread can hold the exit).

A loop that finished with 0 (``--exit-when-empty``: its spool is drained; a stray
directory shipped) is healthy, not stalled: the fleet keeps its heartbeat fresh
while the other loops work, so ``/healthz`` (every loop fresh) does not fail,
and the kubelet does not kill a drain Job still shipping another route (routes
review, finding 4).

The exit code is the worst of the loops' (0: drained). A loop that dies of a bug
stops the others and the process exits 1, so that the pod restarts, instead of
leaving one route silently unshipped.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field

from .follower import SpoolFollower
from .shipper import Shipper

__all__ = ["Fleet", "Loop"]

log = logging.getLogger(__name__)
# Past the drain timeout: the deliveries' stop (2 s), the final checkpoint, closing the spool.
EXIT_MARGIN_SECONDS = 5.0
_YOUNG_COLLECTION_ALLOCATIONS = 10_000


@dataclass
class Loop:
    route: str
    shipper: Shipper
    follower: SpoolFollower | None = None
    code: int | None = None
    thread: threading.Thread | None = field(default=None, repr=False)


class Fleet:
    def __init__(self, loops: list[Loop]) -> None:
        self.loops = loops

    def wake(self) -> None:
        for loop in self.loops:
            loop.shipper.wake()

    def run(self, stop: threading.Event) -> int:
        failed = threading.Event()
        # What start-up made (modules, boto3's service models: ~100,000 objects) lives as long as the
        # process: frozen out of the collector's sight, no full collection re-walks it. The young
        # generation is collected every 10,000 allocations, not 700: a 500-record batch alone makes
        # more, so the default ran ~1.4 collections per 1,000 lines for next to no garbage (~0.2 µs a
        # line, docs/performance.md).
        gc.freeze()
        gc.set_threshold(_YOUNG_COLLECTION_ALLOCATIONS, *gc.get_threshold()[1:])
        for loop in self.loops:
            loop.thread = threading.Thread(target=self._run_loop, args=(loop, stop, failed),
                                           name=f"route-{loop.route}", daemon=True)
            if loop.follower is not None:
                loop.follower.start()
            loop.thread.start()
        stopped_at = None
        try:
            for loop in self.loops:
                while loop.thread.is_alive():
                    loop.thread.join(0.5)
                    self._beat_for_finished()
                    if failed.is_set() and not stop.is_set():
                        stop.set()
                        self.wake()
                    if stop.is_set() and stopped_at is None:
                        stopped_at = time.monotonic()
                    if stopped_at is not None and time.monotonic() - stopped_at > self._exit_seconds():
                        # A thread hung past every deadline (a call no watchdog can cut): exit anyway, 1.
                        log.error("shipping loop did not stop within the drain timeout; exiting without it",
                                  extra={"route": loop.route})
                        loop.code = 1
                        break
        finally:
            for loop in self.loops:
                if loop.follower is not None:
                    loop.follower.stop()
        return max(1 if loop.code is None else loop.code for loop in self.loops)

    def _exit_seconds(self) -> float:
        """How long after the stop a loop may take: its drain timeout, then stopping its deliveries."""
        return max(loop.shipper.config.drain_timeout_seconds for loop in self.loops) + EXIT_MARGIN_SECONDS

    def _beat_for_finished(self) -> None:
        for loop in self.loops:
            if loop.code == 0:
                loop.shipper.metrics.beat()

    def _run_loop(self, loop: Loop, stop: threading.Event, failed: threading.Event) -> None:
        try:
            loop.code = loop.shipper.run(stop)
        except Exception:  # a bug in one loop: stop them all (exit 1) rather than leave a route unshipped
            log.exception("shipping loop crashed; stopping every loop", extra={"route": loop.route})
            loop.code = 1
            failed.set()
            loop.shipper.close()
