"""The transition table, row by row: every declared transition is reached by a named case
through the simulator, from its source phase, as the first phase change after the trigger;
and the table is what docs/state-machine.md shows."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from aigate.api.v1alpha1 import AIDeploymentSpec
from aigate.core.revision import compute_revision
from aigate.core.rollout import table
from aigate.core.verdict import QueryOutcome
from support.factories import approval_annotations, approved_for, request, spec_model
from support.sim import T0, Faults, World, plan_spec, serving, upgrade

ROOT = Path(__file__).resolve().parents[2]
BAD_SPEC = "spec.rollout.analysis.metrics[0].query: unknown placeholder(s) ['bogus']"
DOWN = QueryOutcome.failed("Prometheus unreachable: ConnectionError")


def failing(track, metric, at):
    return QueryOutcome(samples=(0.5 if metric == "error-rate" else 0.001,))


def down(track, metric, at):
    return DOWN


# ---- worlds in each source phase ------------------------------------------------------------


def until(world: World, predicate, advance=timedelta(seconds=5), limit=400) -> World:
    world.run_until(predicate, advance=advance, limit=limit)
    return world


def pending(approved=True, stable_revision_of=None) -> World:
    spec = plan_spec()
    if stable_revision_of is None:
        return World(spec=spec, now=T0, annotations=approved_for(spec, T0) if approved else {})
    # A resource sent back to Pending with what serves still recorded (a phase whose
    # control state was missing restarts from Pending): the route starts from there.
    world = serving(stable_revision_of.model.version)
    world.status = world.status.model_copy(update={"phase": "Pending"})
    world.change_spec(spec)
    world.annotations = approved_for(spec, world.now) if approved else {}
    return world


def awaiting(first=True) -> World:
    if first:
        world = pending(approved=False)
        world.step()
        return world
    world = serving()
    world.change_spec(plan_spec("2.9.0"))  # annotations approve 2.4.0 only
    return until(world, lambda w: w.status.phase == "AwaitingApproval")


def failed(serving_first=False) -> World:
    world = serving() if serving_first else pending()
    world.change_spec(None, BAD_SPEC)
    return until(world, lambda w: w.status.phase == "Failed")


def progressing(**kwargs) -> World:
    world = serving(**kwargs)
    upgrade(world, **kwargs)
    return until(world, lambda w: w.status.rollout is not None and w.status.rollout.ready_since)


def paused_waiting(**kwargs) -> World:
    world = serving(manual=True, **kwargs)
    upgrade(world, manual=True, **kwargs)
    return until(world, lambda w: w.status.phase == "Paused")


def paused_blind(**kwargs) -> World:
    world = progressing(**kwargs)
    world.outcome = down
    return until(world, lambda w: w.status.phase == "Paused", timedelta(seconds=30))


def rolled_back() -> World:
    world = progressing()
    world.outcome = failing
    world = until(world, lambda w: w.status.phase == "RolledBack")
    world.outcome = lambda track, metric, at: QueryOutcome(samples=(0.001,))
    return world


def deploying(monitor="0s", speed=0) -> World:
    spec = plan_spec(monitor=monitor)
    world = World(spec=spec, now=T0, annotations=approved_for(spec, T0), speed=speed)
    world.step()
    return world


def promoting(monitor="0s") -> World:
    world = progressing(monitor=monitor)
    world = until(world, lambda w: w.status.phase == "Promoting")
    world.speed = 1  # the stable Deployment rolls slowly
    return world


def verifying(first=False, **kwargs) -> World:
    if first:
        world = deploying(monitor="10m", speed=1000, **kwargs)
        return until(world, lambda w: w.status.phase == "Verifying")
    world = serving(monitor="10m", **kwargs)
    upgrade(world, monitor="10m", **kwargs)
    return until(world, lambda w: w.status.phase == "Verifying")


def rolling_back() -> World:
    world = progressing()
    world.outcome = failing
    world.speed = 0
    world.faults.lose_actions = False
    return until(world, lambda w: w.status.phase == "RollingBack")


# ---- triggers ---------------------------------------------------------------------------------


def new_version(world: World, version="3.0.0", approved=True, **kwargs) -> None:
    spec = plan_spec(version, **kwargs)
    world.change_spec(spec)
    if approved:
        world.annotations = approved_for(spec, world.now, age=timedelta(minutes=1))


def invalid(world: World) -> None:
    world.change_spec(None, BAD_SPEC)


def conflict(world: World) -> None:
    world.conflicts = ("Deployment fraud-scorer-canary",)
    world.generation += 1


def revert_to_serving(world: World) -> None:
    content = world.status.serving.content
    world.change_spec(AIDeploymentSpec.model_validate({**content, "replicas": 4}))


def unapproved(world: World) -> None:
    world.change_spec(plan_spec("9.9.9"))


def other_refusal(world: World) -> None:
    world.annotations = approval_annotations("0" * 12, world.now)


def approve(world: World) -> None:
    world.annotations = approved_for(world.spec, world.now, age=timedelta(minutes=1))


def back_to_rolled_back(world: World) -> None:
    """The spec returns to the rolled-back revision, whose approval is still annotated."""
    bad = world.status.rolled_back_revisions[-1]
    spec = plan_spec("2.5.0")
    assert compute_revision(spec) == bad
    world.change_spec(spec)
    world.annotations = approved_for(spec, world.now, age=timedelta(minutes=1))


def annotate(key: str, value: str) -> Callable[[World], None]:
    def trigger(world: World) -> None:
        world.annotations = world.annotations | {f"aigate.dev/{key}": value}

    return trigger


def promote(world: World) -> None:
    stage = world.status.stage
    annotate("promote", request("promote", world.status.rollout.candidate.revision, stage))(world)


def retry(world: World) -> None:
    annotate("retry", request("retry", world.status.revision, text="INC-1"))(world)


def rescale_rejected(world: World) -> None:
    """spec.replicas grows (no new revision), so the canary is resized, and that apply is
    refused."""
    raw = world.spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    world.change_spec(AIDeploymentSpec.model_validate({**raw, "replicas": 20}))
    world.faults = Faults(reject_next_apply="HTTP 422: exceeded quota", reject_track="canary")
    world.step()


def outcome(fn) -> Callable[[World], None]:
    def trigger(world: World) -> None:
        world.outcome = fn

    return trigger


def canary_lost(world: World) -> None:
    world.canary_becomes_ready = False
    world.delete_child("canary")


def with_then(*triggers) -> Callable[[World], None]:
    def trigger(world: World) -> None:
        for t in triggers:
            t(world)

    return trigger


def nothing(world: World) -> None:
    return None


def with_world(world: World, change: Callable[[World], object]) -> World:
    change(world)
    return world


def last_stage_manual_paused() -> World:
    raw_v1 = spec_model(copy.deepcopy(_last_manual("2.4.0")))
    world = World(spec=raw_v1, now=T0, annotations=approved_for(raw_v1, T0))
    until(world, lambda w: w.status.phase == "Stable")
    v2 = spec_model(_last_manual("2.5.0"))
    world.change_spec(v2)
    world.annotations = approved_for(v2, world.now, age=timedelta(minutes=1))
    return until(world, lambda w: w.status.phase == "Paused")


def _last_manual(version: str) -> dict:
    raw = plan_spec(version).model_dump(mode="json", by_alias=True, exclude_unset=True)
    raw["rollout"]["stages"] = [
        {"name": "canary-10", "weight": 10, "duration": "30s"},
        {"name": "full", "weight": 100, "manualPromotion": True},
    ]
    return raw


def serving_then_rolled_back_then(step) -> Callable[[], World]:
    def setup() -> World:
        world = rolled_back()
        step(world)
        return world

    return setup


def to_awaiting_after_rollback(world: World) -> None:
    world.change_spec(plan_spec("3.3.3"))
    until(world, lambda w: w.status.phase == "AwaitingApproval")


def to_stable_after_rollback(world: World) -> None:
    revert_to_serving(world)
    until(world, lambda w: w.status.phase == "Stable")


def to_failed_after_rollback(world: World) -> None:
    invalid(world)
    until(world, lambda w: w.status.phase == "Failed")


def to_progressing_after_rollback(world: World) -> None:
    new_version(world, "3.0.0")
    until(world, lambda w: w.status.rollout is not None and w.status.rollout.ready_since)


V1 = plan_spec()
V0 = plan_spec("2.3.0")

CASES: dict[tuple[str, str, str], tuple[Callable[[], World], Callable[[World], None]]] = {
    # Pending
    ("Pending", "Failed", "InvalidSpec"): (pending, invalid),
    ("Pending", "Failed", "ChildConflict"): (pending, conflict),
    ("Pending", "Stable", "Serving"): (lambda: pending(stable_revision_of=V1), nothing),
    ("Pending", "AwaitingApproval", "ApprovalRequired"): (lambda: pending(False), nothing),
    ("Pending", "Deploying", "FirstVersion"): (pending, nothing),
    ("Pending", "Progressing", "RolloutStarted"): (lambda: pending(stable_revision_of=V0), nothing),
    # AwaitingApproval
    ("AwaitingApproval", "Failed", "InvalidSpec"): (awaiting, invalid),
    ("AwaitingApproval", "Failed", "ChildConflict"): (awaiting, conflict),
    ("AwaitingApproval", "Stable", "Serving"): (lambda: awaiting(False), revert_to_serving),
    ("AwaitingApproval", "AwaitingApproval", "ApprovalRequired"): (awaiting, other_refusal),
    ("AwaitingApproval", "RolledBack", "RevisionRolledBack"): (
        serving_then_rolled_back_then(to_awaiting_after_rollback),
        back_to_rolled_back,
    ),
    ("AwaitingApproval", "Deploying", "FirstVersion"): (awaiting, approve),
    ("AwaitingApproval", "Progressing", "RolloutStarted"): (lambda: awaiting(False), approve),
    # Stable
    ("Stable", "Failed", "InvalidSpec"): (serving, invalid),
    ("Stable", "Failed", "ChildConflict"): (serving, conflict),
    ("Stable", "AwaitingApproval", "ApprovalRequired"): (serving, unapproved),
    ("Stable", "RolledBack", "RevisionRolledBack"): (
        serving_then_rolled_back_then(to_stable_after_rollback),
        back_to_rolled_back,
    ),
    ("Stable", "Progressing", "RolloutStarted"): (serving, new_version),
    # RolledBack
    ("RolledBack", "Failed", "InvalidSpec"): (rolled_back, invalid),
    ("RolledBack", "Failed", "ChildConflict"): (rolled_back, conflict),
    ("RolledBack", "Stable", "Serving"): (rolled_back, revert_to_serving),
    ("RolledBack", "AwaitingApproval", "ApprovalRequired"): (rolled_back, unapproved),
    ("RolledBack", "Progressing", "RolloutStarted"): (rolled_back, retry),
    # Failed
    ("Failed", "Failed", "InvalidSpec"): (
        lambda: until(with_world(serving(), conflict), lambda w: w.status.phase == "Failed"),
        with_then(lambda w: setattr(w, "conflicts", ()), invalid),
    ),
    ("Failed", "Failed", "ChildConflict"): (
        lambda: failed(True),
        with_then(revert_to_serving, conflict),
    ),
    ("Failed", "Stable", "Serving"): (lambda: failed(True), revert_to_serving),
    ("Failed", "AwaitingApproval", "ApprovalRequired"): (lambda: failed(True), unapproved),
    ("Failed", "RolledBack", "RevisionRolledBack"): (
        serving_then_rolled_back_then(to_failed_after_rollback),
        back_to_rolled_back,
    ),
    ("Failed", "Deploying", "FirstVersion"): (failed, lambda w: new_version(w, "2.4.0")),
    ("Failed", "Progressing", "RolloutStarted"): (lambda: failed(True), new_version),
    # Deploying
    ("Deploying", "Deploying", "CandidateSuperseded"): (deploying, new_version),
    ("Deploying", "Failed", "ApplyRejected"): (
        lambda: with_world(
            World(
                spec=V1,
                now=T0,
                annotations=approved_for(V1, T0),
                faults=Faults(reject_next_apply="HTTP 422: bad port"),
            ),
            lambda w: w.step(),
        ),
        nothing,
    ),
    ("Deploying", "Verifying", "Promoted"): (lambda: deploying("10m", 1000), nothing),
    ("Deploying", "Stable", "Promoted"): (lambda: deploying("0s", 1000), nothing),
    # Promoting
    ("Promoting", "Verifying", "Promoted"): (lambda: promoting("10m"), nothing),
    ("Promoting", "Stable", "Promoted"): (promoting, nothing),
    ("Promoting", "RollingBack", "AbortRequested"): (promoting, annotate("abort", "by=sre stop")),
    # Verifying
    ("Verifying", "Stable", "WatchCompleted"): (verifying, nothing),
    ("Verifying", "Stable", "PostPromotionBreach"): (lambda: verifying(True), outcome(failing)),
    ("Verifying", "RollingBack", "PostPromotionBreach"): (verifying, outcome(failing)),
    ("Verifying", "RollingBack", "AbortRequested"): (verifying, annotate("abort", "by=sre INC-9")),
    ("Verifying", "RollingBack", "PauseTimeout"): (
        lambda: verifying(pauseTimeout="1m", onPauseTimeout="Rollback"),
        outcome(down),
    ),
    # RollingBack
    ("RollingBack", "RolledBack", "RollbackCompleted"): (
        rolling_back,
        lambda w: setattr(w, "speed", 1000),
    ),
    ("Progressing", "Paused", "AwaitingPromotion"): (
        lambda: until(progressing(manual=True), lambda w: w.status.stage == "canary-50"),
        nothing,
    ),
    ("Paused", "Progressing", "AnalysisResumed"): (
        paused_blind,
        outcome(lambda t, m, a: QueryOutcome(samples=(0.001,))),
    ),
}


def _canary_cases(source: str, setup: Callable[[], World]) -> None:
    CASES.update(
        {
            (source, "Failed", "InvalidSpec"): (setup, invalid),
            (source, "Failed", "ChildConflict"): (setup, conflict),
            (source, "Failed", "ApplyRejected"): (setup, rescale_rejected),
            (source, "Stable", "Serving"): (setup, revert_to_serving),
            (source, "AwaitingApproval", "ApprovalRequired"): (setup, unapproved),
            (source, "Progressing", "CanarySuperseded"): (setup, new_version),
            (source, "Paused", "AnalysisInconclusive"): (setup, outcome(down)),
            (source, "RollingBack", "AnalysisFailed"): (setup, outcome(failing)),
            (source, "RollingBack", "ProgressDeadlineExceeded"): (setup, canary_lost),
            (source, "RollingBack", "AbortRequested"): (setup, annotate("abort", "by=sre now")),
        }
    )


_canary_cases("Progressing", progressing)
_canary_cases("Paused", paused_waiting)
CASES.update(
    {
        ("Progressing", "RolledBack", "RevisionRolledBack"): (
            serving_then_rolled_back_then(to_progressing_after_rollback),
            back_to_rolled_back,
        ),
        ("Paused", "RolledBack", "RevisionRolledBack"): (
            serving_then_rolled_back_then(
                lambda w: (
                    new_version(w, "3.0.0", manual=True),
                    until(w, lambda x: x.status.phase == "Paused"),
                )
            ),
            back_to_rolled_back,
        ),
        ("Progressing", "Progressing", "StageStarted"): (progressing, nothing),
        ("Paused", "Progressing", "StageStarted"): (paused_waiting, promote),
        ("Progressing", "Promoting", "AllStagesPassed"): (
            lambda: until(progressing(), lambda w: w.status.stage == "full"),
            nothing,
        ),
        ("Paused", "Promoting", "AllStagesPassed"): (last_stage_manual_paused, promote),
        ("Paused", "RollingBack", "PauseTimeout"): (
            lambda: paused_blind(pauseTimeout="1m", onPauseTimeout="Rollback"),
            nothing,
        ),
    }
)


def refused_first_version_then_conflict() -> World:
    """Failed (ApplyRejected) for the first version, then a conflicting object appears."""
    world = World(
        spec=V1,
        now=T0,
        annotations=approved_for(V1, T0),
        faults=Faults(reject_next_apply="HTTP 422: bad port"),
    )
    world = until(world, lambda w: w.status.phase == "Failed")
    world.conflicts = ("Deployment fraud-scorer-canary",)
    return until(world, lambda w: w.status.last_transition.reason == "ChildConflict")


CASES[("Failed", "Failed", "ApplyRejected")] = (
    refused_first_version_then_conflict,
    lambda w: setattr(w, "conflicts", ()),
)


# Fail closed without the approval policy (docs/decisions/0009-fail-closed-without-policy.md):
# an approved new revision waits while the policy does not enforce.
POLICY_MISSING = "ValidatingAdmissionPolicy aigate-approvals not found"


def approved_without_policy(world: World) -> None:
    world.policy_problem = POLICY_MISSING
    new_version(world, "4.0.0")


def without_policy(setup: Callable[[], World]) -> Callable[[], World]:
    def policy_missing() -> World:
        world = setup()
        world.policy_problem = POLICY_MISSING
        return world

    return policy_missing


CASES.update(
    {
        ("Pending", "AwaitingApproval", "ApprovalPolicyMissing"): (
            without_policy(pending),
            nothing,
        ),
        ("AwaitingApproval", "AwaitingApproval", "ApprovalPolicyMissing"): (
            awaiting,
            approved_without_policy,
        ),
        **{
            (source, "AwaitingApproval", "ApprovalPolicyMissing"): (setup, approved_without_policy)
            for source, setup in (
                ("Stable", serving),
                ("RolledBack", rolled_back),
                ("Failed", lambda: failed(True)),
                ("Progressing", progressing),
                ("Paused", paused_waiting),
            )
        },
    }
)


def test_every_declared_transition_has_a_case_and_every_case_is_declared():
    declared = {(t.source, t.target, t.reason) for t in table.TRANSITIONS}
    assert set(CASES) == declared, (
        f"without a case: {sorted(declared - set(CASES))}; "
        f"not declared: {sorted(set(CASES) - declared)}"
    )


@pytest.mark.parametrize(
    ("source", "target", "reason"), sorted(CASES), ids=["-".join(k) for k in sorted(CASES)]
)
def test_transition(source, target, reason):
    setup, trigger = CASES[(source, target, reason)]
    world = setup()
    assert world.status.phase == source, f"setup reached {world.status.phase}, not {source}"
    if trigger is not nothing:
        trigger(world)
    if world.outcome is None:
        world.outcome = lambda t, m, a: QueryOutcome(samples=(0.001,))
    seen_from = len(world.decisions)
    for _ in range(200):
        world.step(timedelta(seconds=15))
        moves = [
            (h.from_phase, h.to_phase, h.reason)
            for d in world.decisions[seen_from:]
            for h in d.new_history
            if table.declared(h.from_phase, h.to_phase, h.reason)
        ]
        if moves:
            assert moves[0] == (source, target, reason), f"first transition was {moves[0]}"
            return
    raise AssertionError(f"no transition out of {source} in 200 steps")


def test_docs_show_the_table_as_declared():
    doc = (ROOT / "docs" / "state-machine.md").read_text()
    assert table.render_markdown() in doc, "docs/state-machine.md is stale: re-render the table"


def test_an_undeclared_transition_is_refused():
    with pytest.raises(table.UndeclaredTransitionError):
        table.check("Stable", "Promoting", "AllStagesPassed")
