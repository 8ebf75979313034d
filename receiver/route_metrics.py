"""Prometheus metrics of routes and of the bad route (with --config), beside ReceiverMetrics.

Registered in the receiver's registry; in multi-process mode (``--workers N``) they are
aggregated like the others. The spool gauges are set whenever the writers' stats
are read (:meth:`receiver.route_spools.RouteSpools.stats`): by every worker's
gauge refresher (receiver/gauges.py) and by a scrape. Like the pod-wide gauges
they use the ``live*`` modes, so a worker that died drops out of them when the
supervisor marks it dead (routes review, finding 8).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["RouteMetrics"]


class RouteMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.events_accepted = Counter("spoolship_receiver_route_events_accepted",
                                       "Events written to each route's spool", ["route"], registry=r)
        self.spool_bytes = Gauge("spoolship_receiver_route_spool_bytes", "Bytes in each route's spool",
                                 ["route"], multiprocess_mode="livemax", registry=r)
        self.max_spool_bytes = Gauge("spoolship_receiver_route_max_spool_bytes",
                                     "Each route's cap (its max_spool_bytes): compare route_spool_bytes with it",
                                     ["route"], multiprocess_mode="livemax", registry=r)
        self.route_ready = Gauge("spoolship_receiver_route_ready",
                                 "1 while a route's spool takes appends (0: full or unwritable)", ["route"],
                                 multiprocess_mode="livemin", registry=r)
        self.bad_events = Counter("spoolship_receiver_bad_events",
                                  "Rejected requests for the bad route, by outcome: kept, rate_limited, full, failed",
                                  ["outcome"], registry=r)
