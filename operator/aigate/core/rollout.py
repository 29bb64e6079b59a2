"""decide(): what is → what should be. Pure, and safe to call any number of times.

Everything a decision depends on arrives as input (the spec, the annotations, the last
status, the observed children, the latest measurements, the time) and everything it wants
done leaves as output (the next status, actions on child objects, Events, when to look
again). All rollout state lives in status, so a restarted operator decides exactly as the
old one would have.

The flow of one revision R with spec.replicas N:

    AwaitingApproval ──approval──▶ (no stable yet) Progressing ─▶ Stable (+ post-promotion watch)
                                   (stable runs S) Progressing stage 1..n ─▶ Promoting ─▶ Stable
    stage: canary at ceil(N·weight/100) replicas beside stable at N; analysis every interval;
           passes after `duration` with every metric's latest verdict Pass (and a promote
           request where the stage asks for one); Paused while inconclusive past the limit.
    breach / progress deadline / abort ─▶ RollingBack ─▶ RolledBack (stable at N, canary gone)
    breach during the post-promotion watch ─▶ RollingBack to the previous stable ─▶ RolledBack
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from aigate.api.durations import format_duration, parse_duration
from aigate.api.v1alpha1 import (
    AIDeploymentSpec,
    AIDeploymentStatus,
    AnalysisState,
    ApplyError,
    ApprovalRecord,
    HistoryEntry,
    MeasurementRecord,
    RollbackState,
    StableSnapshot,
)
from aigate.core import analysis as an
from aigate.core import conditions as cond
from aigate.core import records
from aigate.core.gate import (
    APPROVED_BY,
    GateDecision,
    evaluate_gate,
    format_rfc3339,
    parse_rfc3339,
)
from aigate.core.requests import Kind, Request, handled, pending_requests, writer_of
from aigate.core.revision import compute_revision
from aigate.core.workloads import Track

MAX_HISTORY = 100
MAX_RECENT_MEASUREMENTS = 30
# History entries that record a fact without being a phase transition.
_RECORD_ONLY_REASONS = frozenset({"Approved", "RequestHandled", "BakeCompleted", "StagePassed"})

# How soon to look again. Changes to the resource itself or its Deployments wake the
# operator at once; these only bound how long anything else can go unnoticed.
REQUEUE_WHILE_CHANGING = 2.0
REQUEUE_AT_REST = 60.0
REQUEUE_NOW = 0.1


# ---- inputs and outputs ------------------------------------------------------------------


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
    template: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

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
    # Children with our deterministic names that another owner holds: never touched.
    conflicts: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApplyDeployment:
    """Server-side apply of a track's Deployment with this template and replica count."""

    track: Track
    revision: str
    version: str
    replicas: int
    template: dict[str, Any] = field(compare=False, hash=False, repr=False, default_factory=dict)


@dataclass(frozen=True)
class ScaleDeployment:
    track: Track
    replicas: int


@dataclass(frozen=True)
class DeleteDeployment:
    track: Track


@dataclass(frozen=True)
class ApplyService:
    pass


Action = ApplyDeployment | ScaleDeployment | DeleteDeployment | ApplyService


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
    name: str = ""
    namespace: str = ""
    measurements: an.Measurements | None = None
    managed_fields: Sequence[Mapping[str, Any]] = ()
    # Field managers of GitOps controllers: approvals they write are "asserted through Git".
    gitops_managers: frozenset[str] = frozenset({"argocd-controller", "kustomize-controller"})


@dataclass(frozen=True)
class Decision:
    status: AIDeploymentStatus
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_after: float = REQUEUE_AT_REST
    new_measurements: tuple[MeasurementRecord, ...] = ()
    new_history: tuple[HistoryEntry, ...] = ()


def canary_replicas(replicas: int, weight: int) -> int:
    """Canary replicas for a stage: weight percent of spec.replicas, rounded up, at least 1.

    The stable Deployment keeps all spec.replicas until promotion, so the canary's share of
    traffic through the Service is canary / (canary + replicas): 1 of 5 pods (20 %) for a
    10 % stage with 4 replicas. Rollback is then instant: nothing needs to scale up."""
    return max(1, min(replicas, math.ceil(replicas * weight / 100)))


def _parse(text: str) -> datetime | None:
    return parse_rfc3339(text) if text else None


# ---- the draft of the next status --------------------------------------------------------


class _Draft:
    """The decision being built: next status, actions, Events, requeue."""

    def __init__(self, inputs: Inputs, spec: AIDeploymentSpec | None, revision: str) -> None:
        self.inputs = inputs
        self.spec = spec
        self.revision = revision
        self.now = inputs.now
        self.now_iso = format_rfc3339(inputs.now)
        self.status = inputs.status.model_copy(deep=True)
        self.status.observed_generation = inputs.generation
        self.actions: list[Action] = []
        self.events: list[Event] = []
        self.requeue = REQUEUE_AT_REST
        self.gate: GateDecision | None = None
        self.new_measurements: list[MeasurementRecord] = []
        self.new_history: list[HistoryEntry] = []

    @property
    def version(self) -> str:
        return self.spec.model.version if self.spec else ""

    def requeue_within(self, seconds: float) -> None:
        self.requeue = max(REQUEUE_NOW, min(self.requeue, seconds))

    def kstatus(
        self, *, ready: bool, reconciling: bool, stalled: bool, reason: str, message: str
    ) -> None:
        """Ready / Reconciling / Stalled, as kstatus-aware tools (Argo CD, Flux) read them."""
        g, now = self.inputs.generation, self.now_iso
        c = self.status.conditions
        c = cond.set_condition(c, cond.READY, ready, reason, message, now, g)
        c = cond.set_condition(
            c,
            cond.RECONCILING,
            reconciling,
            reason if reconciling else "",
            message if reconciling else "",
            now,
            g,
        )
        c = cond.set_condition(
            c, cond.STALLED, stalled, reason if stalled else "", message if stalled else "", now, g
        )
        self.status.conditions = c

    def progressing(self, reason: str, message: str) -> None:
        """Working towards the spec (kstatus Reconciling)."""
        self.kstatus(ready=False, reconciling=True, stalled=False, reason=reason, message=message)

    def stalled(self, reason: str, message: str) -> None:
        """Cannot reach the spec without a change or a person (kstatus Stalled)."""
        self.kstatus(ready=False, reconciling=False, stalled=True, reason=reason, message=message)

    def available(self, reason: str, message: str) -> None:
        """The spec's revision serves at full strength (kstatus Ready)."""
        self.kstatus(ready=True, reconciling=False, stalled=False, reason=reason, message=message)

    def transition(
        self,
        to_phase: str,
        reason: str,
        message: str,
        event_type: Literal["Normal", "Warning"] = "Normal",
        evidence: Sequence[MeasurementRecord] = (),
    ) -> None:
        """Moves to `to_phase`. A change of phase, reason or message is recorded once in the
        history and announced once as an Event; repeating a decision records nothing."""
        last = self.last_transition()
        unchanged = (
            self.status.phase == to_phase
            and last is not None
            and (last.to_phase, last.reason, last.message) == (to_phase, reason, message)
        )
        from_phase = self.status.phase
        self.status.phase = to_phase  # type: ignore[assignment]
        if not unchanged:
            self._history(from_phase, to_phase, reason, message, evidence)
            self.events.append(Event(event_type, reason, message))

    def last_transition(self) -> HistoryEntry | None:
        """The latest history entry that moved the phase (not a recorded fact)."""
        return next(
            (e for e in reversed(self.status.history) if e.reason not in _RECORD_ONLY_REASONS),
            None,
        )

    def note(
        self,
        reason: str,
        message: str,
        event_type: Literal["Normal", "Warning"] = "Normal",
        evidence: Sequence[MeasurementRecord] = (),
    ) -> None:
        """Records a fact (no phase change) in the history and as an Event."""
        self._history(self.status.phase, self.status.phase, reason, message, evidence)
        self.events.append(Event(event_type, reason, message))

    def _history(
        self,
        from_phase: str,
        to_phase: str,
        reason: str,
        message: str,
        evidence: Sequence[MeasurementRecord],
    ) -> None:
        entry = HistoryEntry(
            time=self.now_iso,
            from_phase=from_phase,
            to_phase=to_phase,
            revision=self.revision,
            version=self.version,
            stage=self.status.stage,
            reason=reason,
            message=message,
            evidence=list(evidence),
        )
        entry = records.seal(entry, self.status.history)
        self.new_history.append(entry)
        self.status.history = [*self.status.history, entry][-MAX_HISTORY:]

    def handle(self, request: Request, outcome: str) -> None:
        setattr(self.status.requests, request.kind, handled(request, self.now_iso, outcome))
        by = f" (written by {request.by})" if request.by else ""
        self.note("RequestHandled", f"aigate.dev/{request.kind}={request.value!r}{by}: {outcome}")

    def decision(self) -> Decision:
        return Decision(
            status=self.status,
            actions=tuple(self.actions),
            events=tuple(self.events),
            requeue_after=self.requeue,
            new_measurements=tuple(self.new_measurements),
            new_history=tuple(self.new_history),
        )


# ---- decide ------------------------------------------------------------------------------


def decide(inputs: Inputs) -> Decision:
    if inputs.spec is None:
        return _invalid_spec(inputs)
    spec = inputs.spec
    revision = compute_revision(spec)
    d = _Draft(inputs, spec, revision)
    d.status.revision = revision
    _observe(d)
    d.gate = gate = evaluate_gate(
        inputs.annotations, revision, parse_duration(spec.governance.approval_ttl), inputs.now
    )

    if inputs.observed.conflicts:
        names = ", ".join(inputs.observed.conflicts)
        message = (
            f"{names} already exist(s) and belong(s) to another owner; aigate will not "
            f"touch them: rename this AIDeployment or remove them"
        )
        return _fail(d, "ChildConflict", message)
    error = d.status.apply_error
    if error is not None and error.generation == inputs.generation:
        return _fail(d, "ApplyFailed", _apply_failed_text(error.message))
    d.status.apply_error = None

    if gate.is_open:
        _record_approval(d, gate)
    recorded = d.status.approval
    authorised = gate.is_open or (recorded is not None and recorded.revision == revision)
    if gate.is_open:
        reason = "Approved"
    elif authorised:
        reason = "ApprovalRecorded"
    else:
        reason = "ApprovalRequired"
    d.status.conditions = cond.set_condition(
        d.status.conditions,
        cond.AUTHORIZED,
        authorised,
        reason,
        _approval_text(recorded) if authorised and recorded else gate.describe(),
        d.now_iso,
        inputs.generation,
    )

    requests = pending_requests(inputs.annotations, d.status.requests, inputs.managed_fields)

    if d.status.rollback is not None:
        # A rollback in progress always completes: it is restoring the known-good state.
        _continue_rollback(d)
        return d.decision()
    if not authorised:
        _not_authorised(d, requests)
        return d.decision()
    if "retry" in requests:
        _retry(d, requests["retry"])
    if "abort" in requests and _abort(d, requests["abort"]):
        return d.decision()
    if revision == d.status.rolled_back_revision:
        _rolled_back(d)
        return d.decision()

    stable = inputs.observed.stable
    if stable is None:
        _first_version(d)
    elif stable.revision == revision:
        _serving(d, stable)
    else:
        _canary(d, stable, requests)
    return d.decision()


def record_apply_failure(inputs: Inputs, status: AIDeploymentStatus, message: str) -> Decision:
    """The API server refused a child built from this spec: stop until the spec changes."""
    d = _Draft(inputs, inputs.spec, status.revision)
    d.status = status.model_copy(deep=True)
    d.status.apply_error = ApplyError(generation=inputs.generation, message=message)
    return _fail(d, "ApplyFailed", _apply_failed_text(message))


def _apply_failed_text(error: str) -> str:
    return f"the API server refused a workload built from this spec ({error}); fix the spec"


def _observe(d: _Draft) -> None:
    observed = d.inputs.observed
    stable, canary = observed.stable, observed.canary
    d.status.stable_revision = stable.revision if stable else ""
    d.status.stable_version = stable.version if stable else ""
    d.status.ready_replicas = stable.ready_replicas if stable else 0
    d.status.canary_ready_replicas = canary.ready_replicas if canary else 0


def _invalid_spec(inputs: Inputs) -> Decision:
    d = _Draft(inputs, None, inputs.status.revision)
    return _fail(d, "InvalidSpec", f"spec is invalid: {inputs.spec_error}")


def _fail(d: _Draft, reason: str, message: str) -> Decision:
    d.stalled(reason, message)
    d.transition("Failed", reason, message, "Warning")
    return d.decision()


def _record_approval(d: _Draft, gate: GateDecision) -> None:
    approval = gate.approval
    assert approval is not None
    record = ApprovalRecord(
        approved_by=approval.approved_by,
        approved_at=format_rfc3339(approval.approved_at),
        revision=d.revision,
        risk_acceptance=approval.risk_acceptance,
        risk_accepted_by=approval.risk_accepted_by,
        conditions=approval.conditions,
        recorded_at=d.now_iso,
        written_by=writer_of(APPROVED_BY, d.inputs.managed_fields),
    )
    record.asserted_through_git = record.written_by in d.inputs.gitops_managers
    old = d.status.approval
    if old is not None and old.model_dump(exclude={"recorded_at"}) == record.model_dump(
        exclude={"recorded_at"}
    ):
        return
    d.status.approval = record
    d.note("Approved", _approval_text(record))


def _approval_text(record: ApprovalRecord) -> str:
    text = (
        f"revision {record.revision} approved by {record.approved_by} at {record.approved_at}; "
        f"risk acceptance {record.risk_acceptance} by {record.risk_accepted_by}"
    )
    if record.asserted_through_git:
        text += f" (asserted through Git by {record.written_by})"
    return text + (f"; conditions: {record.conditions}" if record.conditions else "")


def _serving_text(d: _Draft) -> str:
    s = d.status
    if not s.stable_revision:
        return "no workload is created until then"
    return f"version {s.stable_version} (revision {s.stable_revision}) keeps serving"


def _clear_canary(d: _Draft) -> None:
    s = d.status
    s.canary_revision = ""
    s.canary_version = ""
    s.stage = ""
    s.stage_index = 0
    s.canary_weight = 0
    s.stage_started_at = ""
    s.stage_ready_at = ""
    if s.analysis is not None and s.analysis.track == "canary":
        s.analysis = None


def _remove_canary(d: _Draft) -> None:
    if d.inputs.observed.canary is not None:
        d.actions.append(DeleteDeployment("canary"))


def _ensure_stable_replicas(d: _Draft, stable: WorkloadState) -> None:
    assert d.spec is not None
    if stable.replicas != d.spec.replicas:
        d.actions.append(ScaleDeployment("stable", d.spec.replicas))


# ---- not authorised ----------------------------------------------------------------------


def _not_authorised(d: _Draft, requests: dict[Kind, Request]) -> None:
    gate = d.gate
    assert gate is not None
    for request in requests.values():
        if request.kind != "promote":  # a promote may wait for the stage it names
            d.handle(request, "ignored: the current revision is not approved")
    if d.status.canary_revision:
        # The canary's revision is no longer what the spec asks for: cancel it, keep stable.
        d.note(
            "CanaryCancelled",
            f"canary of revision {d.status.canary_revision} cancelled: the spec now asks for "
            f"revision {d.revision}, which is not approved",
        )
        _clear_canary(d)
    _remove_canary(d)
    stable = d.inputs.observed.stable
    if stable is not None and d.inputs.observed.canary is not None:
        _ensure_stable_replicas(d, stable)
    message = f"revision {d.revision} is not approved: {gate.describe()}; {_serving_text(d)}"
    d.stalled("ApprovalRequired", message)
    d.transition("AwaitingApproval", "ApprovalRequired", message, "Warning")


# ---- requests ----------------------------------------------------------------------------


def _retry(d: _Draft, request: Request) -> None:
    if d.status.rolled_back_revision == d.revision:
        d.status.rolled_back_revision = ""
        d.handle(request, f"retrying revision {d.revision}")
    else:
        d.handle(request, "ignored: the current revision was not rolled back")


def _abort(d: _Draft, request: Request) -> bool:
    """Starts a rollback if there is something to abort. True when it did."""
    s = d.status
    who = f" by {request.by}" if request.by else ""
    message = f"abort requested ({request.value!r}{who})"
    if s.phase == "Promoting" and s.previous_stable is not None:
        d.handle(request, "rolling back the promotion")
        _start_rollback(d, "AbortRequested", message, to_previous=True)
        return True
    if s.canary_revision == d.revision and s.phase in ("Progressing", "Paused"):
        d.handle(request, "rolling back the canary")
        _start_rollback(d, "AbortRequested", message, to_previous=False)
        return True
    if _bake_active(d) and s.previous_stable is not None:
        d.handle(request, "rolling back to the previous stable version")
        _start_rollback(d, "AbortRequested", message, to_previous=True)
        return True
    d.handle(request, "ignored: no rollout in progress")
    return False


# ---- rollback ----------------------------------------------------------------------------


def _start_rollback(
    d: _Draft,
    reason: str,
    message: str,
    *,
    to_previous: bool,
    evidence: Sequence[MeasurementRecord] = (),
) -> None:
    s = d.status
    stable = d.inputs.observed.stable
    if to_previous and s.previous_stable is not None:
        target = s.previous_stable.revision
        bad = d.revision
    else:
        target = stable.revision if stable else ""
        bad = s.canary_revision or d.revision
    s.rollback = RollbackState(
        reason=reason, message=message, revision=bad, to_revision=target, started_at=d.now_iso
    )
    d.progressing(reason, message)
    d.transition(
        "RollingBack",
        reason,
        f"rolling back revision {bad} to {target}: {message}",
        "Warning",
        evidence,
    )
    _continue_rollback(d)


def _continue_rollback(d: _Draft) -> None:
    assert d.spec is not None
    s = d.status
    rollback = s.rollback
    assert rollback is not None
    replicas = d.spec.replicas
    stable = d.inputs.observed.stable
    previous = s.previous_stable
    restoring_previous = previous is not None and previous.revision == rollback.to_revision
    if restoring_previous and (stable is None or stable.revision != rollback.to_revision):
        assert previous is not None
        d.actions.append(
            ApplyDeployment(
                "stable", previous.revision, previous.version, replicas, previous.template
            )
        )
    elif stable is not None:
        _ensure_stable_replicas(d, stable)
    _remove_canary(d)

    restored = (
        d.inputs.observed.canary is None
        and stable is not None
        and stable.revision == rollback.to_revision
        and stable.replicas == replicas
        and stable.rolled_out
    )
    if not restored and (stable is not None or previous is not None):
        ready = stable.ready_replicas if stable and stable.revision == rollback.to_revision else 0
        detail = (
            f"{rollback.message}; restoring revision {rollback.to_revision}: "
            f"{ready}/{replicas} Ready"
        )
        d.progressing(rollback.reason, detail)
        d.status.phase = "RollingBack"
        d.requeue_within(REQUEUE_WHILE_CHANGING)
        return

    s.rolled_back_revision = rollback.revision
    s.rollback = None
    _clear_canary(d)
    s.analysis = None
    s.monitor_until = ""
    if restoring_previous:
        s.previous_stable = None
        s.promoted_at = ""
    serving = (
        f"version {s.stable_version} (revision {s.stable_revision}) serving with "
        f"{replicas}/{replicas} Ready"
        if stable
        else "nothing was serving before"
    )
    message = f"revision {rollback.revision} rolled back ({rollback.reason}: {rollback.message}); {serving}"
    d.transition("RolledBack", rollback.reason, message, "Warning")
    _rolled_back(d)


def _rolled_back(d: _Draft) -> None:
    stable = d.inputs.observed.stable
    if stable is not None:
        _ensure_stable_replicas(d, stable)
    _remove_canary(d)
    message = (
        f"revision {d.revision} was rolled back; {_serving_text(d)}. Change the spec, or "
        f"annotate aigate.dev/retry=<a new value> to try this revision again"
    )
    d.stalled("RolledBack", message)
    d.status.phase = "RolledBack"


# ---- first version: nothing to compare with, nothing to roll back to ---------------------


def _first_version(d: _Draft) -> None:
    """With no stable version yet there is no baseline for a canary and nothing to roll back
    to, so the first approved version is deployed directly as the stable one (as Argo
    Rollouts does); its post-promotion watch still runs."""
    assert d.spec is not None
    spec = d.spec
    d.actions.append(ApplyService())
    d.actions.append(
        ApplyDeployment("stable", d.revision, spec.model.version, spec.replicas, _template(spec))
    )
    message = f"deploying version {spec.model.version} (revision {d.revision}) as the first stable version"
    d.progressing("Deploying", f"{message}: 0/{spec.replicas} Ready")
    d.transition("Progressing", "Deploying", message)
    d.requeue_within(REQUEUE_WHILE_CHANGING)


def _template(spec: AIDeploymentSpec) -> dict[str, Any]:
    return spec.template.model_dump(mode="json", by_alias=True, exclude_unset=True)


# ---- the spec's revision is the stable one -----------------------------------------------


def _serving(d: _Draft, stable: WorkloadState) -> None:
    assert d.spec is not None
    spec = d.spec
    replicas = spec.replicas
    d.actions.append(ApplyService())
    if d.status.phase in ("Promoting", "Progressing") or stable.replicas != replicas:
        # Re-applying is harmless and completes an interrupted promotion.
        d.actions.append(
            ApplyDeployment("stable", d.revision, spec.model.version, replicas, _template(spec))
        )
    if not (stable.rolled_out and stable.replicas == replicas):
        # Keep the canary until the promoted stable is fully Ready: capacity never drops.
        ready = f"{stable.ready_replicas}/{replicas} Ready"
        if d.status.phase == "Promoting":
            d.progressing("Promoting", f"promoting revision {d.revision}: stable {ready}")
        elif stable.replicas != replicas:
            d.progressing(
                "Scaling", f"version {spec.model.version} (revision {d.revision}): {ready}"
            )
            d.transition(
                "Progressing",
                "Scaling",
                f"scaling version {spec.model.version} to {replicas} replicas",
            )
        elif d.status.phase == "Stable":
            # Pods lost (evicted, node gone): the Deployment controller replaces them. Not a
            # change of phase, but not Ready either.
            d.progressing(
                "Unavailable", f"version {spec.model.version} (revision {d.revision}): only {ready}"
            )
        else:
            d.progressing(
                "Deploying", f"version {spec.model.version} (revision {d.revision}): {ready}"
            )
        d.requeue_within(REQUEUE_WHILE_CHANGING)
        return
    _remove_canary(d)
    if d.status.phase in ("Promoting", "Progressing") and d.status.canary_revision:
        _clear_canary(d)
    if d.status.phase != "Stable":
        # A promotion, or the first version's deployment, starts the post-promotion watch;
        # returning to Stable after scaling or a refused change does not.
        last = d.last_transition()
        started_by = last.reason if last else ""
        _become_stable(d, stable, start_watch=started_by in ("Deploying", "Promoting"))
    _bake(d, stable)


def _become_stable(d: _Draft, stable: WorkloadState, *, start_watch: bool) -> None:
    assert d.spec is not None
    monitor_for = parse_duration(d.spec.rollout.post_promotion.monitor_for)
    s = d.status
    if start_watch:
        s.promoted_at = d.now_iso
        if monitor_for > timedelta(0):
            s.monitor_until = format_rfc3339(d.now + monitor_for)
            s.analysis = AnalysisState(track="stable", started_at=d.now_iso)
    message = (
        f"version {d.spec.model.version} (revision {d.revision}) serving with "
        f"{stable.ready_replicas}/{d.spec.replicas} replicas Ready"
    )
    if s.monitor_until:
        message += f"; post-promotion watch until {s.monitor_until}"
    d.transition("Stable", "Available", message)


def _bake_active(d: _Draft) -> bool:
    return bool(d.status.monitor_until) and d.status.stable_revision == d.revision


def _bake(d: _Draft, stable: WorkloadState) -> None:
    """Post-promotion monitoring: the first period of live operation."""
    assert d.spec is not None
    spec = d.spec
    s = d.status
    base = (
        f"version {spec.model.version} (revision {d.revision}) serving with "
        f"{stable.ready_replicas}/{spec.replicas} replicas Ready"
    )
    if not _bake_active(d):
        d.available("Available", base)
        s.stage = ""
        s.canary_weight = 0
        return
    state = _take_measurements(d, "stable")
    s.stage = "post-promotion"
    s.canary_weight = 0
    standing = an.standing(state, spec.rollout.analysis)
    if standing.breach:
        evidence = an.latest_evidence(state)
        if s.previous_stable is not None:
            _start_rollback(
                d, "PostPromotionBreach", standing.breach, to_previous=True, evidence=evidence
            )
            return
        s.monitor_until = ""
        s.analysis = None
        d.note(
            "PostPromotionBreach",
            f"{standing.breach}; there is no previous version to roll back to, so version "
            f"{spec.model.version} keeps serving: act on it",
            "Warning",
            evidence,
        )
        d.available("Available", base)
        return
    until = _parse(s.monitor_until)
    assert until is not None
    if d.now >= until and standing.all_passing:
        s.monitor_until = ""
        s.analysis = None
        s.stage = ""
        d.note(
            "BakeCompleted",
            f"post-promotion watch of revision {d.revision} passed",
            evidence=an.latest_evidence(state),
        )
        d.available("Available", base)
        return
    detail = _metrics_summary(state)
    if d.now >= until:
        detail = (
            f"watch period over, extended until every metric's latest measurement passes; {detail}"
        )
    d.available("Available", f"{base}; post-promotion watch until {s.monitor_until}: {detail}")
    _requeue_for_next_measurement(d, state)


# ---- canary stages ------------------------------------------------------------------------


def _canary(d: _Draft, stable: WorkloadState, requests: dict[Kind, Request]) -> None:
    assert d.spec is not None
    spec = d.spec
    s = d.status
    stages = spec.rollout.stages
    if s.canary_revision != d.revision:
        if s.canary_revision:
            d.note(
                "CanarySuperseded",
                f"canary of revision {s.canary_revision} replaced by revision {d.revision}",
            )
        s.canary_revision = d.revision
        s.canary_version = spec.model.version
        _enter_stage(d, 0)
    if s.stage_index >= len(stages):  # the plan lost stages since: restart the plan
        _enter_stage(d, 0)
    if s.phase == "Promoting":
        _promote(d, stable)
        return

    stage = stages[s.stage_index]
    want = canary_replicas(spec.replicas, stage.weight)
    position = f"stage {stage.name} ({s.stage_index + 1}/{len(stages)}, weight {stage.weight}%)"
    stage_started = (
        f"{position} started: canary at {want} of {spec.replicas} replicas beside stable at "
        f"{spec.replicas}"
    )
    d.actions.append(ApplyService())
    d.actions.append(
        ApplyDeployment("canary", d.revision, spec.model.version, want, _template(spec))
    )
    _ensure_stable_replicas(d, stable)
    s.stage = stage.name
    s.canary_weight = stage.weight

    canary = d.inputs.observed.canary
    canary_ready = (
        canary is not None
        and canary.revision == d.revision
        and canary.replicas == want
        and canary.rolled_out
    )
    if not canary_ready:
        started = _parse(s.stage_started_at) or d.now
        deadline = parse_duration(spec.rollout.progress_deadline)
        ready = canary.ready_replicas if canary is not None and canary.revision == d.revision else 0
        if d.now - started > deadline:
            _start_rollback(
                d,
                "ProgressDeadlineExceeded",
                f"canary {ready}/{want} Ready after {format_duration(d.now - started)} in {position}, "
                f"over progressDeadline {spec.rollout.progress_deadline}",
                to_previous=False,
            )
            return
        s.stage_ready_at = ""
        d.progressing(
            "CanaryStarting", f"{position}: waiting for canary pods, {ready}/{want} Ready"
        )
        d.transition("Progressing", "StageStarted", stage_started)
        d.requeue_within(REQUEUE_WHILE_CHANGING)
        return

    if not s.stage_ready_at:
        s.stage_ready_at = d.now_iso
        s.analysis = None  # the stage's analysis starts now
    state = _take_measurements(d, "canary")
    analysis_spec = spec.rollout.analysis
    standing = an.standing(state, analysis_spec)
    evidence = an.latest_evidence(state)

    if standing.breach:
        _start_rollback(d, "AnalysisFailed", standing.breach, to_previous=False, evidence=evidence)
        return

    if standing.inconclusive:
        if not state.paused_at:
            state.paused_at = d.now_iso
        paused_for = d.now - (_parse(state.paused_at) or d.now)
        timeout = analysis_spec.pause_timeout
        message = f"{position}: analysis inconclusive: {standing.inconclusive}"
        if timeout and paused_for > parse_duration(timeout):
            if analysis_spec.on_pause_timeout == "Rollback":
                _start_rollback(
                    d,
                    "PauseTimeout",
                    f"paused {format_duration(paused_for)}, over pauseTimeout {timeout}: "
                    f"{standing.inconclusive}",
                    to_previous=False,
                    evidence=evidence,
                )
                return
            message += f"; pauseTimeout {timeout} passed, holding (onPauseTimeout Hold)"
        d.progressing("AnalysisInconclusive", message)
        d.transition(
            "Paused",
            "AnalysisInconclusive",
            f"{position}: analysis inconclusive, no promotion until data returns or a "
            f"person acts (abort)",
            "Warning",
            evidence,
        )
        _requeue_for_next_measurement(d, state)
        return
    state.paused_at = ""

    ready_at = _parse(s.stage_ready_at) or d.now
    duration = parse_duration(stage.duration)
    elapsed = d.now - ready_at
    if elapsed < duration or not standing.all_passing:
        d.progressing(
            "Analysing",
            f"{position}: {format_duration(min(elapsed, duration))} of "
            f"{stage.duration}; {_metrics_summary(state)}",
        )
        d.transition("Progressing", "StageStarted", stage_started)
        _requeue_for_next_measurement(d, state)
        if elapsed < duration:
            d.requeue_within((duration - elapsed).total_seconds())
        return

    if stage.manual_promotion:
        promote = requests.get("promote")
        target = promote_target(promote.value, [x.name for x in stages]) if promote else None
        other_stage = target is not None and target != stage.name
        if promote is None or other_stage:
            d.progressing(
                "AwaitingPromotion",
                f"{position} passed; waiting for a person: annotate "
                f"aigate.dev/promote={stage.name} to continue or aigate.dev/abort "
                f"to roll back; {_metrics_summary(state)}",
            )
            d.transition(
                "Paused",
                "AwaitingPromotion",
                f"{position} passed its analysis and waits for aigate.dev/promote",
                evidence=evidence,
            )
            _requeue_for_next_measurement(d, state)
            return
        d.handle(promote, f"promoting past {stage.name}")

    d.note("StagePassed", f"{position} passed", evidence=evidence)
    if s.stage_index + 1 < len(stages):
        _enter_stage(d, s.stage_index + 1)
        d.requeue_within(REQUEUE_NOW)
        return
    # Last stage passed: promote. Remember what served until now for a later rollback.
    s.previous_stable = StableSnapshot(
        revision=stable.revision, version=stable.version, template=stable.template
    )
    s.analysis = None
    d.transition(
        "Promoting",
        "Promoting",
        f"all {len(stages)} stages passed; promoting revision {d.revision} to stable",
        evidence=evidence,
    )
    _promote(d, stable)


def promote_target(value: str, stage_names: Sequence[str]) -> str | None:
    """The stage a promote request names, if any: "canary-50", "canary-50@2026-11-23T10:00Z"
    or "canary-50 looks good" name canary-50; any other value promotes the waiting stage."""
    token = value.split("@", 1)[0].split(" ", 1)[0].strip()
    return token if token in stage_names else None


def _enter_stage(d: _Draft, index: int) -> None:
    assert d.spec is not None
    s = d.status
    stage = d.spec.rollout.stages[index]
    s.stage_index = index
    s.stage = stage.name
    s.canary_weight = stage.weight
    s.stage_started_at = d.now_iso
    s.stage_ready_at = ""
    s.analysis = None


def _promote(d: _Draft, stable: WorkloadState) -> None:
    assert d.spec is not None
    spec = d.spec
    d.actions.append(ApplyService())
    d.actions.append(
        ApplyDeployment("stable", d.revision, spec.model.version, spec.replicas, _template(spec))
    )
    d.progressing(
        "Promoting",
        f"promoting revision {d.revision}: stable moves to version {spec.model.version}",
    )
    d.status.phase = "Promoting"
    d.status.stage = "promoting"
    d.requeue_within(REQUEUE_WHILE_CHANGING)


# ---- measurements --------------------------------------------------------------------------


def _take_measurements(d: _Draft, track: str) -> AnalysisState:
    """The analysis of `track` (kept in status, started now if there is none) with the
    latest measurements counted."""
    assert d.spec is not None
    state = d.status.analysis
    if state is None or state.track != track:
        state = AnalysisState(track=track, started_at=d.now_iso)
    d.status.analysis = state
    measurements = d.inputs.measurements
    if measurements is None or measurements.track != track:
        return state
    at_iso = format_rfc3339(measurements.at)
    if state.last_measured_at and at_iso <= state.last_measured_at:
        return state  # already counted (a retried reconcile): never count twice
    state, records = an.record_measurements(state, d.spec.rollout.analysis, measurements, at_iso)
    d.new_measurements.extend(records)
    d.status.recent_measurements = [*d.status.recent_measurements, *records][
        -MAX_RECENT_MEASUREMENTS:
    ]
    d.status.analysis = state
    return state


def _metrics_summary(state: AnalysisState) -> str:
    if not state.metrics:
        return "no measurement yet"
    parts = []
    for name, counters in state.metrics.items():
        last = counters.last
        if last is None:
            continue
        value = last.value or "-"
        parts.append(f"{name} {last.verdict} ({value}, {last.threshold})")
    return "metrics: " + ", ".join(parts)


def _requeue_for_next_measurement(d: _Draft, state: AnalysisState) -> None:
    assert d.spec is not None
    last = _parse(state.last_measured_at)
    if last is None:
        d.requeue_within(REQUEUE_NOW)
        return
    due = last + parse_duration(d.spec.rollout.analysis.interval)
    d.requeue_within(max(REQUEUE_NOW, (due - d.now).total_seconds()))


def measurement_plan(inputs: Inputs) -> an.MeasurementPlan | None:
    """The queries due now, judged from the last status; None when nothing is due.

    The reconciler runs these before calling decide(), which then counts the results."""
    spec = inputs.spec
    status = inputs.status
    state = status.analysis
    if spec is None or state is None or status.rollback is not None:
        return None
    revision = compute_revision(spec)
    observed = inputs.observed
    if state.track == "canary":
        canary = observed.canary
        running = (
            status.phase in ("Progressing", "Paused")
            and bool(status.stage_ready_at)
            and status.canary_revision == revision
            and canary is not None
            and canary.revision == revision
            and canary.rolled_out
        )
    elif state.track == "stable":
        stable = observed.stable
        running = bool(status.monitor_until) and stable is not None and stable.revision == revision
    else:
        running = False
    if not running:
        return None
    last = _parse(state.last_measured_at)
    interval = parse_duration(spec.rollout.analysis.interval)
    # Seconds resolution: measurements are stamped to the second in status.
    now = inputs.now.replace(microsecond=0)
    if last is not None and now < last + interval:
        return None
    queries = an.plan_queries(
        spec.rollout.analysis,
        name=inputs.name,
        namespace=inputs.namespace,
        revision=revision,
        version=spec.model.version,
        track=state.track,
    )
    return an.MeasurementPlan(track=state.track, at=now, queries=queries)
