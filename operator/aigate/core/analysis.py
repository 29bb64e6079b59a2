"""Analysis of a running stage: which queries to run, and what their results add up to.

Queries are templated with the resource's name, namespace, revision, version and track;
each value is escaped for a PromQL string literal, so no name can inject PromQL. Counters
live in status (AnalysisState), so a restarted operator continues the same count.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from aigate.api.durations import parse_duration
from aigate.api.v1alpha1 import (
    AnalysisSpec,
    AnalysisState,
    MeasurementRecord,
    MetricCounters,
    MetricSpec,
)
from aigate.core.gate import format_rfc3339, parse_rfc3339
from aigate.core.revision import short
from aigate.core.verdict import QueryOutcome, judge, threshold_text

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z]+)\s*\}\}")
PLACEHOLDERS = frozenset({"name", "namespace", "revision", "version", "track"})


def escape_label_value(value: str) -> str:
    """Escapes a value for use inside a double-quoted PromQL string."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def unknown_placeholders(query: str) -> set[str]:
    return {name for name in PLACEHOLDER.findall(query) if name not in PLACEHOLDERS}


def render_query(template: str, values: dict[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"unknown placeholder {{{{{name}}}}}; known: {sorted(PLACEHOLDERS)}")
        return escape_label_value(values[name])

    return PLACEHOLDER.sub(substitute, template)


@dataclass(frozen=True)
class PlannedQuery:
    metric: str
    query: str
    guard_query: str | None
    baseline_query: str | None = None  # compareTo: the same query for the stable track


@dataclass(frozen=True)
class MeasurementPlan:
    """Queries due now, all to be evaluated at the same instant `at`, for the analysis of
    `revision` on `track` (stage_index -1: the post-promotion watch)."""

    track: str
    at: datetime
    queries: tuple[PlannedQuery, ...]
    revision: str = ""
    stage_index: int = -1
    # When it was due (None: the analysis's first, due as soon as the pods can be measured)
    # and how long after that it is taken.
    due: datetime | None = None
    lag_seconds: float = 0.0
    # When the analysis may end by time alone (a stage's duration, the watch period; None:
    # it cannot): what falls due after it belongs to whatever comes next, so the measurer
    # takes nothing due after it ahead of a round.
    ends: datetime | None = None
    # The analysis' startedAt: tells a restarted analysis of the same stage from the one a
    # measurement was taken for.
    analysis_started: str = ""


@dataclass(frozen=True)
class MetricResult:
    metric: str
    query: str
    outcome: QueryOutcome
    guard: QueryOutcome | None = None
    baseline: QueryOutcome | None = None
    baseline_query: str = ""


@dataclass(frozen=True)
class Measurements:
    track: str
    at: datetime
    results: tuple[MetricResult, ...]
    revision: str = ""
    stage_index: int = -1
    due: datetime | None = None
    lag_seconds: float = 0.0

    @classmethod
    def of(cls, plan: MeasurementPlan, results: tuple[MetricResult, ...]) -> Measurements:
        """The results of `plan`, keyed like it (so they count only where they were due)."""
        return cls(
            plan.track,
            plan.at,
            results,
            plan.revision,
            plan.stage_index,
            plan.due,
            plan.lag_seconds,
        )

    def belongs_to(self, state: AnalysisState) -> bool:
        """Taken for this analysis (track, revision, stage): never counted elsewhere."""
        return (self.track, self.revision, self.stage_index) == (
            state.track,
            state.revision,
            state.stage_index,
        )


@dataclass(frozen=True)
class Subject:
    """What a query's placeholders are filled with: one track's pods."""

    name: str
    namespace: str
    revision: str
    version: str
    track: str

    def values(self) -> dict[str, str]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "revision": short(self.revision),  # as the pods' aigate.dev/revision label has it
            "version": self.version,
            "track": self.track,
        }


def relative_applies(track: str) -> bool:
    """compareTo bounds apply while a canary runs beside the stable track."""
    return track == "canary"


def measured_metrics(analysis: AnalysisSpec, track: str) -> list[MetricSpec]:
    """The metrics measured on `track`: in the post-promotion watch (stable track) a metric
    with only relative bounds has nothing to compare with and is left out."""
    if relative_applies(track):
        return list(analysis.metrics)
    return [m for m in analysis.metrics if m.has_absolute_bounds()]


def plan_queries(
    analysis: AnalysisSpec, subject: Subject, baseline: Subject | None = None
) -> tuple[PlannedQuery, ...]:
    """The queries for `subject`, and for compareTo metrics the same query for `baseline`
    (the stable track) while a canary runs."""
    values = subject.values()
    relative = relative_applies(subject.track) and baseline is not None
    return tuple(
        PlannedQuery(
            metric=metric.name,
            query=render_query(metric.query_template(), values),
            guard_query=(
                render_query(metric.traffic_guard.query, values) if metric.traffic_guard else None
            ),
            baseline_query=(
                render_query(metric.query_template(), baseline.values())
                if relative and baseline is not None and metric.is_relative()
                else None
            ),
        )
        for metric in measured_metrics(analysis, subject.track)
    )


def format_value(value: float | None) -> str:
    if value is None:
        return ""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return format(value, ".6g")


def record_measurements(
    state: AnalysisState, analysis: AnalysisSpec, measurements: Measurements, at_iso: str
) -> tuple[AnalysisState, list[MeasurementRecord]]:
    """Judges each result and adds it to the counters. Metrics without a result (should not
    happen) count as inconclusive: absence is never a pass."""
    state = state.model_copy(deep=True)
    by_metric = {result.metric: result for result in measurements.results}
    relative = relative_applies(measurements.track)
    records: list[MeasurementRecord] = []
    for metric in measured_metrics(analysis, measurements.track):
        result = by_metric.get(metric.name) or MetricResult(
            metric.name, "", QueryOutcome.failed("no result recorded for this metric")
        )
        judgement = judge(metric, result.outcome, result.guard, result.baseline, relative)
        record = MeasurementRecord(
            metric=metric.name,
            track=measurements.track,
            query=result.query,
            value=format_value(judgement.value),
            threshold=threshold_text(metric, relative),
            verdict=judgement.verdict,
            reason=judgement.reason,
            time=at_iso,
            baseline_query=result.baseline_query if relative else "",
            baseline_value=format_value(judgement.baseline),
            lag_seconds=measurements.lag_seconds,
        )
        counters = state.metrics.get(metric.name, MetricCounters()).model_copy()
        counters.measurements += 1
        counters.last = record
        # An inconclusive measurement neither extends nor breaks a consecutive-failure
        # streak: missing data says nothing about the canary (docs/state-machine.md).
        if judgement.verdict == "Fail":
            counters.failures += 1
            counters.consecutive_failures += 1
            counters.consecutive_inconclusive = 0
        elif judgement.verdict == "Inconclusive":
            counters.consecutive_inconclusive += 1
        else:
            counters.passes += 1
            counters.consecutive_failures = 0
            counters.consecutive_inconclusive = 0
        state.metrics[metric.name] = counters
        records.append(record)
    state.last_measured_at = at_iso
    state.next_measurement_at = format_rfc3339(
        next_due(measurements.at, measurements.due, parse_duration(analysis.interval))
    )
    return state, records


def due_time(state: AnalysisState, analysis: AnalysisSpec) -> datetime | None:
    """When the analysis's next measurement is due; None before its first (due as soon as
    the pods can be measured). A status written before the grid existed: one interval
    after the last measurement."""
    if state.next_measurement_at:
        return parse_rfc3339(state.next_measurement_at)
    if state.last_measured_at:
        return parse_rfc3339(state.last_measured_at) + parse_duration(analysis.interval)
    return None


def next_due(at: datetime, due: datetime | None, interval: timedelta) -> datetime:
    """Measurements keep to a grid: the next is due one interval after this one was due,
    so a late measurement does not push the rest back (a stage of three intervals keeps
    its three measurements). The first, or one so late it missed a whole slot, starts the
    grid at the time it was taken."""
    if due is None or at - due >= interval:
        return at + interval
    return due + interval


def same_analysis(a: MeasurementPlan, b: MeasurementPlan) -> bool:
    """Measurements of the same analysis: track, revision, stage, its start and queries."""
    return (a.track, a.revision, a.stage_index, a.analysis_started, a.queries) == (
        b.track,
        b.revision,
        b.stage_index,
        b.analysis_started,
        b.queries,
    )


def same_measurement(a: MeasurementPlan, b: MeasurementPlan) -> bool:
    """The same analysis and due time; only when it was planned or taken differs."""
    return same_analysis(a, b) and a.due == b.due


def taken_now(plan: MeasurementPlan, now: datetime) -> MeasurementPlan:
    """`plan` taken at `now`: stamped to the second, with how late it is."""
    lag = max(0.0, round((now - plan.due).total_seconds(), 1)) if plan.due is not None else 0.0
    return replace(plan, at=now.replace(microsecond=0), lag_seconds=lag)


def following(taken: MeasurementPlan, analysis: AnalysisSpec) -> MeasurementPlan:
    """The measurement after `taken` on the grid, due when record_measurements() will say
    (through status' second-precision timestamp)."""
    due = next_due(taken.at, taken.due, parse_duration(analysis.interval))
    return replace(taken, due=parse_rfc3339(format_rfc3339(due)), lag_seconds=0.0)


@dataclass(frozen=True)
class AnalysisStanding:
    """What the counters say, most serious first."""

    breach: str  # non-empty: a limit that triggers rollback was exceeded, and how
    breach_evidence: MeasurementRecord | None
    inconclusive: str  # non-empty: analysis cannot conclude (→ Paused)
    # every metric's latest verdict is Pass and it passed at least min_passing times
    all_passing: bool


def min_passing(analysis: AnalysisSpec, duration: timedelta) -> int:
    """Passing measurements each metric needs: the spec's minPassingMeasurements, else half
    of the intervals that fit in `duration`, at least 1."""
    if analysis.min_passing_measurements is not None:
        return analysis.min_passing_measurements
    fits = int(duration.total_seconds() // parse_duration(analysis.interval).total_seconds())
    return max(1, fits // 2)


def standing(state: AnalysisState, analysis: AnalysisSpec, needed: int = 1) -> AnalysisStanding:
    breach, evidence, inconclusive = "", None, ""
    metrics = measured_metrics(analysis, state.track)
    for metric in metrics:
        counters = state.metrics.get(metric.name, MetricCounters())
        last = counters.last
        if not breach and counters.failures > analysis.failure_limit:
            breach, evidence = (
                _breach_text(
                    metric, counters, "failureLimit", analysis.failure_limit, counters.failures
                ),
                last,
            )
        limit = analysis.consecutive_failure_limit
        if not breach and limit is not None and counters.consecutive_failures >= limit:
            breach, evidence = (
                _breach_text(
                    metric,
                    counters,
                    "consecutiveFailureLimit",
                    limit,
                    counters.consecutive_failures,
                ),
                last,
            )
        if not inconclusive and counters.consecutive_inconclusive > analysis.inconclusive_limit:
            reason = last.reason if last else "no measurement"
            inconclusive = (
                f"metric {metric.name}: {counters.consecutive_inconclusive} inconclusive "
                f"measurements in a row (inconclusiveLimit {analysis.inconclusive_limit}); "
                f"last: {reason}"
            )
    all_passing = all(
        (c := state.metrics.get(m.name)) is not None
        and c.last is not None
        and c.last.verdict == "Pass"
        and c.passes >= needed
        for m in metrics
    )
    return AnalysisStanding(breach, evidence, inconclusive, all_passing and not breach)


def _breach_text(
    metric: MetricSpec, counters: MetricCounters, limit_name: str, limit: int, count: int
) -> str:
    last = counters.last
    value = f"value {last.value}" if last and last.value else (last.reason if last else "")
    if last and last.baseline_value:
        value += f" against stable {last.baseline_value}"
    return (
        f"metric {metric.name} failed {count} time(s), over {limit_name} {limit}: "
        f"last {value}, threshold {threshold_text(metric)}"
    )


def latest_evidence(state: AnalysisState | None) -> list[MeasurementRecord]:
    if state is None:
        return []
    return [c.last for c in state.metrics.values() if c.last is not None]
