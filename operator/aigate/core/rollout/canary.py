"""Progressing and Paused: the candidate runs as the canary beside the serving version,
stage by stage, each stage analysed against the thresholds approved with the candidate."""

from __future__ import annotations

from datetime import datetime, timedelta

from aigate.api.durations import format_duration, parse_duration
from aigate.api.v1alpha1 import AIDeploymentSpec, AnalysisState, RollbackTrigger, RolloutState
from aigate.core import analysis as an
from aigate.core import traffic
from aigate.core.gate import format_rfc3339
from aigate.core.rollout import effects, router
from aigate.core.rollout.draft import Draft
from aigate.core.rollout.model import REQUEUE_WHILE_CHANGING, ApplyDeployment
from aigate.core.rollout.routing import route
from aigate.core.rollout.snapshots import plan_of, snapshot_of, template_of


def run(d: Draft) -> None:
    rollout = d.status.rollout
    assert rollout is not None and d.status.serving is not None
    plan = plan_of(rollout.candidate)
    if plan is None or not 0 <= rollout.stage_index < len(plan.rollout.stages):
        why = (
            "its recorded content does not match its revision"
            if plan is None
            else (f"status.rollout.stageIndex {rollout.stage_index} is not a stage of its plan")
        )
        _restart(d, why)
        return
    if not _still_wanted(d, rollout) or _aborted(d, rollout):
        return
    _answer_other_promotes(d, rollout, plan)
    stable_full = effects.keep_serving(d)
    canary_ready = _size_canary(d, rollout, plan)
    if not canary_ready or not stable_full:
        _wait_for_pods(d, rollout, plan, canary_ready)
        return
    if router.route_problem(d):
        _hold_for_route(d, rollout, plan)
        return
    _analyse(d, rollout, plan)


# ---- is the rollout still wanted? --------------------------------------------------------


def _still_wanted(d: Draft, rollout: RolloutState) -> bool:
    where = route(d)
    if where.phase == "Progressing" and d.sit.revision == rollout.candidate.revision:
        return True
    if where.phase == "Progressing":
        assert d.spec is not None
        old = rollout.candidate
        effects.end_rollout(d, "superseded")
        effects.begin_rollout(d, snapshot_of(d.spec))
        d.goto(
            "Progressing",
            "CanarySuperseded",
            f"canary of version {old.version} (revision {old.revision}) replaced by version "
            f"{d.spec.model.version} (revision {d.sit.revision}), from its first stage",
            subject=d.subject_of_spec(),
        )
        return False
    _cancel(d, where.message)
    return False


def _restart(d: Draft, why: str) -> None:
    """A rollout whose recorded state cannot be trusted starts again from its first stage
    with the spec's approved content (or is cancelled if the spec no longer asks for it)."""
    where = route(d)
    if where.phase != "Progressing":
        _cancel(d, why)
        return
    assert d.spec is not None
    effects.end_rollout(d, "restarted")
    effects.begin_rollout(d, snapshot_of(d.spec))
    d.goto(
        "Progressing",
        "CanarySuperseded",
        f"canary restarted from its first stage: {why}",
        "Warning",
        subject=d.subject_of_spec(),
    )


def _cancel(d: Draft, why: str) -> None:
    """Ends a rollout the spec no longer asks for: recorded, then routed anew."""
    rollout = d.status.rollout
    assert rollout is not None
    candidate = rollout.candidate
    d.note(
        "CanaryCancelled",
        f"canary of version {candidate.version} (revision {candidate.revision}) cancelled: {why}",
        "Warning",
        subject=(candidate.revision, candidate.version),
    )
    effects.end_rollout(d, "cancelled")
    where = route(d)
    event = "Warning" if where.phase in ("AwaitingApproval", "Failed") else "Normal"
    d.goto(where.phase, where.reason, where.message, event, subject=d.subject_of_spec())


def _aborted(d: Draft, rollout: RolloutState) -> bool:
    abort = d.pending("abort")
    if abort is None:
        return False
    assert d.status.serving is not None
    return effects.abort_to(
        d, abort, bad=rollout.candidate, target=d.status.serving, what="the canary"
    )


def _answer_other_promotes(d: Draft, rollout: RolloutState, plan: AIDeploymentSpec) -> None:
    """A promote that can never count for this rollout is answered now; one naming this or
    a later stage of it waits."""
    promote = d.pending("promote")
    if promote is None:
        return
    names = [s.name for s in plan.rollout.stages]
    if not promote.names_revision(rollout.candidate.revision):
        if promote.names_revision(d.sit.revision):
            return  # for the revision the spec asks for next
        d.handle(promote, f"ignored: it names another revision than {rollout.candidate.revision}")
    elif promote.stage not in names:
        d.handle(
            promote, f"ignored: {promote.stage!r} is not a stage of the plan ({', '.join(names)})"
        )
    elif names.index(promote.stage) < rollout.stage_index:
        d.handle(promote, f"ignored: stage {promote.stage} has already passed")


# ---- pods ----------------------------------------------------------------------------------


def _size_canary(d: Draft, rollout: RolloutState, plan: AIDeploymentSpec) -> bool:
    """Asks for the stage's canary size and keeps the clocks: the progress deadline runs
    from the moment the canary was asked for its size or lost readiness; the stage's
    elapsed time accumulates only while the canary is rolled out."""
    stage = plan.rollout.stages[rollout.stage_index]
    want = traffic.canary_size(plan, d.replicas, stage.weight)
    candidate, canary = rollout.candidate, d.sit.canary
    if rollout.canary_replicas != want:
        rollout.canary_replicas = want
        rollout.waiting_since = d.now_iso
    drifted = d.inputs.observed.drift_of("canary") is not None
    if canary is not None and canary.terminating and not drifted:
        pass  # the previous canary is still going away: this one is created once it is gone
    elif (
        canary is None
        or canary.revision != candidate.revision
        or canary.replicas != want
        or drifted
    ):
        d.actions.append(
            ApplyDeployment(
                "canary", candidate.revision, candidate.version, want, template_of(candidate)
            )
        )
    ready = canary is not None and canary.serves(candidate.revision, want)
    if ready:
        rollout.waiting_since = ""
        rollout.ready_since = rollout.ready_since or d.now_iso
        return True
    if rollout.ready_since:
        start = effects.parse_time(rollout.ready_since) or d.now
        rollout.elapsed_seconds += (d.now - start).total_seconds()
        rollout.ready_since = ""
    rollout.waiting_since = rollout.waiting_since or d.now_iso
    return False


def _wait_for_pods(
    d: Draft, rollout: RolloutState, plan: AIDeploymentSpec, canary_ready: bool
) -> None:
    position = stage_position(plan, rollout.stage_index)
    d.requeue_within(REQUEUE_WHILE_CHANGING)
    if not canary_ready:
        since = effects.parse_time(rollout.waiting_since) or d.now
        waited, deadline = d.now - since, parse_duration(plan.rollout.progress_deadline)
        effects.requeue_while_waiting(d, deadline - waited)
        canary = d.sit.canary
        ready = (
            canary.ready_replicas if canary and canary.revision == rollout.candidate.revision else 0
        )
        count = f"canary {ready}/{rollout.canary_replicas} Ready"
        detail = f"{count} after {format_duration(waited)} in {position}"
        if waited > deadline:
            assert d.status.serving is not None
            effects.begin_rollback(
                d,
                "ProgressDeadlineExceeded",
                f"{detail}, over progressDeadline {plan.rollout.progress_deadline}",
                bad=rollout.candidate,
                target=d.status.serving,
                trigger=RollbackTrigger(
                    kind="Deadline",
                    detail=f"{detail}, over progressDeadline {plan.rollout.progress_deadline}",
                ),
            )
            return
        # Not `detail`: its elapsed time would change the condition, so status, every round.
        d.progressing(
            "CanaryStarting",
            f"{position}: waiting for canary pods, {count}, waiting since "
            f"{rollout.waiting_since} (progressDeadline {plan.rollout.progress_deadline})",
        )
        return
    d.progressing(
        "StableRecovering",
        f"{position}: the serving version is not at full strength; the stage waits for it",
    )


def _hold_for_route(d: Draft, rollout: RolloutState, plan: AIDeploymentSpec) -> None:
    """The route that would carry the canary's weight is missing: the stage's clock stops
    (its time counts only with traffic routed) and nothing advances; no deadline runs
    out, since the canary is not at fault. An abort still rolls back."""
    if rollout.ready_since:
        start = effects.parse_time(rollout.ready_since) or d.now
        rollout.elapsed_seconds += (d.now - start).total_seconds()
        rollout.ready_since = ""
    d.requeue_within(REQUEUE_WHILE_CHANGING * 5)
    d.progressing(
        "TrafficRouteUnavailable",
        f"{stage_position(plan, rollout.stage_index)}: held, the canary gets no traffic: "
        f"spec.rollout.traffic.gatewayAPI: {router.route_problem(d)}",
    )


# ---- analysis ------------------------------------------------------------------------------


def _analyse(d: Draft, rollout: RolloutState, plan: AIDeploymentSpec) -> None:
    analysis_spec = plan.rollout.analysis
    assert rollout.analysis is not None
    state = effects.count_measurements(d, rollout.analysis, analysis_spec)
    rollout.analysis = state
    stage = plan.rollout.stages[rollout.stage_index]
    needed = an.min_passing(analysis_spec, parse_duration(stage.duration))
    standing = an.standing(state, analysis_spec, needed)
    evidence = an.latest_evidence(state)
    if standing.breach:
        assert d.status.serving is not None
        effects.begin_rollback(
            d,
            "AnalysisFailed",
            standing.breach,
            bad=rollout.candidate,
            target=d.status.serving,
            trigger=effects.metric_trigger(standing.breach, standing.breach_evidence),
            evidence=evidence,
        )
        return
    effects.requeue_for_next_measurement(d, state, analysis_spec)
    if standing.inconclusive:
        _inconclusive(d, rollout, plan, state, standing.inconclusive)
        return
    state.inconclusive_since = ""
    if d.status.phase == "Paused" and paused_reason(d) == "AnalysisInconclusive":
        d.goto(
            "Progressing",
            "AnalysisResumed",
            f"{stage_position(plan, rollout.stage_index)}: measurements conclusive again",
        )
        return
    elapsed = stage_elapsed(d, rollout)
    duration = parse_duration(stage.duration)
    if elapsed < duration or not standing.all_passing:
        d.progressing(
            "Analysing",
            f"{stage_position(plan, rollout.stage_index)}: {stage_timing(rollout, duration, elapsed)}; "
            f"{effects.metrics_summary(state)} (each metric needs {needed} passing "
            "measurement(s))",
        )
        if elapsed < duration:
            d.requeue_within((duration - elapsed).total_seconds())
        return
    _stage_passed(d, rollout, plan, evidence)


def _inconclusive(
    d: Draft, rollout: RolloutState, plan: AIDeploymentSpec, state: AnalysisState, why: str
) -> None:
    analysis_spec = plan.rollout.analysis
    position = stage_position(plan, rollout.stage_index)
    waited = effects.inconclusive_for(d, state)
    timeout = analysis_spec.pause_timeout
    message = f"{position}: analysis inconclusive: {why}"
    if timeout and waited > parse_duration(timeout):
        if analysis_spec.on_pause_timeout == "Rollback":
            detail = (
                f"inconclusive for {format_duration(waited)}, over pauseTimeout {timeout}: {why}"
            )
            assert d.status.serving is not None
            effects.begin_rollback(
                d,
                "PauseTimeout",
                detail,
                bad=rollout.candidate,
                target=d.status.serving,
                trigger=RollbackTrigger(kind="PauseTimeout", detail=detail),
                evidence=an.latest_evidence(state),
            )
            return
        message += f"; pauseTimeout {timeout} passed, holding (onPauseTimeout Hold)"
    if paused_reason(d) != "AnalysisInconclusive" or d.status.phase != "Paused":
        d.goto(
            "Paused",
            "AnalysisInconclusive",
            f"{position}: analysis inconclusive, no promotion until data returns or a person "
            f"acts (aigate.dev/abort)",
            "Warning",
            an.latest_evidence(state),
        )
        return
    d.progressing("AnalysisInconclusive", message)


def _stage_passed(d: Draft, rollout: RolloutState, plan: AIDeploymentSpec, evidence) -> None:
    stages = plan.rollout.stages
    stage = stages[rollout.stage_index]
    position = stage_position(plan, rollout.stage_index)
    if d.inputs.policy_problem:
        # No step towards serving while approvals cannot be trusted; analysis and rollback
        # go on (docs/decisions/0009-fail-closed-without-policy.md).
        d.progressing(
            "ApprovalPolicyMissing",
            f"{position} passed its analysis; held, no stage advances and no promotion until "
            f"the approval policy enforces ({d.inputs.policy_problem}); aigate.dev/abort "
            f"still rolls back",
        )
        return
    if stage.manual_promotion:
        promote = d.pending("promote")
        for_this = promote is not None and promote.names_revision(rollout.candidate.revision)
        if promote is None or not for_this or promote.stage != stage.name:
            if d.status.phase != "Paused" or paused_reason(d) != "AwaitingPromotion":
                d.goto(
                    "Paused",
                    "AwaitingPromotion",
                    f"{position} passed its analysis and waits for aigate.dev/promote="
                    f"{stage.name}@{rollout.candidate.revision} by=<you>",
                    evidence=evidence,
                )
                return
            d.progressing(
                "AwaitingPromotion",
                f"{position} passed; waiting for a person: annotate aigate.dev/promote="
                f"{stage.name}@{rollout.candidate.revision} by=<you> to continue or aigate.dev/abort to "
                f"roll back; {effects.metrics_summary(rollout.analysis or AnalysisState())}",
            )
            return
        d.handle(
            promote, f"promoting past stage {stage.name} of revision {rollout.candidate.revision}"
        )
    d.note("StagePassed", f"{position} passed", evidence=evidence)
    if rollout.stage_index + 1 < len(stages):
        effects.enter_stage(d, rollout.stage_index + 1)
        d.goto(
            "Progressing", "StageStarted", f"{stage_position(plan, rollout.stage_index)} started"
        )
        return
    rollout.waiting_since = d.now_iso  # the promotion's progress deadline starts now
    rollout.analysis = None
    d.goto(
        "Promoting",
        "AllStagesPassed",
        f"all {len(stages)} stages passed; promoting version {rollout.candidate.version} "
        f"(revision {rollout.candidate.revision}) to stable",
        evidence=evidence,
    )


def stage_elapsed(d: Draft, rollout: RolloutState) -> timedelta:
    """Time the stage has run with its canary rolled out (readiness blips excluded)."""
    running = timedelta(0)
    if rollout.ready_since:
        running = d.now - (effects.parse_time(rollout.ready_since) or d.now)
    return timedelta(seconds=rollout.elapsed_seconds) + running


def stage_timing(rollout: RolloutState, duration: timedelta, elapsed: timedelta) -> str:
    """When the stage's duration is over, as a time that stays put while the canary stays
    ready: a text that ticked every second would make every round a status write."""
    left = duration - elapsed
    if left <= timedelta(0):
        return f"{format_duration(duration)} done"
    ends = stage_ends(rollout, duration)
    if ends is None:
        return (
            f"{format_duration(left)} of {format_duration(duration)} left, once the canary is ready"
        )
    return f"analysed for {format_duration(duration)}, until {format_rfc3339(ends)}"


def stage_ends(rollout: RolloutState, duration: timedelta) -> datetime | None:
    """When the stage's `duration` runs out if its canary stays ready; None while it is
    not ready (the stage's clock is stopped)."""
    ready_since = effects.parse_time(rollout.ready_since)
    if ready_since is None:
        return None
    return ready_since + duration - timedelta(seconds=rollout.elapsed_seconds)


def stage_position(plan: AIDeploymentSpec, index: int) -> str:
    stages = plan.rollout.stages
    stage = stages[index]
    return f"stage {stage.name} ({index + 1}/{len(stages)}, weight {stage.weight}%)"


def paused_reason(d: Draft) -> str:
    last = d.status.last_transition
    return last.reason if last is not None and last.to_phase == "Paused" else ""
