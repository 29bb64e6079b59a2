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


def threshold_text(metric: MetricSpec) -> str:
    parts = []
    if metric.min is not None:
        parts.append(f">= {metric.min:g}")
    if metric.max is not None:
        parts.append(f"<= {metric.max:g}")
    return " and ".join(parts)


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
    metric: MetricSpec, outcome: QueryOutcome, guard: QueryOutcome | None = None
) -> Judgement:
    """onError covers what says the query is wrong (an error, several series, ±Inf);
    onNoData covers what says there is nothing to measure (an empty result, NaN)."""
    value, problem = _single_value(outcome)
    if outcome.error:
        return Judgement(_fallback(metric.on_error), None, f"query failed: {problem}")
    if len(outcome.samples) > 1:
        return Judgement(_fallback(metric.on_error), None, problem)
    if value is None:
        return Judgement(_fallback(metric.on_no_data), None, problem)
    if math.isnan(value):
        return Judgement(_fallback(metric.on_no_data), value, "NaN (no data in the window)")
    if math.isinf(value):
        return Judgement(_fallback(metric.on_error), value, f"{value} is not a measurement")

    if metric.traffic_guard is not None:
        guard_value, guard_problem = _single_value(guard or QueryOutcome.failed("not run"))
        if guard_value is None or not math.isfinite(guard_value):
            return Judgement(
                "Inconclusive", value, f"traffic guard unreadable: {guard_problem or guard_value}"
            )
        if guard_value < metric.traffic_guard.min_samples:
            return Judgement(
                "Inconclusive",
                value,
                f"traffic {guard_value:g} below the guard's minimum {metric.traffic_guard.min_samples:g}",
            )

    if metric.min is not None and value < metric.min:
        return Judgement("Fail", value, f"{value:g} < min {metric.min:g}")
    if metric.max is not None and value > metric.max:
        return Judgement("Fail", value, f"{value:g} > max {metric.max:g}")
    return Judgement("Pass", value, f"{value:g} within {threshold_text(metric)}")


def _fallback(policy: str) -> Verdict:
    # The schema only allows Inconclusive or Fail: missing data is never a pass.
    return "Fail" if policy == "Fail" else "Inconclusive"
