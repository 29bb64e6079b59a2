"""decide(): what is → what should be. Pure, and safe to call any number of times.

Everything the decision depends on arrives as input (the spec, the annotations, the last
status, the observed children, the time), and everything it wants done leaves as output
(the next status, actions on child objects, Events to post, when to look again). A
restarted operator therefore decides exactly as the old one would have.

This slice covers the governance gate and deploying an authorised revision as the stable
workload. Canary stages and analysis build on the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from aigate.api.durations import parse_duration
from aigate.api.v1alpha1 import (
    AIDeploymentSpec,
    AIDeploymentStatus,
    ApplyError,
    ApprovalRecord,
    HistoryEntry,
)
from aigate.core import conditions as cond
from aigate.core.gate import GateDecision, evaluate_gate
from aigate.core.revision import compute_revision
from aigate.core.workloads import Track

MAX_HISTORY = 100
# History entries that record a fact without being a phase transition.
_RECORD_ONLY_REASONS = frozenset({"Approved"})

# How soon to look again. Changes to the resource itself wake the operator at once; these
# only bound how long a change in the children (pods becoming Ready) can go unnoticed.
REQUEUE_WHILE_CHANGING = 2.0
REQUEUE_AT_REST = 60.0


@dataclass(frozen=True)
class WorkloadState:
    """What the API server says about one of our Deployments."""

    revision: str
    version: str
    replicas: int
    ready_replicas: int
    updated_replicas: int
    total_replicas: int
    observed_current: bool  # status.observedGeneration caught up with metadata.generation

    @property
    def rolled_out(self) -> bool:
        """Every desired pod runs the current template and is Ready, and no old pod is left."""
        return (
            self.observed_current
            and self.updated_replicas == self.replicas
            and self.ready_replicas == self.replicas
            and self.total_replicas == self.replicas
        )


@dataclass(frozen=True)
class Observed:
    stable: WorkloadState | None = None
    canary: WorkloadState | None = None
    service_present: bool = False
    # Children with our deterministic names that another owner holds: never touched.
    conflicts: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApplyDeployment:
    track: Track
    revision: str
    replicas: int


@dataclass(frozen=True)
class ApplyService:
    pass


Action = ApplyDeployment | ApplyService


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Inputs:
    generation: int
    spec: AIDeploymentSpec | None
    spec_error: str  # why the spec could not be read, when spec is None
    annotations: Mapping[str, str]
    status: AIDeploymentStatus
    observed: Observed
    now: datetime


@dataclass(frozen=True)
class Decision:
    status: AIDeploymentStatus
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_after: float = REQUEUE_AT_REST
    gate: GateDecision | None = field(default=None, compare=False)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def decide(inputs: Inputs) -> Decision:
    if inputs.spec is None:
        return _invalid_spec(inputs)
    spec = inputs.spec
    revision = compute_revision(spec)
    gate = evaluate_gate(
        inputs.annotations, revision, parse_duration(spec.governance.approval_ttl), inputs.now
    )
    status = inputs.status.model_copy(deep=True)
    status.observed_generation = inputs.generation
    status.revision = revision
    _observe_stable(status, inputs.observed)

    if inputs.observed.conflicts:
        return _conflict(inputs, status, gate)

    if status.apply_error is not None and status.apply_error.generation == inputs.generation:
        return _apply_failed(inputs, status, gate, status.apply_error.message)
    status.apply_error = None

    recorded = status.approval
    authorised_by_record = recorded is not None and recorded.revision == revision
    if not gate.is_open and not authorised_by_record:
        return _awaiting_approval(inputs, status, gate, revision)
    return _deploy(inputs, spec, status, gate, revision)


def _observe_stable(status: AIDeploymentStatus, observed: Observed) -> None:
    stable = observed.stable
    status.stable_revision = stable.revision if stable else ""
    status.stable_version = stable.version if stable else ""
    status.ready_replicas = stable.ready_replicas if stable else 0


def _invalid_spec(inputs: Inputs) -> Decision:
    status = inputs.status.model_copy(deep=True)
    status.observed_generation = inputs.generation
    now = _iso(inputs.now)
    message = f"spec is invalid: {inputs.spec_error}"
    _set_kstatus(
        status,
        now,
        inputs.generation,
        ready=False,
        reconciling=False,
        stalled=True,
        reason="InvalidSpec",
        message=message,
    )
    events = _transition(status, inputs, "Failed", "InvalidSpec", message, "Warning")
    return Decision(status=status, events=events, requeue_after=REQUEUE_AT_REST)


def _conflict(inputs: Inputs, status: AIDeploymentStatus, gate: GateDecision) -> Decision:
    now = _iso(inputs.now)
    names = ", ".join(inputs.observed.conflicts)
    message = (
        f"{names} already exist(s) and belong(s) to another owner; aigate will not touch "
        f"them: rename this AIDeployment or remove them"
    )
    _set_kstatus(
        status,
        now,
        inputs.generation,
        ready=False,
        reconciling=False,
        stalled=True,
        reason="ChildConflict",
        message=message,
    )
    events = _transition(status, inputs, "Failed", "ChildConflict", message, "Warning")
    return Decision(status=status, events=events, requeue_after=REQUEUE_AT_REST, gate=gate)


def record_apply_failure(inputs: Inputs, status: AIDeploymentStatus, message: str) -> Decision:
    """The API server refused a child built from this spec: stop until the spec changes."""
    status = status.model_copy(deep=True)
    status.apply_error = ApplyError(generation=inputs.generation, message=message)
    return _apply_failed(inputs, status, None, message)


def _apply_failed(
    inputs: Inputs, status: AIDeploymentStatus, gate: GateDecision | None, error: str
) -> Decision:
    now = _iso(inputs.now)
    message = f"the API server refused a workload built from this spec ({error}); fix the spec"
    _set_kstatus(
        status,
        now,
        inputs.generation,
        ready=False,
        reconciling=False,
        stalled=True,
        reason="ApplyFailed",
        message=message,
    )
    events = _transition(status, inputs, "Failed", "ApplyFailed", message, "Warning")
    return Decision(status=status, events=events, requeue_after=REQUEUE_AT_REST, gate=gate)


def _awaiting_approval(
    inputs: Inputs, status: AIDeploymentStatus, gate: GateDecision, revision: str
) -> Decision:
    now = _iso(inputs.now)
    serving = (
        f"; version {status.stable_version} (revision {status.stable_revision}) keeps serving"
        if status.stable_revision
        else "; no workload is created until then"
    )
    message = f"revision {revision} is not approved: {gate.describe()}{serving}"
    status.conditions = cond.set_condition(
        status.conditions,
        cond.AUTHORIZED,
        False,
        "ApprovalRequired",
        gate.describe(),
        now,
        inputs.generation,
    )
    _set_kstatus(
        status,
        now,
        inputs.generation,
        ready=False,
        reconciling=False,
        stalled=True,
        reason="ApprovalRequired",
        message=message,
    )
    status.stage = ""
    status.canary_weight = 0
    events = _transition(status, inputs, "AwaitingApproval", "ApprovalRequired", message, "Warning")
    return Decision(status=status, events=events, requeue_after=REQUEUE_AT_REST, gate=gate)


def _deploy(
    inputs: Inputs,
    spec: AIDeploymentSpec,
    status: AIDeploymentStatus,
    gate: GateDecision,
    revision: str,
) -> Decision:
    now = _iso(inputs.now)
    events: list[Event] = []
    if gate.approval is not None:
        record = ApprovalRecord(
            approved_by=gate.approval.approved_by,
            approved_at=_iso(gate.approval.approved_at),
            revision=revision,
            risk_acceptance=gate.approval.risk_acceptance,
            risk_accepted_by=gate.approval.risk_accepted_by,
            conditions=gate.approval.conditions,
            recorded_at=now,
        )
        if not _same_approval(status.approval, record):
            status.approval = record
            message = _approval_text(record)
            status.history = _append_history(
                status,
                inputs,
                status.phase,
                status.phase,
                revision,
                spec.model.version,
                "Approved",
                message,
            )
            events.append(Event("Normal", "Approved", message))
    assert status.approval is not None
    status.conditions = cond.set_condition(
        status.conditions,
        cond.AUTHORIZED,
        True,
        "Approved" if gate.is_open else "ApprovalRecorded",
        _approval_text(status.approval),
        now,
        inputs.generation,
    )

    actions: tuple[Action, ...] = (
        ApplyService(),
        ApplyDeployment("stable", revision, spec.replicas),
    )
    stable = inputs.observed.stable
    if (
        stable is not None
        and stable.revision == revision
        and stable.replicas == spec.replicas
        and stable.rolled_out
    ):
        message = (
            f"version {spec.model.version} (revision {revision}) serving with "
            f"{stable.ready_replicas}/{spec.replicas} replicas Ready"
        )
        _set_kstatus(
            status,
            now,
            inputs.generation,
            ready=True,
            reconciling=False,
            stalled=False,
            reason="Available",
            message=message,
        )
        events.extend(_transition(status, inputs, "Stable", "Available", message, "Normal"))
        return Decision(
            status=status,
            actions=actions,
            events=tuple(events),
            requeue_after=REQUEUE_AT_REST,
            gate=gate,
        )

    ready = stable.ready_replicas if stable is not None and stable.revision == revision else 0
    message = (
        f"deploying version {spec.model.version} (revision {revision}): "
        f"{ready}/{spec.replicas} replicas Ready"
    )
    _set_kstatus(
        status,
        now,
        inputs.generation,
        ready=False,
        reconciling=True,
        stalled=False,
        reason="Deploying",
        message=message,
    )
    events.extend(
        _transition(
            status,
            inputs,
            "Progressing",
            "Deploying",
            f"deploying version {spec.model.version} (revision {revision})",
            "Normal",
        )
    )
    return Decision(
        status=status,
        actions=actions,
        events=tuple(events),
        requeue_after=REQUEUE_WHILE_CHANGING,
        gate=gate,
    )


def _same_approval(old: ApprovalRecord | None, new: ApprovalRecord) -> bool:
    if old is None:
        return False
    return old.model_dump(exclude={"recorded_at"}) == new.model_dump(exclude={"recorded_at"})


def _approval_text(record: ApprovalRecord) -> str:
    text = (
        f"revision {record.revision} approved by {record.approved_by} at {record.approved_at}; "
        f"risk acceptance {record.risk_acceptance} by {record.risk_accepted_by}"
    )
    return text + (f"; conditions: {record.conditions}" if record.conditions else "")


def _set_kstatus(
    status: AIDeploymentStatus,
    now: str,
    generation: int,
    *,
    ready: bool,
    reconciling: bool,
    stalled: bool,
    reason: str,
    message: str,
) -> None:
    """Ready / Reconciling / Stalled, as kstatus-aware tools (Argo CD, Flux) read them."""
    c = status.conditions
    c = cond.set_condition(c, cond.READY, ready, reason, message, now, generation)
    c = cond.set_condition(
        c,
        cond.RECONCILING,
        reconciling,
        reason if reconciling else "",
        message if reconciling else "",
        now,
        generation,
    )
    c = cond.set_condition(
        c,
        cond.STALLED,
        stalled,
        reason if stalled else "",
        message if stalled else "",
        now,
        generation,
    )
    status.conditions = c


def _transition(
    status: AIDeploymentStatus,
    inputs: Inputs,
    to_phase: str,
    reason: str,
    message: str,
    event_type: Literal["Normal", "Warning"],
) -> tuple[Event, ...]:
    """Moves to `to_phase`. A change of phase, or of the reason's message while in the same
    phase (e.g. a different annotation is now wrong), is recorded once in the history and
    announced once as an Event; repeating the same decision records nothing new."""
    previous = inputs.status
    last = next(
        (e for e in reversed(previous.history) if e.reason not in _RECORD_ONLY_REASONS), None
    )
    unchanged = (
        previous.phase == to_phase
        and last is not None
        and last.to_phase == to_phase
        and last.reason == reason
        and last.message == message
    )
    status.phase = to_phase  # type: ignore[assignment]
    if unchanged:
        return ()
    version = inputs.spec.model.version if inputs.spec else ""
    status.history = _append_history(
        status, inputs, previous.phase, to_phase, status.revision, version, reason, message
    )
    return (Event(event_type, reason, message),)


def _append_history(
    status: AIDeploymentStatus,
    inputs: Inputs,
    from_phase: str,
    to_phase: str,
    revision: str,
    version: str,
    reason: str,
    message: str,
) -> list[HistoryEntry]:
    entry = HistoryEntry(
        time=_iso(inputs.now),
        from_phase=from_phase,
        to_phase=to_phase,
        revision=revision,
        version=version,
        reason=reason,
        message=message,
    )
    return [*status.history, entry][-MAX_HISTORY:]
