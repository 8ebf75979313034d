"""`make bench`: every benchmark, then bench/results/latest.json, latest.md and the plots.

Each benchmark judges its own targets (bench/targets.py, bench/verdict.py) against
baselines measured in the same run and prints one plain line per target: met, not
met, or not measured at the target (with the figure reached and the condition that
fell short). A benchmark that fails leaves its targets "not measured at the target";
results of an earlier run are never reused. ``--quick`` runs every script briefly:
its figures are for trying the machinery, and say "not measured at the target"; it
writes bench/results/quick.json and quick.md and leaves latest.* and the plots alone.

usage: run_all.py [--quick] [NAME ...]     (NAME: spool_append receiver tailer end_to_end parse_memory receiver_memory)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # not bench/: bench/receiver.py and bench/tailer.py would shadow the packages
    sys.path[0] = str(ROOT)

from bench.common import RESULTS, environment  # noqa: E402
from bench.targets import by_bench  # noqa: E402
from bench.verdict import NOT_MEASURED, STATUSES, number  # noqa: E402

BENCHES = {
    "spool_append": (["bench/spool_append.py"], ["--events", "20000", "--rounds", "2", "--fsync-appends", "800"]),
    "receiver": (["bench/receiver.py"], ["--seconds", "2", "--rounds", "1"]),
    "tailer": (["bench/tailer.py"], ["--lines", "100000", "--steady-lines", "50000", "--warm-up-lines", "5000",
                                    "--rounds", "1"]),
    "end_to_end": (["bench/end_to_end.py"], ["--latency-seconds", "8", "--seconds", "3",
                                             "--backlog-bytes", str(64 * 1024**2), "--backlog-seconds", "15"]),
    "parse_memory": (["bench/parse_memory.py"], ["--shape", "events [{},{},...]", "--shape", "typical events"]),
    "receiver_memory": (["bench/receiver_memory.py", "--one-worker", "--max-parse-mib", "32"], ["--seconds", "1"]),
}


def run(names: list[str], quick: bool) -> dict:
    docs, failures = {}, {}
    for name in names:
        cmd, quick_args = BENCHES[name]
        (RESULTS / f"{name}.json").unlink(missing_ok=True)
        print(f"== {name}", flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, *cmd, *(quick_args if quick else [])], cwd=ROOT).returncode
        print(f"== {name} took {time.monotonic() - started:.0f}s" + (f", exit {code}" if code else ""), flush=True)
        path = RESULTS / f"{name}.json"
        if code == 0 and path.exists():
            docs[name] = json.loads(path.read_text())
        else:
            failures[name] = code
    return {"docs": docs, "failures": failures}


def verdict_rows(docs: dict, failures: dict) -> list[dict]:
    rows = []
    for name in BENCHES:
        if name in docs:
            rows.extend(docs[name]["verdicts"])
        elif name in failures:
            rows.extend({"target": t.key, "what": t.what, "stated": t.stated(),
                         "conditions": [c.stated() for c in t.conditions], "status": NOT_MEASURED,
                         "figure": None, "baseline": None,
                         "reason": f"bench/{name}.py failed (exit {failures[name]})"} for t in by_bench(name))
    return rows


def table(rows: list[dict], env: dict, quick: bool, names: list[str]) -> str:
    not_run = [name for name in BENCHES if name not in names]
    head = [f"Machine: {env['cores']} cores ({env['cpu_model']}), Python {env['python']}, "
            f"python reference {env['python_reference_mops']} Mops/s, commit {str(env.get('git_commit'))[:12]}"
            + (" — QUICK RUN: figures are not measured at the targets" if quick else ""), "",
            f"Run in this invocation: {', '.join(names)}" + (f"; not run: {', '.join(not_run)}" if not_run else ""), "",
            "| target | conditions reached [as the target states them] | figure | same-run baseline | verdict |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        base = r.get("baseline")
        base_text = "—" if not base else f"{base['what']}: {_value(base['value'])} {base['unit']}".strip()
        verdict = r["status"] + (f" ({r['reason']})" if r["status"] == NOT_MEASURED else "")
        conditions = r.get("conditions_reached") or "; ".join(r["conditions"]) or "—"
        head.append(f"| {r['what']} {r['stated']} | {conditions} | {r.get('figure_text') or _value(r['figure'])} | "
                    f"{base_text} | {verdict} |")
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    head += ["", ", ".join(f"{n} {s}" for s, n in counts.items())]
    return "\n".join(head) + "\n"


def _value(value) -> str:
    if isinstance(value, list):
        return f"{number(min(value))}–{number(max(value))}" if value else "none"
    return number(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs of everything (not measured at the targets)")
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHES))
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark {sorted(unknown)}: choose from {', '.join(BENCHES)}")
    names = [name for name in BENCHES if name in args.names] or list(BENCHES)
    RESULTS.mkdir(exist_ok=True)
    env = environment()
    outcome = run(names, args.quick)
    if "end_to_end" in outcome["docs"] and not args.quick:  # docs/img shows full runs only
        subprocess.run([sys.executable, "bench/plots.py"], cwd=ROOT, check=True)
    rows = verdict_rows(outcome["docs"], outcome["failures"])
    latest = {"environment": env, "quick": args.quick, "run": names, "benches": outcome["docs"],
              "failed": outcome["failures"],
              "verdicts": rows}
    stem = "quick" if args.quick else "latest"  # a quick run never overwrites the last full run's tables
    (RESULTS / f"{stem}.json").write_text(json.dumps(latest, indent=1, sort_keys=True) + "\n")
    (RESULTS / f"{stem}.md").write_text(table(rows, env, args.quick, names))
    print()
    for r in rows:
        print(r.get("line") or f"{r['status'].upper():<27} {r['what']} {r['stated']}: no figure — {r['reason']}")
    print(table(rows, env, args.quick, names).splitlines()[-1])
    print(f"written: {RESULTS / (stem + '.json')}, {RESULTS / (stem + '.md')}")
    sys.exit(1 if outcome["failures"] else 0)


if __name__ == "__main__":
    main()
