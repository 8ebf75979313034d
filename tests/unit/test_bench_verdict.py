"""bench/verdict.py over its whole table: "met" only when the run reached the target's conditions.

Also the table of bench/targets.py (every target well formed, its conditions named
as the scripts report them) and the two things the verdicts rely on: wrk's
summary parsed right, and the receiver's baseline reading the body.
"""

from __future__ import annotations

import io

import pytest

from bench.loadgen import parse_wrk
from bench.targets import BY_KEY, TARGETS, by_bench
from bench.verdict import MET, NOT_MEASURED, NOT_MET, Baseline, Requirement, Target, judge, summary

RATE = Requirement("rate", ">=", 1000, "events/s", tolerance=0.02)
WORKERS = Requirement("workers", "==", 1)
LATENCY = Target("t.p99", "p99", "<=", 1000, "ms", conditions=(RATE, WORKERS))
THROUGHPUT = Target("t.rate", "batches", ">=", 150_000, "events/s", conditions=(WORKERS,))
EVERY = Target("t.every", "batches in every run", ">=", 150_000, "events/s", over_runs="every")
RATIO = Target("t.ratio", "1 worker / bare", ">=", 0.90, "× bare", ratio=True, conditions=(WORKERS,))
STRICT = Target("t.rss", "peak RSS", "<", 91, "MiB")
BARE = Baseline("bare", 1000.0, "req/s")

# (why, target, reached, measured, baseline, status, judged figure)
TABLE = [
    ("met at the conditions", LATENCY, {"rate": 1000, "workers": 1}, 356, None, MET, 356),
    ("met on the boundary", LATENCY, {"rate": 1000, "workers": 1}, 1000, None, MET, 1000),
    ("not met at the conditions", LATENCY, {"rate": 1000, "workers": 1}, 1200, None, NOT_MET, 1200),
    ("rate within the tolerance", LATENCY, {"rate": 980, "workers": 1}, 356, None, MET, 356),
    ("rate just outside the tolerance", LATENCY, {"rate": 979, "workers": 1}, 356, None, NOT_MEASURED, 356),
    ("the issue's run: 490 of 1,000/s", LATENCY, {"rate": 490, "workers": 1}, 356, None, NOT_MEASURED, 356),
    ("a failing figure at a short rate", LATENCY, {"rate": 490, "workers": 1}, 5000, None, NOT_MEASURED, 5000),
    ("above the rate is reached", LATENCY, {"rate": 2000, "workers": 1}, 356, None, MET, 356),
    ("other workers than stated", LATENCY, {"rate": 1000, "workers": 2}, 356, None, NOT_MEASURED, 356),
    ("a condition not recorded", LATENCY, {"workers": 1}, 356, None, NOT_MEASURED, 356),
    ("a condition recorded as None", LATENCY, {"rate": None, "workers": 1}, 356, None, NOT_MEASURED, 356),
    ("a condition recorded as NaN", LATENCY, {"rate": float("nan"), "workers": 1}, 356, None, NOT_MEASURED, 356),
    ("a string where a number is needed", LATENCY, {"rate": "fast", "workers": 1}, 356, None, NOT_MEASURED, 356),
    ("no figure", LATENCY, {"rate": 1000, "workers": 1}, None, None, NOT_MEASURED, None),
    ("an empty list of runs", THROUGHPUT, {"workers": 1}, [], None, NOT_MEASURED, None),
    ("a NaN figure", THROUGHPUT, {"workers": 1}, float("nan"), None, NOT_MEASURED, None),
    (">= met", THROUGHPUT, {"workers": 1}, 162_225, None, MET, 162_225),
    (">= not met", THROUGHPUT, {"workers": 1}, 134_521, None, NOT_MET, 134_521),
    ("best of runs meets", THROUGHPUT, {"workers": 1}, [134_521, 162_225, 151_000], None, MET, 162_225),
    ("every run must meet: one does not", EVERY, {}, [134_521, 162_225, 151_000], None, NOT_MET, 134_521),
    ("every run meets", EVERY, {}, [150_000, 162_225], None, MET, 150_000),
    ("ratio met", RATIO, {"workers": 1}, 950.0, BARE, MET, 0.95),
    ("ratio not met", RATIO, {"workers": 1}, 670.0, BARE, NOT_MET, 0.67),
    ("ratio without a baseline", RATIO, {"workers": 1}, 950.0, None, NOT_MEASURED, None),
    ("ratio with a missing baseline value", RATIO, {"workers": 1}, 950.0, Baseline("bare", None), NOT_MEASURED, None),
    ("ratio over a zero baseline", RATIO, {"workers": 1}, 950.0, Baseline("bare", 0.0), NOT_MEASURED, None),
    ("ratio per run, paired, best", RATIO, {"workers": 1}, [800, 950], Baseline("bare", [1000, 1000]), MET, 0.95),
    ("ratio at short conditions", RATIO, {"workers": 2}, 950.0, BARE, NOT_MEASURED, 0.95),
    ("strict <: under", STRICT, {}, 90.0, None, MET, 90.0),
    ("strict <: on the bound", STRICT, {}, 91.0, None, NOT_MET, 91.0),
    ("an absolute figure keeps its baseline", STRICT, {}, 62.0, Baseline("naive loop", 45.0, "MiB"), MET, 62.0),
]


@pytest.mark.parametrize(("why", "target", "reached", "measured", "baseline", "status", "figure"), TABLE,
                         ids=[row[0] for row in TABLE])
def test_verdict_table(why, target, reached, measured, baseline, status, figure):
    verdict = judge(target, reached, measured, baseline)
    assert verdict.status == status, why
    assert verdict.figure == pytest.approx(figure) if figure is not None else verdict.figure is None
    assert verdict.baseline is baseline


def test_not_measured_names_the_figure_reached_and_the_condition_short():
    verdict = judge(LATENCY, {"rate": 490, "workers": 1}, 356)
    line = verdict.line()
    assert line.startswith("NOT MEASURED AT THE TARGET")
    assert "356 ms" in line
    assert "rate 490 events/s where the target needs ≥ 1,000 events/s (within 2%)" in line
    assert verdict.short == ("rate 490 events/s where the target needs ≥ 1,000 events/s (within 2%)",)
    assert verdict.as_dict()["reached"] == {"rate": 490, "workers": 1}


def test_met_and_not_met_lines_say_so_plainly():
    assert judge(LATENCY, {"rate": 1000, "workers": 1}, 356).line().startswith("MET ")
    assert judge(LATENCY, {"rate": 1000, "workers": 1}, 1200).line().startswith("NOT MET ")
    ratio = judge(RATIO, {"workers": 1}, 670.0, BARE).line()
    assert "0.67 × bare" in ratio and "baseline bare 1,000 req/s" in ratio


def test_summary_counts_every_status():
    verdicts = [judge(THROUGHPUT, {"workers": 1}, v) for v in (160_000, 100_000)] + [judge(THROUGHPUT, {}, 1)]
    assert summary(verdicts) == "1 met, 1 not met, 1 not measured at the target"


@pytest.mark.parametrize("bad", [
    lambda: Requirement("rate", "~", 1),
    lambda: Requirement("rate", ">=", "fast"),
    lambda: Target("t", "x", "==", 1),
    lambda: Target("t", "x", ">=", 1, over_runs="median"),
])
def test_malformed_targets_are_refused(bad):
    with pytest.raises(ValueError):
        bad()


def test_ratio_runs_and_baselines_must_pair():
    with pytest.raises(ValueError, match="3 runs but 2 baselines"):
        judge(RATIO, {"workers": 1}, [1, 2, 3], Baseline("bare", [1, 2]))


def test_every_target_is_well_formed_and_belongs_to_a_script():
    scripts = {"spool_append", "receiver", "tailer", "end_to_end", "parse_memory", "receiver_memory"}
    assert len(BY_KEY) == len(TARGETS), "duplicate target keys"
    for target in TARGETS:
        assert target.key.split(".", 1)[0] in scripts, target.key
        names = [c.name for c in target.conditions]
        assert len(names) == len(set(names)), target.key
    assert sum(len(by_bench(s)) for s in scripts) == len(TARGETS)


def test_the_latency_target_is_stated_at_1000_events_per_second_with_a_light_pacer():
    conditions = {c.name: c for c in BY_KEY["end_to_end.p99_201_to_stream"].conditions}
    assert conditions["rate"].required == 1000 and conditions["rate"].op == ">="
    assert "pacer CPU" in conditions


WRK_OUTPUT = """Running 20s test @ http://127.0.0.1:40001/v1/events
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms    1.32ms  30.01ms   95.00%
  Latency Distribution
     50%    1.85ms
     75%    2.40ms
     90%    3.10ms
     99%    1.20s
  20003 requests in 20.01s, 2.90MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:    999.65
Transfer/sec:    148.20KB
"""


def test_wrk_summary_is_parsed_with_units():
    r = parse_wrk(WRK_OUTPUT)
    assert (r["requests"], r["seconds"], r["non_2xx"], r["accepted"], r["socket_errors"]) == (20003, 20.01, 3, 20000, 3)
    assert r["socket_errors_by_kind"] == {"connect": 0, "read": 1, "write": 0, "timeout": 2}
    assert r["p50_ms"] == pytest.approx(1.85) and r["p99_ms"] == pytest.approx(1200.0)


def test_a_wrk_output_without_a_summary_is_an_error():
    with pytest.raises(ValueError):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


class CountingInput(io.BytesIO):
    pass


def test_the_receiver_baseline_reads_the_whole_body():
    from bench.bare_app import create_bare_app

    body = b'[' + b','.join([b'{"n":1}'] * 100) + b']'
    stream = CountingInput(body)
    app = create_bare_app(max_body_bytes=1 << 20)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/events", "SERVER_NAME": "x", "SERVER_PORT": "80",
               "wsgi.url_scheme": "http", "wsgi.input": stream, "CONTENT_LENGTH": str(len(body)),
               "CONTENT_TYPE": "application/json", "SERVER_PROTOCOL": "HTTP/1.1"}
    status = []
    out = b"".join(app.wsgi_app(environ, lambda s, h, *a: status.append(s)))
    assert status == ["201 CREATED"]
    assert stream.tell() == len(body)
    assert out == b'{"read":%d}' % len(body)


def _script_figures() -> dict[str, dict]:
    """What each script hands to report(), from made-up results shaped like a real run's."""
    from argparse import Namespace

    from bench import end_to_end, parse_memory, receiver, receiver_memory, spool_append, tailer

    wrk_run = {"rps": 3000.0, "wrk_cpu_cores": 0.05, "others_cpu_cores": 0.1, "rss_mib": 35.0, "socket_errors": 0}
    rounds = {name: [dict(wrk_run)] * 3 for name in ("bare", "receiver_1w", "receiver_2w", "bare_batch", "batch_1w")}
    best = {name: runs[0] for name, runs in rounds.items()}
    memory = {"events_accepted": 1_500_000, "rss_mib_after_load": 38.0, "rss_mib_while_503": 38.0, "refused_at_cap": 9}
    args = Namespace(connections=32, threads=8, seconds=5, rounds=3)
    contender = {"cpu_seconds_per_million_lines": 5.0, "lines_per_record": 1.0, "peak_rss_mib": 60.0}
    lat = {"achieved_rate": 1000.0, "seconds": 20.0, "read_back_of_accepted": 1.0, "p99_ms": 400,
           "pacer": {"cpu_cores": 0.05}}
    backlog = {"backlog_mib": 1100.0, "receiver_rss_mib_peak": 39.0, "receiver_rss_mib_first_5s": 38.0,
               "tailer_rss_mib_peak": 60.0, "tailer_rss_mib_first_5s": 58.0}
    return {
        "spool_append": spool_append.figures(100_000, 7, [1e6], [6e5], {"appends": 4000, "fsyncs_per_1000_appends": 150},
                                             {"fsyncs_per_1000_appends": 1000}),
        "receiver": receiver.figures(args, rounds, best, memory),
        "tailer": tailer.figures(1_000_000, {"naive": contender, "plain": contender, "aggregated": contender},
                                 200_000, {name: [{"cpu_seconds": 1.0}] * 3 for name in ("naive", "plain", "aggregated")}),
        "parse_memory": parse_memory.figures(
            [{"decode_estimate": 12, "decode_peak": 10, "serialize_estimate": 6, "serialize_peak": 5,
              "body_bytes": 1}] * 55, 4 * 2**20),
        "receiver_memory": receiver_memory.figures(
            [{"max_parse_mib": 32, "peak_rss_bytes": 78e6, "rss_before_bytes": 36e6}], 5.0),
        "end_to_end": end_to_end.figures({"latency": lat, "backlog": backlog,
                                          "baseline": {"pacer_alone": {"achieved_rate": 1000.0, "p99_ms": 10.0}}}),
    }


@pytest.mark.parametrize("bench", ["spool_append", "receiver", "tailer", "end_to_end", "parse_memory", "receiver_memory"])
def test_every_script_reports_every_target_with_its_conditions_and_a_same_run_baseline(bench):
    figures = _script_figures()[bench]
    assert set(figures) == {t.key for t in by_bench(bench)}
    for target in by_bench(bench):
        reached, measured, baseline = figures[target.key]
        missing = {c.name for c in target.conditions} - set(reached)
        assert not missing, f"{target.key}: the script does not report {missing}"
        assert isinstance(baseline, Baseline) and baseline.value is not None, target.key
        assert judge(target, reached, measured, baseline).status != NOT_MEASURED, target.key
