"""Verdicts for the targets in bench/: "met" only for what the run measured.

A target compares one figure with a threshold ("≥ 0.90 × bare", "≤ 1,000 ms") under
stated conditions (a rate, sizes, workers, cores). A run that did not reach the
conditions did not measure the target, whatever its figure says: a p99 taken at
490 events/s says nothing about 1,000 events/s. ``judge`` decides, in this order:

  not measured at the target   the figure is missing; or the target is a ratio and its
                               same-run baseline is missing or zero; or a condition was
                               not reached (or not recorded). The figure reached is kept.
  met                          every condition reached, the figure on the right side
  not met                      every condition reached, the figure on the wrong side

A figure can come from several runs (rounds): ``over_runs="best"`` judges the best
of them, ``"every"`` the worst (each run must pass). A ratio divides each run's
figure by its own baseline when both are lists, else by the one baseline.
Standard library only: the unit test (tests/unit/test_bench_verdict.py) covers the table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["MET", "NOT_MEASURED", "NOT_MET", "STATUSES", "Baseline", "Figure", "Requirement", "Target", "Value", "Verdict",
           "judge", "number", "summary"]

MET = "met"
NOT_MET = "not met"
NOT_MEASURED = "not measured at the target"
STATUSES = (MET, NOT_MET, NOT_MEASURED)
_OPS = (">=", "<=", "==")
_TARGET_OPS = {">=": "≥", ">": ">", "<=": "≤", "<": "<"}

Value = float | int | str | None
Figure = float | int | Sequence[float] | None


def number(value: Value) -> str:
    """A figure as people read it: 1,000 / 0.92 / 12.3 / none."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value
    if isinstance(value, int) or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


@dataclass(frozen=True)
class Requirement:
    """A condition a target is stated under, e.g. ``rate >= 1,000 events/s`` (2% slack)."""

    name: str
    op: str
    required: float | int | str
    unit: str = ""
    tolerance: float = 0.0  # relative slack: 0.02 lets 980 reach ">= 1,000"

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"requirement {self.name!r}: op must be one of {_OPS}, not {self.op!r}")
        if self.op != "==" and isinstance(self.required, str):
            raise ValueError(f"requirement {self.name!r}: {self.op} needs a number")

    def is_reached(self, reached: Value) -> bool:
        if reached is None or isinstance(reached, float) and math.isnan(reached):
            return False
        if self.op == "==":
            return reached == self.required
        if isinstance(reached, str):
            return False
        if self.op == ">=":
            return reached >= self.required * (1 - self.tolerance)
        return reached <= self.required * (1 + self.tolerance)

    def bound(self) -> str:
        """``≥ 1,000 events/s (within 2%)``."""
        op = {">=": "≥", "<=": "≤", "==": "="}[self.op]
        slack = f" (within {self.tolerance:.0%})" if self.tolerance else ""
        return f"{op} {number(self.required)}{_unit(self.unit)}{slack}"

    def stated(self) -> str:
        return f"{self.name} {self.bound()}"

    def describe(self, reached: Value) -> str:
        """What the run reached, and what the target needs if that falls short."""
        got = f"{self.name} {number(reached)}{_unit(self.unit)}"
        return got if self.is_reached(reached) else f"{got} where the target needs {self.bound()}"


@dataclass(frozen=True)
class Target:
    """One target: ``what`` op ``threshold`` ``unit``, under ``conditions``."""

    key: str  # stable, e.g. "receiver.one_worker_over_bare"
    what: str
    op: str
    threshold: float
    unit: str = ""
    ratio: bool = False  # judged on measured / same-run baseline
    over_runs: str = "best"
    conditions: tuple[Requirement, ...] = ()

    def __post_init__(self) -> None:
        if self.op not in _TARGET_OPS:
            raise ValueError(f"target {self.key!r}: op must be one of {tuple(_TARGET_OPS)}, not {self.op!r}")
        if self.over_runs not in ("best", "every"):
            raise ValueError(f"target {self.key!r}: over_runs must be 'best' or 'every'")

    @property
    def higher_is_better(self) -> bool:
        return self.op.startswith(">")

    def stated(self) -> str:
        return f"{_TARGET_OPS[self.op]} {number(self.threshold)}{_unit(self.unit)}"

    def passes(self, figure: float) -> bool:
        return {">=": figure >= self.threshold, ">": figure > self.threshold,
                "<=": figure <= self.threshold, "<": figure < self.threshold}[self.op]


@dataclass(frozen=True)
class Baseline:
    """The same-run figure a target's figure is read against (divided by, for a ratio)."""

    what: str
    value: Figure
    unit: str = ""


@dataclass(frozen=True)
class Verdict:
    target: Target
    status: str
    figure: float | None  # the judged figure (a ratio for ratio targets), None when there is none
    runs: tuple[float, ...]  # the figure of every run, judged or not
    reached: dict[str, Value] = field(default_factory=dict)
    short: tuple[str, ...] = ()  # conditions not reached, described with what was reached
    baseline: Baseline | None = None
    reason: str = ""

    def line(self) -> str:
        """Plain text: status, target, figure and baseline; why, if not measured; then the conditions."""
        figure = self.figure_text()
        if len(self.runs) > 1:
            figure += f" ({self.target.over_runs} of {len(self.runs)}: {number(min(self.runs))}–{number(max(self.runs))})"
        text = f"{self.status.upper():<27} {self.target.what} {self.target.stated()}: {figure}"
        if self.baseline is not None:
            text += f"; baseline {self.baseline.what} {_baseline_text(self.baseline)}"
        if self.status == NOT_MEASURED:
            text += f" — {self.reason}"
        if self.target.conditions:
            text += "\n" + " " * 28 + "at: " + self.conditions_text()
        return text

    def conditions_text(self) -> str:
        """``rate 998 events/s [≥ 1,000 events/s (within 2%)]; workers 2 [= 1: NOT REACHED]``."""
        return "; ".join(f"{r.name} {number(self.reached.get(r.name))}{_unit(r.unit)} [{r.bound()}"
                         + ("" if r.is_reached(self.reached.get(r.name)) else ": NOT REACHED") + "]"
                         for r in self.target.conditions)

    def figure_text(self) -> str:
        return "no figure" if self.figure is None else f"{number(self.figure)}{_unit(self.target.unit)}"

    def as_dict(self) -> dict:
        return {
            "target": self.target.key, "what": self.target.what, "stated": self.target.stated(),
            "conditions": [r.stated() for r in self.target.conditions],
            "reached": self.reached, "status": self.status, "figure": self.figure, "runs": list(self.runs),
            "over_runs": self.target.over_runs, "short": list(self.short), "reason": self.reason,
            "line": self.line(), "figure_text": self.figure_text(), "conditions_reached": self.conditions_text(),
            "baseline": None if self.baseline is None else
            {"what": self.baseline.what, "value": _plain(self.baseline.value), "unit": self.baseline.unit},
        }


def judge(target: Target, reached: Mapping[str, Value], measured: Figure,
          baseline: Baseline | None = None) -> Verdict:
    """Decide met / not met / not measured at the target (see the module docstring)."""
    reached = {r.name: reached.get(r.name) for r in target.conditions}
    runs = _ratios(target, measured, baseline)
    verdict = dict(target=target, runs=runs, reached=reached, baseline=baseline)
    figure = _judged(target, runs)
    if figure is None:
        why = "no same-run baseline to divide by" if target.ratio and _values(measured) else "no figure"
        return Verdict(status=NOT_MEASURED, figure=None, reason=why, **verdict)
    short = tuple(r.describe(reached[r.name]) for r in target.conditions if not r.is_reached(reached[r.name]))
    if short:
        return Verdict(status=NOT_MEASURED, figure=figure, short=short,
                       reason="not reached: " + "; ".join(short), **verdict)
    return Verdict(status=MET if target.passes(figure) else NOT_MET, figure=figure, **verdict)


def summary(verdicts: Sequence[Verdict]) -> str:
    counts = {s: sum(v.status == s for v in verdicts) for s in STATUSES}
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def _values(figure: Figure) -> list[float]:
    if figure is None:
        return []
    items = [figure] if isinstance(figure, int | float) else list(figure)
    return [float(v) for v in items if v is not None and not math.isnan(v)]


def _ratios(target: Target, measured: Figure, baseline: Baseline | None) -> tuple[float, ...]:
    values = _values(measured)
    if not target.ratio:
        return tuple(values)
    bases = _values(baseline.value) if baseline is not None else []
    if not bases or any(b == 0 for b in bases):
        return ()
    if len(bases) == 1:
        return tuple(v / bases[0] for v in values)
    if len(bases) != len(values):
        raise ValueError(f"target {target.key!r}: {len(values)} runs but {len(bases)} baselines")
    return tuple(v / b for v, b in zip(values, bases, strict=True))


def _judged(target: Target, runs: tuple[float, ...]) -> float | None:
    if not runs:
        return None
    best, worst = (max, min) if target.higher_is_better else (min, max)
    return (best if target.over_runs == "best" else worst)(runs)


def _unit(unit: str) -> str:
    return f" {unit}" if unit else ""


def _baseline_text(baseline: Baseline) -> str:
    values = _values(baseline.value)
    if not values:
        return "missing"
    text = number(max(values)) if len(values) == 1 else f"{number(min(values))}–{number(max(values))}"
    return text + _unit(baseline.unit)


def _plain(value: Figure):
    return value if value is None or isinstance(value, int | float) else list(value)
