"""Several loops in one process: one destination down never holds another back; metrics per route."""

from __future__ import annotations

import threading
import time

from prometheus_client import generate_latest

from tailer import Shipper, TailerConfig, TailerMetrics
from tailer.errors import Unavailable
from tailer.fleet import Fleet, Loop
from tests.helpers import wait_until
from tests.unit.test_shipper import FakeSink, write_lines


class DownSink(FakeSink):
    """Every call fails, until ``up`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.up = threading.Event()

    def put_records(self, records):
        if not self.up.is_set():
            with self._lock:
                self.calls += 1
            raise Unavailable("down", code="HTTP503")
        return super().put_records(records)


def loop_for(spool_dir, route, sink, registry=None):
    config = TailerConfig(spool_dir, "s", route=route, linger_seconds=0.01, checkpoint_interval_seconds=0.0,
                          poll_interval_seconds=0.05, max_backoff_seconds=0.2, drain_timeout_seconds=20)
    metrics = TailerMetrics(route, registry=registry)
    return Loop(route, Shipper(config, sink, metrics))


def test_a_destination_that_is_down_does_not_hold_back_another(tmp_path):
    healthy, down = FakeSink(), DownSink()
    ok_loop = loop_for(tmp_path / "ok", "ok", healthy)
    down_loop = loop_for(tmp_path / "down", "down", down, registry=ok_loop.shipper.metrics.registry)
    fleet = Fleet([ok_loop, down_loop])
    stop = threading.Event()
    runner = threading.Thread(target=lambda: setattr(fleet, "code", fleet.run(stop)))
    runner.start()
    _, down_lines = write_lines(tmp_path / "down", "w", 500)
    started = time.monotonic()
    _, ok_lines = write_lines(tmp_path / "ok", "w", 500)
    wait_until(lambda: sorted(healthy.accepted) == sorted(ok_lines), timeout=20, message="healthy route shipped")
    assert time.monotonic() - started < 10
    assert down.calls > 0 and down.accepted == []
    text = generate_latest(ok_loop.shipper.metrics.registry).decode()
    assert 'spoolship_tailer_lines_shipped_total{route="ok"} 500.0' in text
    assert 'spoolship_tailer_lines_shipped_total{route="down"} 0.0' in text
    down.up.set()
    wait_until(lambda: sorted(down.accepted) == sorted(down_lines), timeout=30, message="down route recovered")
    stop.set()
    fleet.wake()
    runner.join(30)
    assert fleet.code == 0


def test_a_loop_that_crashes_stops_the_others_with_exit_1(tmp_path):
    crash = loop_for(tmp_path / "a", "a", FakeSink())
    other = loop_for(tmp_path / "b", "b", FakeSink(), registry=crash.shipper.metrics.registry)

    def boom(_stop):
        raise RuntimeError("a bug")

    crash.shipper.run = boom
    stop = threading.Event()
    assert Fleet([crash, other]).run(stop) == 1
    assert stop.is_set()


def test_a_loop_that_finished_does_not_make_healthz_fail_while_another_ships(tmp_path):
    """Routes review, finding 4: in a multi-route drain the empty route's loop returns at once; /healthz
    (every loop fresh) then failed after stale_seconds, and the kubelet killed the drain. Failed before
    the fix (503)."""
    import dataclasses

    import requests

    from tailer import MetricsServer

    down = DownSink()
    empty = loop_for(tmp_path / "empty", "empty", FakeSink())
    busy = loop_for(tmp_path / "busy", "busy", down, registry=empty.shipper.metrics.registry)
    for loop in (empty, busy):
        loop.shipper.config = dataclasses.replace(loop.shipper.config, exit_when_empty=True)
    write_lines(tmp_path / "busy", "w", 50)
    server = MetricsServer([empty.shipper.metrics, busy.shipper.metrics], "127.0.0.1", 0, stale_seconds=1.0)
    fleet = Fleet([empty, busy])
    stop = threading.Event()
    runner = threading.Thread(target=lambda: setattr(fleet, "code", fleet.run(stop)))
    runner.start()
    try:
        wait_until(lambda: empty.code == 0, timeout=20, message="the empty route's loop finished")
        deadline = time.monotonic() + 3.0  # three times stale_seconds
        while time.monotonic() < deadline:
            health = requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
            assert health.status_code == 200, health.text
            time.sleep(0.2)
        assert runner.is_alive(), "the busy route is still shipping"
    finally:
        down.up.set()
        stop.set()
        fleet.wake()
        runner.join(30)
        server.close()
    assert fleet.code == 0
