"""Every target of bench/, with the conditions it is stated under, in one table.

A benchmark script measures; bench/verdict.py's ``judge`` decides, from the
conditions the run reached. Changing a target or adding one (issue 16's
steady-state tailer ratios, "in every run" for the batch rate) is one entry
here plus the figure the script reports under that key. docs/performance.md
describes the same table.
"""

from __future__ import annotations

from bench.verdict import Requirement as Need
from bench.verdict import Target

__all__ = ["BY_KEY", "TARGETS", "by_bench"]

# The load generator must not set the rate: a closed-loop wrk thread near a full core is the
# bottleneck, and a pacer that takes the pipeline's CPU changes what is measured.
WRK_NOT_SATURATED = Need("wrk CPU", "<=", 0.9, "cores")
PACER_LIGHT = Need("pacer CPU", "<=", 0.2, "cores")
# Two workers need the two cores: on a shared machine, others' processes can hold one of them.
TWO_CORES_FREE = Need("CPU of other processes", "<=", 0.25, "cores")

_RECEIVER_LOAD = (
    Need("connections", "==", 32), Need("waitress threads", "==", 8),
    Need("seconds per round", ">=", 5, "s"), Need("rounds", ">=", 3), WRK_NOT_SATURATED,
    Need("socket errors", "==", 0),
)
_TAILER_RUN = (Need("lines", ">=", 1_000_000), Need("line size", "==", 200, "bytes"), Need("shards", "==", 4))
_TAILER_STEADY = (Need("steady-state lines", ">=", 200_000), Need("line size", "==", 200, "bytes"),
                  Need("shards", "==", 4), Need("rounds", ">=", 1))
_BACKLOG = (Need("backlog on disk", ">=", 1024, "MiB"),)

TARGETS: tuple[Target, ...] = (
    Target("spool_append.writer_over_bare", "spool append / bare os.write, fsync=never", ">=", 0.80, "× bare",
           ratio=True, conditions=(Need("event size", "==", 200, "bytes"), Need("appends per round", ">=", 100_000),
                                   Need("rounds", ">=", 5))),
    Target("spool_append.fsyncs_per_1000_appends", "fsyncs per 1,000 appends, fsync=always", "<=", 250,
           conditions=(Need("appending threads", "==", 16), Need("appends", ">=", 4_000))),
    Target("receiver.one_worker_over_bare", "receiver 1 worker / bare Flask+waitress, single-event POSTs", ">=",
           0.90, "× bare", ratio=True,
           conditions=(Need("workers", "==", 1), Need("events per request", "==", 1), *_RECEIVER_LOAD)),
    Target("receiver.two_workers_over_one", "receiver 2 workers / 1 worker, single-event POSTs", ">=", 1.60,
           "× 1 worker", ratio=True,
           conditions=(Need("cores", ">=", 2), TWO_CORES_FREE, Need("workers", "==", 2),
                       Need("events per request", "==", 1), *_RECEIVER_LOAD)),
    Target("receiver.batch_events_per_s", "receiver 1 worker, 100-event batches", ">=", 150_000, "events/s",
           over_runs="every", conditions=(Need("workers", "==", 1), Need("events per request", "==", 100), *_RECEIVER_LOAD)),
    Target("receiver.rss_after_million", "receiver worker RSS after a million events", "<=", 80, "MiB",
           conditions=(Need("events accepted", ">=", 1_000_000),)),
    Target("receiver.rss_at_cap", "receiver worker RSS while answering 503 at the spool cap", "<=", 80, "MiB",
           conditions=(Need("refused at the cap", ">=", 1, "answers"),)),
    # Steady state (issue 16): a sidecar runs for weeks, so start-up is not its cost. Ratios to the naive loop
    # on the same file in the same round; absolute CPU-seconds vary ~2x between machines and are not judged.
    Target("tailer.plain_steady_over_naive", "tailer CPU / naive boto3 loop's, steady state, plain", "<=", 0.20,
           "× naive", ratio=True, conditions=_TAILER_STEADY),
    Target("tailer.aggregated_steady_over_naive", "tailer CPU / naive boto3 loop's, steady state, aggregated", "<=",
           0.08, "× naive", ratio=True, conditions=_TAILER_STEADY),
    Target("tailer.aggregated_lines_per_record", "lines per Kinesis record, aggregated", ">=", 50,
           conditions=_TAILER_RUN),
    Target("tailer.plain_peak_rss", "tailer peak RSS, plain (Fluent Bit ~91 MiB)", "<", 91, "MiB",
           conditions=_TAILER_RUN),
    Target("tailer.aggregated_peak_rss", "tailer peak RSS, aggregated (Fluent Bit ~91 MiB)", "<", 91, "MiB",
           conditions=_TAILER_RUN),
    Target("end_to_end.p99_201_to_stream", "p99 from 201 to readable in the stream, single-event POSTs", "<=",
           1000, "ms",
           conditions=(Need("rate", ">=", 1000, "events/s", tolerance=0.02), Need("seconds", ">=", 20, "s", tolerance=0.01),
                       Need("accepted events read back", ">=", 1.0, "of accepted"), Need("receiver workers", "==", 1),
                       PACER_LIGHT)),
    Target("end_to_end.receiver_rss_backlog", "receiver RSS peak while the backlog grows", "<=", 80, "MiB",
           conditions=_BACKLOG),
    Target("end_to_end.tailer_rss_backlog", "tailer RSS peak while the backlog grows", "<=", 150, "MiB",
           conditions=_BACKLOG),
    Target("end_to_end.receiver_rss_flat", "receiver RSS peak / its first 5 s, backlog growing", "<=", 1.25,
           "× first 5 s", ratio=True, conditions=_BACKLOG),
    Target("end_to_end.tailer_rss_flat", "tailer RSS peak / its first 5 s, backlog growing", "<=", 1.25,
           "× first 5 s", ratio=True, conditions=_BACKLOG),
)
# Receiver parse memory (issue 13): the estimate that admits a parse must cover what it costs, and a
# worker's peak under the largest requests the defaults accept stays within the 80 MB it is sized for.
_PARSE_SHAPES = (Need("shapes", ">=", 50), Need("body size", ">=", 4, "MiB"))
TARGETS += (
    Target("parse_memory.estimate_over_peak", "parse-memory estimate / measured peak, worst of every shape", ">=",
           1.0, "× measured", conditions=_PARSE_SHAPES),
    Target("receiver_memory.worst_peak_rss", "receiver worker peak RSS, 4 concurrent maximal batches, every shape",
           "<=", 80, "MB", conditions=(Need("concurrent clients", "==", 4), Need("--max-parse-bytes", "==", 32, "MiB"),
                                       Need("seconds per shape", ">=", 5, "s"))),
)
BY_KEY = {t.key: t for t in TARGETS}


def by_bench(bench: str) -> list[Target]:
    """The targets one script judges: the keys that start with its name."""
    return [t for t in TARGETS if t.key.split(".", 1)[0] == bench]
