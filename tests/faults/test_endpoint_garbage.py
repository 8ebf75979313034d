"""The endpoint answers garbage for a while, then recovers (issue 11).

Every status 300-599, each with a body shape a proxy, load balancer or VPC endpoint might send (HTML,
empty, truncated JSON, binary, Kinesis error documents that name no record), in turn, to every PutRecords
call — while real clients keep posting. Acknowledged = delivered, zero dead letters, and the tailer's calls
per second stay bounded while it fails (it backs off; it used to narrow every batch down and dead-letter it).
"""

from __future__ import annotations

import time

from spooler import count_dead_letters
from tests.faults.harness import Load, Pipeline, account
from tests.faults.test_faults import assert_nothing_lost
from tests.servers.fault_proxy import garbage_answers

GARBAGE_SECONDS = 6.0
# 3 deliveries in flight, each waiting a backoff (<= 0.5 s here) or --permanent-retry (1 s) after every
# failed call, plus at most log2(500) splits of a call refused as too large: well under this.
MAX_CALLS_PER_SECOND = 25


def test_endpoint_answers_every_kind_of_garbage_then_recovers(kinesis, spool_dir):
    pipeline = Pipeline(kinesis, spool_dir, tailer_args=["--permanent-retry", "1"]).start()
    load = Load(lambda: pipeline.url).start()
    time.sleep(1)
    proxy = pipeline.proxy
    proxy.answers = garbage_answers()
    started = time.monotonic()
    time.sleep(GARBAGE_SECONDS)
    proxy.answers = None
    ended = time.monotonic()
    calls = sum(1 for t in proxy.call_times if started + 0.5 <= t <= ended)
    pipeline.notes.append(f"garbage {GARBAGE_SECONDS:.0f}s: {proxy.counts['answered']} answers, "
                          f"{calls / (ended - started - 0.5):.1f} calls/s")
    time.sleep(1.5)
    load.stop()
    pipeline.stop()
    result = account("endpoint answers garbage, then recovers", pipeline, load)
    assert_nothing_lost(result, load)
    assert count_dead_letters(spool_dir) == 0, "nothing is dead-lettered: Kinesis named no record"
    assert proxy.counts["answered"] > 10, "the garbage reached the tailer"
    rate = calls / (ended - started - 0.5)
    assert rate <= MAX_CALLS_PER_SECOND, f"{rate:.1f} calls/s while the endpoint answered garbage"
