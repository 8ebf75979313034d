"""Soak: hours of the faults above, one after another at random, then one account.

Off by default; `SPOOLSHIP_SOAK=600 make test-soak` runs it for 600 s.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from tests.faults.harness import Load, Pipeline, account
from tests.faults.test_faults import assert_nothing_lost

SOAK_SECONDS = float(os.environ.get("SPOOLSHIP_SOAK", "0") or 0)


@pytest.mark.soak
@pytest.mark.timeout(SOAK_SECONDS + 900)
@pytest.mark.skipif(not SOAK_SECONDS, reason="soak runs only with SPOOLSHIP_SOAK=<seconds>")
def test_soak_with_random_faults(kinesis, spool_dir):
    pipeline = Pipeline(kinesis, spool_dir, receiver_args=["--max-spool-bytes", "2MiB", "--segment-bytes", "256KiB"],
                        tailer_args=["--checkpoint-interval", "0.5"]).start()
    load = Load(lambda: pipeline.url, clients=4, rate_per_client=60).start()
    rng = random.Random(int(os.environ.get("SPOOLSHIP_SOAK_SEED", "7")))
    proxy = pipeline.proxy
    faults = []
    deadline = time.monotonic() + SOAK_SECONDS
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(5, 15))
        fault = rng.choice(["tailer", "worker", "receiver", "outage", "throttle", "rollout"])
        faults.append(fault)
        if fault == "tailer":
            pipeline.kill9_tailer_and_restart()
        elif fault == "worker":
            workers = pipeline.worker_pids()
            if workers:
                os.kill(rng.choice(workers), signal.SIGKILL)
        elif fault == "receiver":
            pipeline.kill9_receiver()
            pipeline.start_receiver()
        elif fault == "outage":
            proxy.down = True
            time.sleep(rng.uniform(2, 12))  # long ones fill the 2 MiB spool: clients get 503s
            proxy.down = False
        elif fault == "throttle":
            proxy.record_failure_rate, proxy.call_error_rate, proxy.call_reset_rate = 0.3, 0.1, 0.05
            time.sleep(rng.uniform(3, 8))
            proxy.record_failure_rate = proxy.call_error_rate = proxy.call_reset_rate = 0.0
        elif fault == "rollout":
            assert pipeline.receiver.stop(signal.SIGTERM) == 0
            pipeline.start_receiver()
    time.sleep(2)
    load.stop()
    pipeline.stop(drain_timeout=300)
    pipeline.notes[:] = [f"{SOAK_SECONDS:.0f}s, faults: " + ", ".join(f"{f}x{faults.count(f)}" for f in sorted(set(faults))),
                         f"statuses {dict(load.statuses)}"]
    result = account("soak", pipeline, load)
    print(result.line())
    assert_nothing_lost(result, load)
