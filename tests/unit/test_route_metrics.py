"""The route gauges with --workers N drop a dead worker's values, like the pod-wide ones (routes review,
finding 8): before, route_ready stayed 0 and route_spool_bytes at the dead worker's 15 GiB for ever.

Real worker processes (spawned) set the real RouteMetrics; the supervisor's mark_process_dead; the
multi-process exposition the receiver serves.
"""

from __future__ import annotations

import multiprocessing

from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.multiprocess import MultiProcessCollector


def _worker(ready: int, nbytes: int) -> None:
    from receiver.metrics import ReceiverMetrics
    from receiver.route_metrics import RouteMetrics

    metrics = ReceiverMetrics()
    routes = RouteMetrics(metrics.registry)
    routes.route_ready.labels("clicks").set(ready)
    routes.spool_bytes.labels("clicks").set(nbytes)


def test_a_dead_workers_route_gauges_drop_out(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    spawn = multiprocessing.get_context("spawn")
    dead = spawn.Process(target=_worker, args=(0, 15 * 2**30))
    dead.start()
    dead.join(60)
    multiprocess.mark_process_dead(dead.pid)  # what receiver/supervisor.py does when it reaps a worker
    live = spawn.Process(target=_worker, args=(1, 1000))
    live.start()
    live.join(60)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    lines = generate_latest(registry).decode().splitlines()
    assert 'spoolship_receiver_route_ready{route="clicks"} 1.0' in lines, lines
    assert 'spoolship_receiver_route_spool_bytes{route="clicks"} 1000.0' in lines, lines
