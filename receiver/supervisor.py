"""``--workers N``: N processes sharing one port with SO_REUSEPORT.

The parent binds the port (and ``--probe-port``) first, without listening, so
that port 0 resolves to one real port for every worker, starts the workers, restarts any that dies
(with a backoff if it keeps dying at start), and on SIGTERM forwards SIGTERM to
all of them and waits: each worker drains and seals its own segments.
Prometheus multi-process mode aggregates the workers' metrics.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable

from .config import ReceiverConfig
from .server import bind_socket

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)
FAST_DEATH_SECONDS = 5.0
MAX_RESTART_DELAY_SECONDS = 10.0
POLL_SECONDS = 0.1


@dataclasses.dataclass
class _Worker:
    index: int
    process: multiprocessing.Process
    started_at: float
    fast_deaths: int = 0
    restart_at: float | None = None


class Supervisor:
    def __init__(self, config: ReceiverConfig, worker_main: Callable[[ReceiverConfig, int], None]) -> None:
        """``worker_main(config, index)`` runs in each worker (picklable: a module-level function)."""
        self._config = config
        self._worker_main = worker_main
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._stopping = False

    def run(self) -> int:
        reserved = [bind_socket(self._config.host, self._config.port, reuse_port=True, listen=False)]
        config = dataclasses.replace(self._config, port=reserved[0].getsockname()[1])
        if config.probe_port is not None:
            reserved.append(bind_socket(config.host, config.probe_port, reuse_port=True, listen=False))
            config = dataclasses.replace(config, probe_port=reserved[1].getsockname()[1])
        metrics_dir = tempfile.mkdtemp(prefix="spoolship-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by the spawned workers
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self._workers = [self._start(config, i) for i in range(config.workers)]
            log.info("supervisor started", extra={"workers": config.workers, "port": config.port,
                                                  "probe_port": config.probe_port})
            while not self._stopping:
                self._reap_and_restart(config)
                time.sleep(POLL_SECONDS)
            return self._stop_all()
        finally:
            for sock in reserved:
                sock.close()
            shutil.rmtree(metrics_dir, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stopping = True

    def _start(self, config: ReceiverConfig, index: int) -> _Worker:
        process = self._ctx.Process(target=self._worker_main, args=(config, index), name=f"receiver-{index}")
        process.start()
        return _Worker(index, process, time.monotonic())

    def _reap_and_restart(self, config: ReceiverConfig) -> None:
        from prometheus_client import multiprocess

        now = time.monotonic()
        for slot, worker in enumerate(self._workers):
            if worker.process.is_alive():
                continue
            if worker.restart_at is None:
                multiprocess.mark_process_dead(worker.process.pid)
                fast = now - worker.started_at < FAST_DEATH_SECONDS
                worker.fast_deaths = worker.fast_deaths + 1 if fast else 0
                delay = min(MAX_RESTART_DELAY_SECONDS, 0.5 * (2 ** worker.fast_deaths - 1))
                worker.restart_at = now + delay
                log.error("receiver worker died", extra={"worker": worker.index, "pid": worker.process.pid,
                                                         "exitcode": worker.process.exitcode,
                                                         "restart_in_seconds": delay})
            if now >= worker.restart_at:
                fresh = self._start(config, worker.index)
                fresh.fast_deaths = worker.fast_deaths
                self._workers[slot] = fresh
                log.info("receiver worker restarted", extra={"worker": worker.index, "pid": fresh.process.pid})

    def _stop_all(self) -> int:
        log.info("supervisor stopping", extra={"workers": len(self._workers)})
        for worker in self._workers:
            if worker.process.is_alive():
                os.kill(worker.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._config.shutdown_delay_seconds + self._config.shutdown_timeout_seconds + 5
        code = 0
        for worker in self._workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.error("receiver worker did not stop; killing it", extra={"worker": worker.index})
                worker.process.kill()
                worker.process.join()
                code = 1
            elif worker.process.exitcode not in (0, None) and worker.restart_at is None:
                code = 1
        log.info("supervisor stopped", extra={"exit_code": code})
        return code
