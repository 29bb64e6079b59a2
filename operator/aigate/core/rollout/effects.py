"""What several phases do: keep the serving version in place, start and end a rollout,
start a rollback, count measurements. Each helper changes the draft only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from aigate.api.v1alpha1 import (
    AnalysisSpec,
    AnalysisState,
    ApplyError,
    MeasurementRecord,
    RevisionSnapshot,
    RollbackState,
    RollbackTrigger,
    RolloutState,
)
from aigate.core import analysis as an
from aigate.core import traffic
from aigate.core.children import CHILDREN, record_of
from aigate.core.gate import format_rfc3339, parse_rfc3339
from aigate.core.requests import Request
from aigate.core.rollout.draft import Draft
from aigate.core.rollout.model import (
    MAX_BACKOFF,
    REQUEUE_NOW,
    REQUEUE_WHILE_CHANGING,
    ApplyDeployment,
    ApplyService,
    DeleteDeployment,
    action_track,
)
from aigate.core.rollout.snapshots import service_of, template_of
from aigate.core.workloads import child_object

MAX_ROLLED_BACK = 64


def back_off(d: Draft, error: ApplyError) -> None:
    """After `attempts` refused applies, the refused apply waits 5s·2^attempts (at most
    MAX_BACKOFF) from the last refusal before it is tried again: retried, never in a tight
    loop (the operator's own status write wakes it at once). Replaces any sooner requeue."""
    delay = min(MAX_BACKOFF, 5.0 * 2 ** min(error.attempts, 6))
    last = parse_time(error.last_at)
    # A clock that stepped back never stretches the wait beyond one backoff.
    elapsed = 0.0 if last is None else max(0.0, (d.now - last).total_seconds())
    remaining = delay - elapsed
    if remaining > 0:
        d.actions = [a for a in d.actions if action_track(a) != error.track]
    d.requeue = max(REQUEUE_NOW, min(delay, remaining if remaining > 0 else REQUEUE_NOW))


def canary_replicas(replicas: int, weight: int) -> int:
    """Canary replicas for a stage: weight percent of spec.replicas, rounded up, at least 1.

    The stable Deployment keeps all spec.replicas until promotion, so the canary's share of
    traffic through the Service is canary / (canary + replicas): 1 of 5 pods (20 %) for a
    10 % stage with 4 replicas. Rollback is then instant: nothing needs to scale up. (With
    the Gateway API router the share is the weight, and the size may be a fixed budget:
    traffic.canary_size.)"""
    return traffic.canary_size(None, replicas, weight)


def requeue_while_waiting(d: Draft, until_deadline: timedelta) -> None:
    """Waiting for pods: their watch events wake the resource; the requeue is only a safety
    net, and the deadline is checked the moment it passes."""
    d.requeue_within(REQUEUE_WHILE_CHANGING)
    if until_deadline.total_seconds() > 0:
        d.requeue_within(until_deadline.total_seconds() + 0.1)


def parse_time(text: str):
    return parse_rfc3339(text) if text else None


# ---- children ------------------------------------------------------------------------------


def put_stable(d: Draft, snapshot: RevisionSnapshot) -> None:
    """Asks for `snapshot` on the stable track at spec.replicas, unless it is there as
    aigate wrote it."""
    stable = d.sit.stable
    drifted = d.inputs.observed.drift_of("stable") is not None
    if stable is not None and stable.terminating and not drifted:
        d.requeue_within(REQUEUE_WHILE_CHANGING)  # recreated once it is gone
        return
    if (
        stable is None
        or stable.revision != snapshot.revision
        or stable.replicas != d.replicas
        or drifted
    ):
        d.actions.append(
            ApplyDeployment(
                "stable", snapshot.revision, snapshot.version, d.replicas, template_of(snapshot)
            )
        )


def note_drift(d: Draft) -> None:
    """Records each drifted child once per drifted content (DriftDetected, a Warning):
    the phases re-apply it whole. A child re-applied only because aigate's record of its
    last write was lost is not drift, and is not reported."""
    records = d.status.children
    if records is None:
        return
    for child in CHILDREN:
        record = record_of(records, child)
        drift = d.inputs.observed.drift_of(child)
        if record is None:
            continue
        if drift is None or not drift.recorded:
            record.drift_noted = ""
            continue
        if record.drift_noted == drift.digest:
            continue
        record.drift_noted = drift.digest
        kind, name = child_object(d.inputs.name, child)
        d.note(
            "DriftDetected",
            f"{kind} {name} was changed outside aigate ({drift.what}); reverting it to what "
            f"aigate wrote",
            "Warning",
        )


def put_service(d: Draft, snapshot: RevisionSnapshot) -> None:
    """The Service carries the settings of `snapshot`, the revision that owns the traffic;
    written only when it has other settings, is missing or drifted."""
    port, target_port = service_of(snapshot)
    observed = d.inputs.observed
    if not port:
        return
    if observed.service_ports != (port, target_port) or observed.drift_of("service"):
        d.actions.append(ApplyService(snapshot.revision, port, target_port))


def keep_serving(d: Draft) -> bool:
    """Keeps the recorded serving version on stable (recreating it if it is gone). True when
    it serves at full strength."""
    serving = d.status.serving
    if serving is None:
        return False
    note_recreated_stable(d, serving)
    put_stable(d, serving)
    put_service(d, serving)
    stable = d.sit.stable
    return stable is not None and stable.serves(serving.revision, d.replicas)


def note_recreated_stable(d: Draft, snapshot: RevisionSnapshot) -> None:
    """A vanished stable Deployment, on which `snapshot` (the version that served) is being
    recreated from its recorded template, is recorded once (StableRecreated)."""
    if d.sit.stable is not None:
        d.status.recreating_stable = ""
        return
    if d.status.recreating_stable == snapshot.revision:
        return
    d.status.recreating_stable = snapshot.revision
    d.note(
        "StableRecreated",
        f"Deployment {d.inputs.name}-stable is gone: recreating version {snapshot.version} "
        f"(revision {snapshot.revision}) from its recorded template",
        "Warning",
        subject=(snapshot.revision, snapshot.version),
    )


def keep_canary_as_written(d: Draft, candidate: RevisionSnapshot) -> None:
    """While stable rolls to the candidate, the canary keeps serving its share: if someone
    changed it, it is written back with the candidate's content at its size."""
    canary = d.sit.canary
    if canary is None or canary.terminating or d.inputs.observed.drift_of("canary") is None:
        return
    rollout = d.status.rollout
    replicas = max(1, rollout.canary_replicas if rollout else canary.replicas)
    d.actions.append(
        ApplyDeployment(
            "canary", candidate.revision, candidate.version, replicas, template_of(candidate)
        )
    )


def remove_canary(d: Draft) -> None:
    if d.sit.canary is not None and not d.sit.canary.terminating:
        d.actions.append(DeleteDeployment("canary"))


# ---- rollouts ------------------------------------------------------------------------------


def begin_rollout(d: Draft, candidate: RevisionSnapshot) -> None:
    s = d.status
    s.attempts += 1
    s.rollout = RolloutState(
        attempt=s.attempts, candidate=candidate, started_at=d.now_iso, waiting_since=d.now_iso
    )
    enter_stage(d, 0)


def enter_stage(d: Draft, index: int) -> None:
    rollout = d.status.rollout
    assert rollout is not None
    rollout.stage_index = index
    stages = (rollout.candidate.content.get("rollout") or {}).get("stages") or []
    stage = stages[index] if index < len(stages) else {}
    rollout.stage, rollout.weight = str(stage.get("name", "")), int(stage.get("weight", 0))
    rollout.canary_replicas = 0  # asked anew: the progress deadline restarts
    rollout.ready_since = ""
    rollout.elapsed_seconds = 0
    rollout.analysis = AnalysisState(
        track="canary",
        revision=rollout.candidate.revision,
        stage_index=index,
        started_at=d.now_iso,
    )


def end_rollout(d: Draft, why: str) -> None:
    """The rollout in flight is over: a promote request made for it expires, recorded."""
    rollout = d.status.rollout
    if rollout is None:
        return
    promote = d.pending("promote")
    if (
        promote is not None
        and promote.names_revision(rollout.candidate.revision)
        and promote.digest not in d.status.handled_requests
    ):
        d.handle(
            promote,
            f"expired: the rollout of revision {rollout.candidate.revision} ended ({why}) "
            f"before the request was used",
        )
    d.status.rollout = None


def answer_promote_without_rollout(d: Draft) -> None:
    """With no rollout in flight, a promote waits only if it names the revision the spec
    asks for (that revision's rollout will use it); any other is answered now, so it never
    counts for a rollout that starts later."""
    promote = d.pending("promote")
    if promote is None or (promote.revision and promote.names_revision(d.sit.revision)):
        return
    d.handle(promote, "ignored: no rollout is waiting for promotion")


# ---- rollbacks -----------------------------------------------------------------------------


def begin_rollback(
    d: Draft,
    reason: str,
    message: str,
    *,
    bad: RevisionSnapshot,
    target: RevisionSnapshot,
    trigger: RollbackTrigger,
    evidence: Sequence[MeasurementRecord] = (),
) -> None:
    s = d.status
    end_rollout(d, reason)
    s.watch = None
    s.rollback = RollbackState(
        reason=reason,
        message=message,
        revision=bad.revision,
        version=bad.version,
        target=target,
        trigger=trigger,
        started_at=d.now_iso,
    )
    d.goto(
        "RollingBack",
        reason,
        f"rolling back version {bad.version} (revision {bad.revision}) to version "
        f"{target.version} (revision {target.revision}): {message}",
        "Warning",
        evidence,
        subject=(bad.revision, bad.version),
    )


def abort_to(
    d: Draft,
    abort: Request,
    *,
    bad: RevisionSnapshot,
    target: RevisionSnapshot,
    what: str,
    during: str = "",
) -> bool:
    """Acts on an abort request: rolls `bad` back to `target`, unless the request names
    another revision (then it is recorded as ignored). True when a rollback started."""
    if not abort.names_revision(bad.revision):
        d.handle(abort, f"ignored: it names another revision than {bad.revision}")
        return False
    d.handle(abort, f"rolling back {what}")
    who = f" by {abort.by}" if abort.by else ""
    begin_rollback(
        d,
        "AbortRequested",
        f"abort requested ({abort.value!r}{who}){during}",
        bad=bad,
        target=target,
        trigger=RollbackTrigger(
            kind="Request", detail=f"aigate.dev/abort={abort.value!r}{who}", request=abort.value
        ),
    )
    return True


def metric_trigger(detail: str, evidence: MeasurementRecord | None) -> RollbackTrigger:
    if evidence is None:
        return RollbackTrigger(kind="Metric", detail=detail)
    return RollbackTrigger(
        kind="Metric",
        detail=detail,
        metric=evidence.metric,
        value=evidence.value,
        threshold=evidence.threshold,
        baseline_value=evidence.baseline_value,
    )


def remember_rolled_back(d: Draft, revision: str) -> None:
    kept = [r for r in d.status.rolled_back_revisions if r != revision]
    d.status.rolled_back_revisions = [*kept, revision][-MAX_ROLLED_BACK:]


# ---- measurements --------------------------------------------------------------------------


def count_measurements(d: Draft, state: AnalysisState, analysis: AnalysisSpec) -> AnalysisState:
    """`state` with the measurements taken for it this round counted (never twice)."""
    measurements = d.inputs.measurements
    if measurements is None or not measurements.belongs_to(state):
        return state
    at_iso = format_rfc3339(measurements.at)
    if state.last_measured_at and at_iso <= state.last_measured_at:
        return state  # already counted (a retried reconcile)
    state, new = an.record_measurements(state, analysis, measurements, at_iso)
    d.measured(new)
    return state


def requeue_for_next_measurement(d: Draft, state: AnalysisState, analysis: AnalysisSpec) -> None:
    due = an.due_time(state, analysis)
    if due is None:
        d.requeue_within(REQUEUE_NOW)
        return
    d.requeue_within(max(REQUEUE_NOW, (due - d.now).total_seconds()))


def metrics_summary(state: AnalysisState) -> str:
    parts = [
        f"{name} {c.last.verdict} ({c.last.value or '-'}, {c.last.threshold})"
        for name, c in state.metrics.items()
        if c.last is not None
    ]
    return "metrics: " + ", ".join(parts) if parts else "no measurement yet"


def inconclusive_for(d: Draft, state: AnalysisState) -> timedelta:
    """How long the analysis has been unable to conclude, starting the clock if needed."""
    if not state.inconclusive_since:
        state.inconclusive_since = d.now_iso
    since = parse_time(state.inconclusive_since) or d.now
    return d.now - since
