"""One worker's spool writers with routes: a writer per route spool, and the bad route's.

What a request spanning several routes means (docs/spool-format.md, "Routes"):
its events are split by route, in their order, and appended to each route's spool
by :func:`spooler.append_all` — one decision for all of them:

- a capacity or disk refusal of any route (``SpoolFull``, ``SpoolUnwritable``)
  writes nothing to any route: 503, ``"written": "none"``;
- once one route's part is written, a later part that the disk refuses or cuts
  short, or a failed fsync of any part, is a 503 ``"written": "unknown"`` (the
  written parts will be shipped; a retry may duplicate them);
- otherwise every part is in its route's spool: 201.

Each route's spool is an ordinary spool with its own ``--max-spool-bytes``, so
one route at its cap (its destination down) refuses only the requests with
events for it. For the same reason readiness (``refusal``) turns off only when
no route can take an append: a load balancer must not stop the traffic of every
route because one of them is full. Thread-safe.
"""

from __future__ import annotations

from dataclasses import replace

from spooler import SpoolWriter, WriterConfig, WriterStats, append_all

from .route_metrics import RouteMetrics
from .routing import Routing

__all__ = ["RouteSpools"]


class RouteSpools:
    """Quacks like a :class:`~spooler.SpoolWriter` for probes, metrics and shutdown."""

    def __init__(self, routing: Routing, base: WriterConfig, metrics: RouteMetrics | None = None) -> None:
        self.routing = routing
        self.metrics = metrics
        self.names = [route.name for route in routing.routes]
        self.writers: list[SpoolWriter] = []
        try:
            for route in routing.routes:
                self.writers.append(SpoolWriter(replace(base, spool_dir=route.spool_dir,
                                                        max_spool_bytes=route.max_spool_bytes)))
            self.bad: SpoolWriter | None = None
            if routing.bad is not None:
                self.bad = SpoolWriter(replace(base, spool_dir=routing.bad.spool_dir,
                                               max_spool_bytes=routing.bad.max_spool_bytes))
        except BaseException:
            self.close()
            raise
        self.config = self.writers[0].config  # the writer id and settings shared by all of them

    def append(self, parts: list[tuple[int, bytes | bytearray]], *, sync: bool = False) -> None:
        """``parts``: (route index, that route's lines); see the module docstring for what failures mean."""
        append_all([(self.writers[index], data) for index, data in parts], sync=sync)

    def refusal(self) -> str | None:
        """Unready only when every route refuses (the first route's reason, named)."""
        reasons = []
        for name, writer in zip(self.names, self.writers, strict=True):
            reason = writer.refusal()
            if reason is None:
                return None
            reasons.append(f"{reason} (route {name})")
        return reasons[0] if len(reasons) == 1 else f"{reasons[0]}; and every other route refuses too"

    def stats(self) -> WriterStats:
        """The routes together (the bad route apart: it is no route of events); sets the route gauges."""
        every = [writer.stats() for writer in self.writers]
        if self.metrics is not None:
            for name, writer, stats in zip(self.names, self.writers, every, strict=True):
                self.metrics.spool_bytes.labels(name).set(stats.spool_bytes)
                self.metrics.max_spool_bytes.labels(name).set(writer.config.max_spool_bytes)
                self.metrics.route_ready.labels(name).set(0 if writer.refusal() else 1)
            if self.bad is not None:
                self.metrics.spool_bytes.labels("bad").set(self.bad.stats().spool_bytes)
                self.metrics.max_spool_bytes.labels("bad").set(self.bad.config.max_spool_bytes)
        return WriterStats(
            appends=sum(s.appends for s in every),
            bytes_appended=sum(s.bytes_appended for s in every),
            segments_sealed=sum(s.segments_sealed for s in every),
            fsyncs=sum(s.fsyncs for s in every),
            spool_bytes=sum(s.spool_bytes for s in every),
            free_bytes=min(s.free_bytes for s in every),
            fsync_failures=sum(s.fsync_failures for s in every),
        )

    def route_stats(self) -> dict[str, WriterStats]:
        out = {name: writer.stats() for name, writer in zip(self.names, self.writers, strict=True)}
        if self.bad is not None:
            out["bad"] = self.bad.stats()
        return out

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
        if getattr(self, "bad", None) is not None:
            self.bad.close()
