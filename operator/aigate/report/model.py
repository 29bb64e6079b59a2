"""records -> the report's data: what an auditor reads, with no cluster knowledge needed.

Pure (standard library and aigate.api only): the renderers (HTML, Markdown, JSON) only lay
out what is built here, so every section is tested once, on data. Records are taken as
given (their signatures and chain are checked by the caller; the result is passed in as a
ChainCheck and shown as it is). Anything a record lacks is shown as missing, never guessed,
and no input makes the builder fail: an export from an older or newer aigate still gives a
report.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aigate.api import records as api
from aigate.api.records import AIRecordSpec
from aigate.report.controls import CONTROLS, ControlRow

# A rollout attempt starts with one of these transitions (a new canary, a first version,
# a replacement), and ends when the resource leaves the rollout's phases.
START_REASONS = frozenset(
    {"RolloutStarted", "FirstVersion", "CanarySuperseded", "CandidateSuperseded"}
)
ACTIVE_PHASES = frozenset(
    {"Deploying", "Progressing", "Paused", "Promoting", "Verifying", "RollingBack"}
)
PROMOTION_REASONS = frozenset({"AllStagesPassed", "Promoted", "WatchCompleted"})


@dataclass(frozen=True)
class Subject:
    namespace: str
    name: str
    uids: tuple[str, ...]


@dataclass(frozen=True)
class ModelFacts:
    """What the approval vouched for about the model (from the ApprovalRecorded content)."""

    name: str
    version: str
    risk_tier: str
    owner: str
    intended_use: str
    limitations: tuple[str, ...]
    revision: str
    recorded_at: str


@dataclass(frozen=True)
class SignatureFacts:
    signer: str
    key_fingerprint: str
    verified: bool
    problem: str


@dataclass(frozen=True)
class ApprovalFacts:
    sequence: int
    recorded_at: str
    revision: str
    version: str
    approved_by: str
    approved_at: str
    conditions: str
    risk_acceptance: str
    risk_accepted_by: str
    written_by: str
    asserted_through_git: bool
    approval_signature: SignatureFacts | None
    risk_signature: SignatureFacts | None


@dataclass(frozen=True)
class StagePlan:
    name: str
    weight: int | None
    duration: str
    manual_promotion: bool


@dataclass(frozen=True)
class MetricPlan:
    name: str
    query: str
    min: float | None
    max: float | None
    on_no_data: str
    on_error: str


@dataclass(frozen=True)
class Plan:
    """The rollout plan approved with one revision: stages, thresholds, limits."""

    revision: str
    version: str
    approval_ttl: str
    progress_deadline: str
    interval: str
    failure_limit: Any
    consecutive_failure_limit: Any
    inconclusive_limit: Any
    monitor_for: str
    stages: tuple[StagePlan, ...]
    metrics: tuple[MetricPlan, ...]


@dataclass(frozen=True)
class Point:
    """One measurement. `value` is None when none was read (or it was NaN/Inf)."""

    metric: str
    time: str
    value: float | None
    text: str
    verdict: str
    threshold: str
    track: str
    stage: str
    reason: str


@dataclass(frozen=True)
class Series:
    metric: str
    min: float | None
    max: float | None
    threshold: str
    points: tuple[Point, ...]

    @property
    def failures(self) -> int:
        return sum(p.verdict == "Fail" for p in self.points)

    @property
    def inconclusive(self) -> int:
        return sum(p.verdict == "Inconclusive" for p in self.points)


@dataclass(frozen=True)
class StageRun:
    name: str
    started_at: str
    ended_at: str
    ended_by: str  # the reason of the record that ended it; "" while running


@dataclass(frozen=True)
class Event:
    """A decision of note: a promotion, a rollback and its trigger, a request, drift."""

    sequence: int
    time: str
    reason: str
    from_phase: str
    to_phase: str
    revision: str
    version: str
    stage: str
    message: str
    by: str = ""
    request: str = ""  # promote/abort/retry, for requests
    value: str = ""  # the request's annotation value
    outcome: str = ""
    evidence: tuple[Point, ...] = ()


@dataclass(frozen=True)
class Attempt:
    number: int
    revision: str
    version: str
    started_at: str
    started_by: str  # the reason that started it
    ended_at: str
    outcome: str  # the reason that ended it; "" while it runs
    stages: tuple[StageRun, ...]
    series: tuple[Series, ...]
    promotions: tuple[Event, ...]
    rollbacks: tuple[Event, ...]
    requests: tuple[Event, ...]
    drift: tuple[Event, ...]


@dataclass(frozen=True)
class Verification:
    intact: bool
    problems: tuple[str, ...]
    checked: str  # what the check covered, in words
    records: int
    first_sequence: int
    last_sequence: int


@dataclass(frozen=True)
class CurrentState:
    exists: bool | None  # None: not looked up (a report built offline from an export)
    phase: str = ""
    revision: str = ""
    serving_version: str = ""
    deleted_at: str = ""


@dataclass(frozen=True)
class Report:
    subject: Subject
    generated_at: str
    since: str
    period: tuple[str, str]
    current: CurrentState
    model: ModelFacts | None
    approvals: tuple[ApprovalFacts, ...]
    plans: tuple[Plan, ...]
    attempts: tuple[Attempt, ...]
    requests: tuple[Event, ...]
    drift: tuple[Event, ...]
    verification: Verification
    controls: tuple[ControlRow, ...] = field(default=CONTROLS)


# ---- helpers -----------------------------------------------------------------------------


def parse_time(text: str) -> datetime | None:
    """RFC 3339 (or a date) as an aware UTC datetime; None if unreadable."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _get(data: Any, *path: str, default: Any = "") -> Any:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return default
        data = data[key]
    return data


def _text(value: Any) -> str:
    return "" if value is None else str(value)


# ---- sections ----------------------------------------------------------------------------


def model_facts(record: AIRecordSpec) -> ModelFacts:
    model = _get(record.content, "model", default={})
    limitations = _get(model, "limitations", default=[])
    return ModelFacts(
        name=_text(_get(model, "name")),
        version=_text(_get(model, "version")) or record.version,
        risk_tier=_text(_get(model, "riskTier")),
        owner=_text(_get(model, "owner")),
        intended_use=_text(_get(model, "intendedUse")),
        limitations=tuple(_text(x) for x in limitations) if isinstance(limitations, list) else (),
        revision=record.revision,
        recorded_at=record.time,
    )


def _signature(check: api.SignatureCheck | None) -> SignatureFacts | None:
    if check is None:
        return None
    return SignatureFacts(check.signer, check.key_fingerprint, check.verified, check.problem)


def approval_facts(record: AIRecordSpec) -> ApprovalFacts | None:
    approval = record.approval
    if approval is None:
        return None
    return ApprovalFacts(
        sequence=record.sequence,
        recorded_at=record.time,
        revision=approval.revision or record.revision,
        version=record.version or _text(_get(record.content, "model", "version")),
        approved_by=approval.approved_by,
        approved_at=approval.approved_at,
        conditions=approval.conditions,
        risk_acceptance=approval.risk_acceptance,
        risk_accepted_by=approval.risk_accepted_by,
        written_by=approval.written_by,
        asserted_through_git=approval.asserted_through_git,
        approval_signature=_signature(approval.approval_signature),
        risk_signature=_signature(approval.risk_signature),
    )


def plan_of(record: AIRecordSpec) -> Plan:
    """The plan in an ApprovalRecorded content, read defensively (a field it lacks is
    shown empty rather than failing the report)."""
    rollout = _get(record.content, "rollout", default={})
    analysis = _get(rollout, "analysis", default={})
    stages = _get(rollout, "stages", default=[])
    metrics = _get(analysis, "metrics", default=[])
    return Plan(
        revision=record.revision,
        version=record.version or _text(_get(record.content, "model", "version")),
        approval_ttl=_text(_get(record.content, "governance", "approvalTTL")) or "168h (default)",
        progress_deadline=_text(_get(rollout, "progressDeadline")) or "10m (default)",
        interval=_text(_get(analysis, "interval")) or "30s (default)",
        failure_limit=_get(analysis, "failureLimit", default="2 (default)"),
        consecutive_failure_limit=_get(analysis, "consecutiveFailureLimit", default="none"),
        inconclusive_limit=_get(analysis, "inconclusiveLimit", default="3 (default)"),
        monitor_for=_text(_get(rollout, "postPromotion", "monitorFor")) or "0s (default)",
        stages=tuple(
            StagePlan(
                name=_text(_get(s, "name")),
                weight=_get(s, "weight", default=None),
                duration=_text(_get(s, "duration")) or "0s",
                manual_promotion=bool(_get(s, "manualPromotion", default=False)),
            )
            for s in stages
            if isinstance(s, Mapping)
        ),
        metrics=tuple(_metric_plan(m) for m in metrics if isinstance(m, Mapping)),
    )


def _metric_plan(metric: Mapping[str, Any]) -> MetricPlan:
    query = _text(metric.get("query"))
    if metric.get("preset"):  # the approved content carries what the preset stood for then
        query = f"preset {_text(metric.get('preset'))}: {_text(metric.get('presetQuery'))}"
    return MetricPlan(
        name=_text(metric.get("name")),
        query=query,
        min=_number(_text(metric.get("min"))) if metric.get("min") is not None else None,
        max=_number(_text(metric.get("max"))) if metric.get("max") is not None else None,
        on_no_data=_text(metric.get("onNoData")) or "Inconclusive",
        on_error=_text(metric.get("onError")) or "Inconclusive",
    )


def _point(record: AIRecordSpec, measurement: api.MeasurementRecord) -> Point:
    return Point(
        metric=measurement.metric,
        time=measurement.time,
        value=_number(measurement.value),
        text=measurement.value,
        verdict=measurement.verdict,
        threshold=measurement.threshold,
        track=measurement.track,
        stage=record.stage,
        reason=measurement.reason,
    )


def event_of(record: AIRecordSpec) -> Event:
    request = record.request
    return Event(
        sequence=record.sequence,
        time=record.time,
        reason=record.reason,
        from_phase=record.from_phase,
        to_phase=record.to_phase,
        revision=record.revision,
        version=record.version,
        stage=record.stage,
        message=record.message,
        by=request.by if request else "",
        request=request.kind if request else "",
        value=request.value if request else "",
        outcome=request.outcome if request else "",
        evidence=tuple(_point(record, m) for m in record.evidence if m.verdict != "Pass"),
    )


def is_rollback(record: AIRecordSpec) -> bool:
    return record.to_phase == "RollingBack" or record.reason == "RollbackCompleted"


def is_promotion(record: AIRecordSpec) -> bool:
    return record.reason in PROMOTION_REASONS


def series_of(records: Sequence[AIRecordSpec], plan: Plan | None) -> tuple[Series, ...]:
    """Per metric, every measurement in the records once (a measurement repeated in a
    stage-passed record is the same point), in time order; thresholds from the plan."""
    points: dict[str, dict[tuple[str, str], Point]] = {}
    for record in records:
        for m in record.evidence:
            points.setdefault(m.metric, {}).setdefault((m.track, m.time), _point(record, m))
    by_name = {m.name: m for m in plan.metrics} if plan else {}
    order = [m.name for m in plan.metrics] if plan else []
    order += sorted(set(points) - set(order))
    result = []
    for name in order:
        found = sorted(points.get(name, {}).values(), key=lambda p: (sort_key(p.time), p.track))
        spec = by_name.get(name)
        threshold = next((p.threshold for p in reversed(found) if p.threshold), "")
        low, high = (spec.min, spec.max) if spec else _bounds(threshold)
        result.append(Series(name, low, high, threshold or _describe(low, high), tuple(found)))
    return tuple(result)


def sort_key(text: str) -> float:
    parsed = parse_time(text)
    return parsed.timestamp() if parsed else 0.0


def _bounds(threshold: str) -> tuple[float | None, float | None]:
    """'<= 0.01' / '>= 0.7' / '>= 0.1, <= 0.9' as written by the analysis."""
    low = high = None
    for raw in threshold.split(","):
        part = raw.strip()
        if part.startswith(">="):
            low = _number(part[2:].strip())
        elif part.startswith("<="):
            high = _number(part[2:].strip())
    return low, high


def _describe(low: float | None, high: float | None) -> str:
    parts = ([f">= {low:g}"] if low is not None else []) + (
        [f"<= {high:g}"] if high is not None else []
    )
    return ", ".join(parts)


def stage_runs(records: Sequence[AIRecordSpec]) -> tuple[StageRun, ...]:
    """Stages in the order the records name them; a stage ends where the next begins."""
    runs: list[StageRun] = []
    for record in records:
        if not record.stage:
            continue
        if runs and runs[-1].name == record.stage and not runs[-1].ended_at:
            continue
        if runs and not runs[-1].ended_at:
            runs[-1] = StageRun(runs[-1].name, runs[-1].started_at, record.time, record.reason)
        runs.append(StageRun(record.stage, record.time, "", ""))
    return tuple(runs)


def split_attempts(records: Sequence[AIRecordSpec]) -> list[list[AIRecordSpec]]:
    """Records grouped by rollout attempt: from a start transition to the transition that
    leaves the rollout's phases. Records outside any attempt are left out."""
    attempts: list[list[AIRecordSpec]] = []
    current: list[AIRecordSpec] | None = None
    for record in records:
        if record.reason in START_REASONS:
            current = [record]
            attempts.append(current)
            continue
        if current is None or record.reason == api.ApprovalRecorded:
            continue
        current.append(record)
        leaves = (
            record.from_phase in ACTIVE_PHASES
            and record.to_phase
            and (record.to_phase not in ACTIVE_PHASES)
        )
        if leaves or record.reason == api.DeploymentDeleted:
            current = None
    return attempts


def attempt_of(number: int, records: Sequence[AIRecordSpec], plan: Plan | None) -> Attempt:
    start, last = records[0], records[-1]
    ended = last is not start and (
        last.to_phase not in ACTIVE_PHASES or last.reason == api.DeploymentDeleted
    )
    of = [r for r in records if r.reason != api.ApprovalRecorded]
    stages = stage_runs(of)
    if ended and stages and not stages[-1].ended_at:
        last_stage = stages[-1]
        stages = (
            *stages[:-1],
            StageRun(last_stage.name, last_stage.started_at, last.time, last.reason),
        )
    return Attempt(
        number=number,
        revision=start.revision,
        version=start.version,
        started_at=start.time,
        started_by=start.reason,
        ended_at=last.time if ended else "",
        outcome=last.reason if ended else "",
        stages=stages,
        series=series_of(of, plan),
        promotions=tuple(event_of(r) for r in of if is_promotion(r)),
        rollbacks=tuple(event_of(r) for r in of if is_rollback(r)),
        requests=tuple(event_of(r) for r in of if r.reason == api.RequestHandled),
        drift=tuple(event_of(r) for r in of if r.reason == api.DriftDetected),
    )


def verification_of(check: Any, records: Sequence[AIRecordSpec], checked: str) -> Verification:
    sequences = [r.sequence for r in records]
    return Verification(
        intact=bool(getattr(check, "intact", False)),
        problems=tuple(getattr(check, "problems", ()) or ()),
        checked=checked,
        records=len(records),
        first_sequence=min(sequences, default=0),
        last_sequence=max(sequences, default=0),
    )


def current_state(
    obj: Mapping[str, Any] | None, records: Iterable[AIRecordSpec], looked_up: bool
) -> CurrentState:
    deleted = next((r.time for r in records if r.reason == api.DeploymentDeleted), "")
    if not obj:
        return CurrentState(exists=False if looked_up or deleted else None, deleted_at=deleted)
    status = obj.get("status") or {}
    return CurrentState(
        exists=True,
        phase=_text(status.get("phase")),
        revision=_text(status.get("revision")),
        serving_version=_text(status.get("stableVersion")),
    )
