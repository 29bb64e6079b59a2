"""One measurement's verdict: pass, fail or inconclusive (DESIGN.md section 4).

A query must return exactly one finite sample to be compared with the metric's min/max.
Anything else is inconclusive (or, where the metric says so, a failure) and is never a
pass: Prometheus unreachable or erroring, an empty vector, NaN, ±Inf, several series, or
too little traffic by the metric's traffic guard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aigate.api.v1alpha1 import MetricSpec, Verdict


@dataclass(frozen=True)
class QueryOutcome:
    """What came back from Prometheus for one instant query."""

    samples: tuple[float, ...] = ()
    error: str = ""  # unreachable, timeout, HTTP or PromQL error: the text says which

    @classmethod
    def failed(cls, error: str) -> QueryOutcome:
        return cls(samples=(), error=error or "unknown error")


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    value: float | None
    reason: str
    baseline: float | None = None  # compareTo: the stable track's value


def threshold_text(metric: MetricSpec, relative: bool = True) -> str:
    """What would pass, e.g. '<= 0.01 and <= 1.2 x stable'; the relative bounds only where
    they apply (canary stages)."""
    parts = []
    if metric.min is not None:
        parts.append(f">= {metric.min:g}")
    if metric.max is not None:
        parts.append(f"<= {metric.max:g}")
    if relative and metric.is_relative():
        if metric.max_ratio is not None:
            parts.append(f"<= {metric.max_ratio:g} x stable")
        if metric.max_difference is not None:
            parts.append(f"<= stable {_signed(metric.max_difference)}")
        if metric.min_ratio is not None:
            parts.append(f">= {metric.min_ratio:g} x stable")
        if metric.min_difference is not None:
            parts.append(f">= stable {_signed(metric.min_difference)}")
    return " and ".join(parts)


def _signed(value: float) -> str:
    return f"- {-value:g}" if value < 0 else f"+ {value:g}"


def _single_value(outcome: QueryOutcome) -> tuple[float | None, str]:
    """The one sample, or None with why not."""
    if outcome.error:
        return None, outcome.error
    if not outcome.samples:
        return None, "no data (empty result)"
    if len(outcome.samples) > 1:
        return None, f"{len(outcome.samples)} series returned; the query must return exactly one"
    return outcome.samples[0], ""


def judge(
    metric: MetricSpec,
    outcome: QueryOutcome,
    guard: QueryOutcome | None = None,
    baseline: QueryOutcome | None = None,
    relative: bool = False,
) -> Judgement:
    """onError covers what says the query is wrong (an error, several series, ±Inf);
    onNoData covers what says there is nothing to measure (an empty result, NaN).
    `relative`: the metric's compareTo bounds apply (a canary stage) and `baseline` is the
    stable track's answer at the same instant."""
    # The baseline is recorded whatever decides the verdict.
    stable = _single_value(baseline)[0] if relative and baseline is not None else None
    value, problem = _single_value(outcome)
    if outcome.error:
        return Judgement(_fallback(metric.on_error), None, f"query failed: {problem}", stable)
    if len(outcome.samples) > 1:
        return Judgement(_fallback(metric.on_error), None, problem, stable)
    if value is None:
        return Judgement(_fallback(metric.on_no_data), None, problem, stable)
    if math.isnan(value):
        return Judgement(_fallback(metric.on_no_data), value, "NaN (no data in the window)", stable)
    if math.isinf(value):
        return Judgement(_fallback(metric.on_error), value, f"{value} is not a measurement", stable)
    too_little = _below_traffic_guard(metric, guard)
    if too_little:
        return Judgement("Inconclusive", value, too_little, stable)
    if metric.min is not None and value < metric.min:
        return Judgement("Fail", value, f"{value:g} < min {metric.min:g}", stable)
    if metric.max is not None and value > metric.max:
        return Judgement("Fail", value, f"{value:g} > max {metric.max:g}", stable)
    if relative and metric.is_relative():
        return _judge_against_baseline(metric, value, baseline)
    return Judgement("Pass", value, f"{value:g} within {threshold_text(metric, relative)}")


def _below_traffic_guard(metric: MetricSpec, guard: QueryOutcome | None) -> str:
    """Why the traffic is too little to judge; '' when enough (or no guard)."""
    if metric.traffic_guard is None:
        return ""
    guard_value, guard_problem = _single_value(guard or QueryOutcome.failed("not run"))
    if guard_value is None or not math.isfinite(guard_value):
        return f"traffic guard unreadable: {guard_problem or guard_value}"
    if guard_value < metric.traffic_guard.min_samples:
        return (
            f"traffic {guard_value:g} below the guard's minimum "
            f"{metric.traffic_guard.min_samples:g}"
        )
    return ""


def _judge_against_baseline(
    metric: MetricSpec, value: float, baseline: QueryOutcome | None
) -> Judgement:
    """The canary's value against the stable track's at the same instant. No baseline is
    never a pass: the comparison is what the metric asks for."""
    stable, problem = _single_value(baseline or QueryOutcome.failed("baseline query not run"))
    if stable is None or not math.isfinite(stable):
        why = problem or f"{stable} is not a measurement"
        return Judgement("Inconclusive", value, f"stable baseline: {why}", stable)
    against = f"canary {value:g}, stable {stable:g}"
    for bound, broken in _relative_checks(metric, value, stable):
        if broken:
            return Judgement("Fail", value, f"{against}: {bound}", stable)
    ratio_asked = metric.max_ratio is not None or metric.min_ratio is not None
    if ratio_asked and stable == 0 and value != 0:
        return Judgement(
            "Inconclusive",
            value,
            f"{against}: a ratio to a zero baseline is undefined (add maxDifference "
            f"or an absolute bound)",
            stable,
        )
    return Judgement("Pass", value, f"{against}: within {threshold_text(metric)}", stable)


def _relative_checks(metric: MetricSpec, value: float, stable: float) -> list[tuple[str, bool]]:
    """(the bound as text, whether it is broken) for each relative bound the metric sets;
    ratios are checked only against a non-zero baseline."""
    checks = []
    if metric.max_difference is not None:
        limit = stable + metric.max_difference
        checks.append((f"over stable {_signed(metric.max_difference)} = {limit:g}", value > limit))
    if metric.min_difference is not None:
        limit = stable + metric.min_difference
        checks.append((f"under stable {_signed(metric.min_difference)} = {limit:g}", value < limit))
    if stable != 0 and metric.max_ratio is not None:
        checks.append(
            (
                f"ratio {value / stable:.4g} over maxRatio {metric.max_ratio:g}",
                value > metric.max_ratio * stable,
            )
        )
    if stable != 0 and metric.min_ratio is not None:
        checks.append(
            (
                f"ratio {value / stable:.4g} under minRatio {metric.min_ratio:g}",
                value < metric.min_ratio * stable,
            )
        )
    return checks


def _fallback(policy: str) -> Verdict:
    # The schema only allows Inconclusive or Fail: missing data is never a pass.
    return "Fail" if policy == "Fail" else "Inconclusive"
