"""Helpers shared by the benchmarks: the machine a figure depends on, verdicts, one JSON file of results.

Every script ends with ``report(name, results, figures)``: ``figures`` gives, per
target key of bench/targets.py, the conditions the run reached, the figure and its
same-run baseline. The verdicts are printed plainly, one line each, and stored
with the results and the machine's description in bench/results/NAME.json.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from bench.targets import by_bench
from bench.verdict import Baseline, Figure, Value, Verdict, judge, summary

__all__ = ["RESULTS", "Machine", "OtherLoad", "cpu_seconds_of", "environment", "event_line", "pin_env", "progress", "report"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Per target key: (conditions reached, figure, same-run baseline).
Figures = Mapping[str, tuple[Mapping[str, Value], Figure, Baseline | None]]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def python_reference_mops() -> float:
    """Millions of simple Python loop steps per second, best of 3: this moment's speed of this machine."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(300_000):
            total += i & 7
        best = min(best, time.perf_counter() - started)
    return round(0.3 / best, 1)


def _tool_version(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else None


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    """What every figure depends on: cores, CPU model, Python, tools, and how busy the machine was."""
    kinesalite = ROOT / ".tools" / "node_modules" / "kinesalite" / "package.json"
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "git_commit": _git("rev-parse", "HEAD") or None,
        "git_tracked_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "wrk": _tool_version(["wrk", "--version"]),
        "node": _tool_version(["node", "--version"]),
        "kinesalite": json.loads(kinesalite.read_text())["version"] if kinesalite.exists() else None,
        "python_reference_mops": python_reference_mops(),
    }


# psutil's Linux cpu_times(): guest and guest_nice are already counted in user and nice.
_CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def _machine_seconds() -> tuple[float, float, float]:
    """(total, busy, steal) CPU-seconds of the whole machine since boot."""
    import psutil

    times = psutil.cpu_times()
    parts = {name: getattr(times, name, 0.0) for name in _CPU_FIELDS}
    total = sum(parts.values())
    return total, total - parts["idle"] - parts["iowait"], parts["steal"]


class Machine:
    """How busy the whole machine was between ``Machine()`` and ``.busy()`` (others' tests count too)."""

    def __init__(self) -> None:
        self._start = _machine_seconds()
        self.load_average_at_start = round(os.getloadavg()[0], 2)

    def busy(self) -> dict:
        total, busy, steal = (end - start for end, start in zip(_machine_seconds(), self._start, strict=True))
        total = total or 1.0
        return {"load_average_1m_at_start": self.load_average_at_start,
                "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                "machine_cpu_busy_fraction": round(busy / total, 3),
                "machine_cpu_steal_fraction": round(steal / total, 3)}


class OtherLoad:
    """The CPU (cores) that everything but ``pids``, their children and this process used while it ran.

    The machine is shared: a 2-worker figure taken while other processes held most of a core
    did not have the two cores its target is stated for. Stolen time counts as others'.
    """

    def __init__(self, pids: list[int]) -> None:
        import psutil

        self._procs = [psutil.Process(os.getpid())]
        for pid in pids:
            parent = psutil.Process(pid)
            self._procs += [parent, *parent.children(recursive=True)]
        self._started = time.monotonic()
        self._machine = _machine_seconds()[1]
        self._ours = self._our_seconds()

    def _our_seconds(self) -> float:
        import psutil

        total = 0.0
        for proc in self._procs:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def cores(self, extra_ours_seconds: float = 0.0) -> float:
        """Others' CPU so far; ``extra_ours_seconds``: ours not in ``pids`` (a reaped wrk's, from wait4)."""
        elapsed = time.monotonic() - self._started or 1e-9
        machine = _machine_seconds()[1] - self._machine
        ours = self._our_seconds() - self._ours + extra_ours_seconds
        return round(max(0.0, machine - ours) / elapsed, 3)


def report(name: str, results: dict, figures: Figures, machine: Machine | None = None,
           env: dict | None = None) -> list[Verdict]:
    """Judge every target of ``name``, print the verdicts plainly, keep everything for run_all."""
    verdicts = []
    for target in by_bench(name):
        reached, measured, baseline = figures.get(target.key, ({}, None, None))
        verdicts.append(judge(target, reached, measured, baseline))
    env = dict(env or environment())
    if machine is not None:
        env.update(machine.busy())
    doc = {"bench": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "environment": env,
           "verdicts": [v.as_dict() for v in verdicts], "results": results}
    print(f"-- {name}: {summary(verdicts)}")
    for verdict in verdicts:
        print("   " + verdict.line())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return verdicts


def cpu_seconds_of(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def event_line(n: int, size: int = 200) -> bytes:
    """A compact JSON line of exactly ``size`` bytes (with its newline)."""
    head = b'{"n":%d,"type":"page_view","pad":"' % n
    pad = size - len(head) - 3
    return head + b"x" * pad + b'"}\n'


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pin_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("AWS_ACCESS_KEY_ID", "bench")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return env
