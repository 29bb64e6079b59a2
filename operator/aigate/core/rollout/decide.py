"""decide(): what is → what should be. Pure, and safe to call any number of times.

classify the situation once → record the approval → hand the draft to the handler of the
current phase; a handler that moves to another phase (goto, checked against the table)
hands over to that phase's handler in the same call, a few hops at most. Every timestamp
and counter a decision depends on is an explicit status field, so a restarted operator
decides exactly as the old one would have; the history is written, never read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime

from aigate.api.durations import parse_duration
from aigate.api.v1alpha1 import AIDeploymentSpec, AIDeploymentStatus, ChildRecords
from aigate.core import analysis as an
from aigate.core import conditions as cond
from aigate.core.gate import format_rfc3339
from aigate.core.revision import short
from aigate.core.rollout import canary, effects, promotion, rest, rollback, router, watch
from aigate.core.rollout.draft import Draft
from aigate.core.rollout.model import REQUEUE_AT_REST, Decision, Inputs
from aigate.core.rollout.routing import record_approval
from aigate.core.rollout.situation import classify
from aigate.core.rollout.snapshots import plan_of

MAX_HOPS = 6

HANDLERS: dict[str, Callable[[Draft], None]] = {
    "Pending": rest.settle,
    "AwaitingApproval": rest.settle,
    "Stable": rest.settle,
    "RolledBack": rest.settle,
    "Failed": rest.settle,
    "Deploying": promotion.run,
    "Promoting": promotion.run,
    "Progressing": canary.run,
    "Paused": canary.run,
    "Verifying": watch.run,
    "RollingBack": rollback.run,
}


def decide(inputs: Inputs) -> Decision:
    if inputs.status_error:
        return unreadable_status(inputs)
    d = Draft(classify(inputs))
    _start_child_records(d)
    effects.note_drift(d)
    _restart_without_control_state(d)
    record_approval(d)
    _refuse_requests_without_policy(d)
    for _ in range(MAX_HOPS):
        d.moved = False
        _retry(d)  # again after each hop: a retry waits while a rollback runs
        HANDLERS[d.status.phase](d)
        if not d.moved:
            break
    else:
        raise RuntimeError(f"decide() did not settle within {MAX_HOPS} phase changes")
    router.route_traffic(d)  # after the phase is settled: a rollback gives the canary 0
    _show(d)
    return d.decision()


def _start_child_records(d: Draft) -> None:
    """A resource that has deployed nothing starts with empty child records, so nothing it
    did not create is ever taken over (only a status from before records is lenient)."""
    s = d.status
    if s.children is None and not (s.serving or s.rollout or s.rollback or s.previous):
        s.children = ChildRecords()


# The control state each phase needs: without it (a status written by an older aigate, or
# edited), the phase cannot be continued and the resource is routed afresh from Pending.
_NEEDS = {
    "Deploying": ("rollout",),
    "Progressing": ("rollout", "serving"),
    "Paused": ("rollout", "serving"),
    "Promoting": ("rollout", "serving"),
    "Verifying": ("watch", "serving"),
    "RollingBack": ("rollback",),
    "Stable": ("serving",),
    "RolledBack": ("serving",),
}


def _restart_without_control_state(d: Draft) -> None:
    s = d.status
    missing = [f for f in _NEEDS.get(s.phase, ()) if getattr(s, f) is None]
    if not missing:
        return
    d.note(
        "ControlStateMissing",
        f"status.phase {s.phase} without status.{', status.'.join(missing)} (written by "
        f"another aigate version, or edited): the resource is routed afresh",
        "Warning",
    )
    s.phase = "Pending"
    s.rollout = s.watch = s.rollback = None


def _refuse_requests_without_policy(d: Draft) -> None:
    """promote and retry move a revision towards serving, and who may write them is policy:
    written while the policy does not enforce, they are refused for good (a new value is
    needed once it does). abort, the safe direction, is always honoured."""
    problem = d.inputs.policy_problem
    if not problem:
        return
    for kind in ("promote", "retry"):
        request = d.pending(kind)
        if request is not None:
            d.handle(request, f"refused: the approval policy does not enforce ({problem})")


def _retry(d: Draft) -> None:
    request = d.pending("retry")
    if request is None or d.status.phase == "RollingBack":
        return  # a retry written during a rollback waits for its end
    revision = d.sit.revision
    if not request.names_revision(revision):
        d.handle(request, f"ignored: it names another revision than {revision or '(invalid spec)'}")
    elif revision and revision in d.status.rolled_back_revisions:
        d.status.rolled_back_revisions = [
            r for r in d.status.rolled_back_revisions if r != revision
        ]
        d.handle(request, f"retrying revision {revision}")
    else:
        d.handle(request, f"ignored: revision {revision or '(invalid spec)'} was not rolled back")


def _show(d: Draft) -> None:
    """The display fields, derived from the control state and what was observed."""
    s, observed = d.status, d.inputs.observed
    s.short_revision = short(s.revision)
    if d.spec is not None:
        s.replicas = d.spec.replicas
    stable, canary_state = observed.stable, observed.canary
    s.stable_revision = stable.revision if stable else ""
    s.stable_version = stable.version if stable else ""
    s.ready_replicas = stable.ready_replicas if stable else 0
    s.canary_ready_replicas = canary_state.ready_replicas if canary_state else 0
    rollout = s.rollout
    in_canary = rollout is not None and s.phase in ("Progressing", "Paused", "Promoting")
    s.canary_revision = rollout.candidate.revision if rollout and in_canary else ""
    s.canary_version = rollout.candidate.version if rollout and in_canary else ""
    s.stage, s.canary_weight = "", 0
    if rollout is not None and s.phase in ("Progressing", "Paused"):
        s.stage = rollout.stage
        s.canary_weight = rollout.weight
    error = s.apply_error
    if error is not None and s.phase not in (error.phase, "Failed"):
        s.apply_error = None


def unreadable_status(inputs: Inputs) -> Decision:
    """The stored status cannot be read (another aigate version wrote it, or a hand edit):
    act on nothing, replace nothing but the conditions, and say which field."""
    now_iso, generation = format_rfc3339(inputs.now), inputs.generation
    message = (
        f"status cannot be read ({inputs.status_error}); aigate acts on nothing for this "
        f"resource and keeps its history, requests and approval until the status is repaired "
        f"by the aigate version that wrote it"
    )
    conditions: list = []
    for kind, on in ((cond.READY, False), (cond.RECONCILING, False), (cond.STALLED, True)):
        reason = "StatusUnreadable" if on or kind == cond.READY else ""
        text = message if on or kind == cond.READY else ""
        conditions = cond.set_condition(conditions, kind, on, reason, text, now_iso, generation)
    status = AIDeploymentStatus(conditions=conditions)
    return Decision(status=status, requeue_after=REQUEUE_AT_REST, conditions_only=True)


def measurement_plan(inputs: Inputs) -> an.MeasurementPlan | None:
    """The queries due now for the analysis the last status says is running; None when
    nothing is due. The reconciler runs them before decide(), which counts the results."""
    plan = next_measurement(inputs)
    if plan is None or (plan.due is not None and plan.at < plan.due):
        return None
    if _ended_before_due(inputs, plan):
        return None
    return plan


def _ended_before_due(inputs: Inputs, plan: an.MeasurementPlan) -> bool:
    """`plan` fell due after the analysis could end by time alone (the stage's duration,
    the watch period): an operator on time decided at that end, before it was due. So a
    late round decides first without it, and measures only if the analysis goes on (a
    metric not passing yet); otherwise it would count a measurement the analysis never
    needed, at the stage's old weight."""
    if plan.due is None or plan.ends is None or plan.due <= plan.ends:
        return False
    after = decide(inputs)
    still = next_slot(dataclasses.replace(inputs, status=after.status))
    return still is None or not an.same_analysis(still, plan)


def next_measurement(inputs: Inputs) -> an.MeasurementPlan | None:
    """The next measurement of the analysis the last status says is running, due now or
    later (its `due`); None when the analysed pods cannot be measured or nothing runs."""
    return _next(inputs, pods_measurable=True)


def next_slot(inputs: Inputs) -> an.MeasurementPlan | None:
    """next_measurement() whatever the pods do now: which measurement status counts next
    (one taken while the pods could be measured still counts if they cannot be now)."""
    return _next(inputs, pods_measurable=False)


def _next(inputs: Inputs, pods_measurable: bool) -> an.MeasurementPlan | None:
    s, observed = inputs.status, inputs.observed
    if inputs.status_error:
        return None
    if s.phase in ("Progressing", "Paused") and s.rollout and s.rollout.analysis:
        snapshot, state = s.rollout.candidate, s.rollout.analysis
        pods = observed.canary
        measurable = pods is not None and pods.serves(snapshot.revision, s.rollout.canary_replicas)
    elif s.phase == "Verifying" and s.watch and s.serving:
        snapshot, state = s.serving, s.watch.analysis
        pods = observed.stable
        measurable = pods is not None and pods.revision == snapshot.revision and pods.rolled_out
    else:
        return None
    measurable = measurable or not pods_measurable
    plan = plan_of(snapshot)
    if not measurable or plan is None:
        return None
    analysis = plan.rollout.analysis
    due = an.due_time(state, analysis)
    subject = an.Subject(
        inputs.name, inputs.namespace, snapshot.revision, snapshot.version, state.track
    )
    stable = s.serving if state.track == "canary" else None
    baseline = (
        an.Subject(inputs.name, inputs.namespace, stable.revision, stable.version, "stable")
        if stable is not None
        else None
    )
    queries = an.plan_queries(analysis, subject, baseline)
    planned = an.MeasurementPlan(
        track=state.track,
        at=inputs.now,
        queries=queries,
        revision=snapshot.revision,
        stage_index=state.stage_index,
        due=due,
        ends=_analysis_ends(s, plan),
        analysis_started=state.started_at,
    )
    return an.taken_now(planned, inputs.now)  # stamped to the second, with its lag


def _analysis_ends(s: AIDeploymentStatus, plan: AIDeploymentSpec) -> datetime | None:
    """When the running analysis may end by time alone: the stage's duration run out
    while its canary stays ready, or the post-promotion watch's end."""
    if s.phase == "Verifying" and s.watch is not None:
        return effects.parse_time(s.watch.until)
    rollout, stages = s.rollout, plan.rollout.stages
    if rollout is None or not 0 <= rollout.stage_index < len(stages):
        return None
    return canary.stage_ends(rollout, parse_duration(stages[rollout.stage_index].duration))
