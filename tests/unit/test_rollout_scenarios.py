"""The issue's scenarios, one named test each, driven through the simulator (slow rollouts
where the scenario is about time windows) and asserted on phases, what serves, the Service,
history entries, conditions and status fields. docs/state-machine.md states the rules."""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from aigate.api.durations import format_duration, parse_duration
from aigate.api.v1alpha1 import AIDeploymentSpec, AIDeploymentStatus, MetricSpec
from aigate.core import rollout
from aigate.core.analysis import min_passing
from aigate.core.conditions import get_condition
from aigate.core.gate import parse_rfc3339
from aigate.core.requests import value_digest
from aigate.core.revision import compute_revision
from aigate.core.verdict import QueryOutcome, judge
from support.factories import approved_for, request
from support.sim import T0, Faults, World, plan_spec, serving, upgrade

HEALTHY = QueryOutcome(samples=(0.001,))
BAD_SPEC = "spec.rollout.analysis.metrics[0].query: unknown placeholder(s) ['bogus']"


# ---- helpers ---------------------------------------------------------------------------------


def healthy(track: str, metric: str, at: datetime) -> QueryOutcome:
    return HEALTHY


def failing_on(track: str, metric: str = "error-rate", value: float = 0.5):
    def outcome(t: str, m: str, at: datetime) -> QueryOutcome:
        return QueryOutcome(samples=(value if (t, m) == (track, metric) else 0.001,))

    return outcome


def raw(spec: AIDeploymentSpec) -> dict:
    return spec.model_dump(mode="json", by_alias=True, exclude_unset=True)


def custom_spec(
    version: str,
    *,
    stages: list[dict] | None = None,
    progress_deadline: str | None = None,
    error_rate: dict | None = None,
    **kwargs,
) -> AIDeploymentSpec:
    """plan_spec with other stages, progressDeadline or fields of the error-rate metric."""
    content = raw(plan_spec(version, **kwargs))
    if error_rate is not None:
        content["rollout"]["analysis"]["metrics"][0].update(error_rate)
    if stages is not None:
        content["rollout"]["stages"] = stages
    if progress_deadline is not None:
        content["rollout"]["progressDeadline"] = progress_deadline
    return AIDeploymentSpec.model_validate(content)


def start(spec: AIDeploymentSpec, **world) -> World:
    """A world serving `spec` (approved, deployed, Stable)."""
    w = World(spec=spec, now=T0, annotations=approved_for(spec, T0), **world)
    w.run_until(lambda x: x.status.phase == "Stable")
    return w


def apply_approved(world: World, spec: AIDeploymentSpec) -> str:
    """A new spec and its approval in one apply (GitOps); other annotations stay."""
    world.change_spec(spec)
    world.annotations = world.annotations | approved_for(spec, world.now, timedelta(minutes=1))
    return compute_revision(spec)


def rescale(world: World, replicas: int) -> None:
    assert world.spec is not None
    world.change_spec(AIDeploymentSpec.model_validate({**raw(world.spec), "replicas": replicas}))


def annotate(world: World, kind: str, value: str) -> None:
    world.annotations = world.annotations | {f"aigate.dev/{kind}": value}


def canary_running(world: World) -> bool:
    r = world.status.rollout
    return r is not None and bool(r.ready_since)


def cond(world_or_status, type_: str):
    status = getattr(world_or_status, "status", world_or_status)
    found = get_condition(status.conditions, type_)
    assert found is not None, f"no {type_} condition"
    return found


def at(text: str) -> datetime:
    return parse_rfc3339(text)


def entries(world: World, reason: str, revision: str | None = None) -> list:
    return [
        h
        for h in world.history()
        if h.reason == reason and (revision is None or h.revision == revision)
    ]


def moves(world: World, since: int = 0) -> list[tuple[str, str, str, str]]:
    """(from, to, reason, revision) of every phase change recorded since decision `since`."""
    return [
        (h.from_phase, h.to_phase, h.reason, h.revision)
        for d in world.decisions[since:]
        for h in d.new_history
        if h.from_phase != h.to_phase
    ]


def stable_applies(world: World, since: int = 0) -> list[rollout.ApplyDeployment]:
    return [
        a
        for d in world.decisions[since:]
        for a in d.actions
        if isinstance(a, rollout.ApplyDeployment) and a.track == "stable"
    ]


class Recorder:
    """Steps the world and keeps every action applied to it (world.applied is per step)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.applied: list[rollout.Action] = []

    def step(self, advance: timedelta = timedelta(seconds=5)) -> rollout.Decision:
        decision = self.world.step(advance)
        self.applied.extend(self.world.applied)
        return decision

    def until(self, predicate, advance: timedelta = timedelta(seconds=5), limit: int = 400):
        for _ in range(limit):
            if predicate(self.world):
                return
            self.step(advance)
        raise AssertionError(f"not reached; phase {self.world.status.phase}")

    def stable_revisions(self) -> list[str]:
        return [
            a.revision
            for a in self.applied
            if isinstance(a, rollout.ApplyDeployment) and a.track == "stable"
        ]


# ---- a. a new approved revision during a promotion ------------------------------------------


def test_a_revision_approved_during_a_promotion_passes_its_own_stages():
    world = serving(monitor="5m")
    v1 = world.stable.revision
    v2 = upgrade(world, monitor="5m")
    world.run_until(lambda w: w.status.phase == "Promoting")
    world.speed = 1  # the stable Deployment rolls one pod per tick
    world.step()
    assert world.stable.revision == v2 and not world.stable.rolled_out  # stable still rolling
    rec = Recorder(world)
    since = len(world.decisions)
    v3 = apply_approved(world, plan_spec("2.6.0", monitor="5m"))  # spec and approval at once

    # The promotion of v2 completes with v2's own template; v3 waits, no canary meanwhile.
    rec.until(lambda w: w.status.phase == "Verifying")
    assert world.status.serving.revision == v2 and world.status.previous.revision == v1
    assert world.status.watch.revision == v2 and world.stable.revision == v2
    assert world.canary is None and world.status.rollout is None
    assert set(rec.stable_revisions()) <= {v2}
    assert world.stable.template == raw(plan_spec("2.5.0", monitor="5m"))["template"]
    assert moves(world, since) == [("Promoting", "Verifying", "Promoted", v2)]

    # The watch is the served version's (v2's); its breach returns v1, which truly served last.
    world.outcome = failing_on("stable")
    rec.until(lambda w: w.status.phase == "RollingBack")
    rollback = world.status.rollback
    assert (rollback.revision, rollback.target.revision) == (v2, v1)
    assert rollback.reason == "PostPromotionBreach"
    world.outcome = healthy
    rec.until(lambda w: w.status.phase == "Verifying" and w.status.serving.revision == v3)

    # v3 went through every one of its own stages beside v1 before it reached stable.
    changes = moves(world, since)
    assert changes[1:4] == [
        ("Verifying", "RollingBack", "PostPromotionBreach", v2),
        ("RollingBack", "RolledBack", "RollbackCompleted", v2),
        ("RolledBack", "Progressing", "RolloutStarted", v3),
    ]
    started = entries(world, "RolloutStarted", v3)
    assert len(started) == 1 and "beside version 2.4.0" in started[0].message
    assert [h.stage for h in entries(world, "StagePassed", v3)] == [
        "canary-10",
        "canary-50",
        "full",
    ]
    assert changes[-2:] == [
        ("Progressing", "Promoting", "AllStagesPassed", v3),
        ("Promoting", "Verifying", "Promoted", v3),
    ]
    passed_at = next(
        i
        for i, d in enumerate(world.decisions)
        if any(h.reason == "AllStagesPassed" and h.revision == v3 for h in d.new_history)
    )
    first_v3_on_stable = next(
        i
        for i, d in enumerate(world.decisions)
        if any(
            isinstance(a, rollout.ApplyDeployment) and a.track == "stable" and a.revision == v3
            for a in d.actions
        )
    )
    assert first_v3_on_stable >= passed_at
    # v3's own watch follows, with v1 (what truly served before it) as its rollback target.
    assert world.status.watch.revision == v3 and world.status.previous.revision == v1
    assert world.status.rolled_back_revisions == [v2]

    # Without a watch: v2 serves once rolled out, and v3's canary runs against v2, which is
    # then what a failed v3 returns to.
    world = serving()
    v2 = upgrade(world)
    world.run_until(lambda w: w.status.phase == "Promoting")
    world.speed = 1
    world.step()
    since = len(world.decisions)
    v3 = apply_approved(world, plan_spec("2.6.0"))
    world.run_until(lambda w: w.status.stage == "canary-50")
    assert moves(world, since) == [
        ("Promoting", "Stable", "Promoted", v2),
        ("Stable", "Progressing", "RolloutStarted", v3),
    ]
    assert world.stable.revision == v2 and world.stable.rolled_out
    world.outcome = failing_on("canary")
    world.run_until(lambda w: w.status.phase == "RolledBack")
    assert world.status.last_rollback.revision == v3
    assert world.status.last_rollback.to_revision == v2 and world.stable.revision == v2
    assert all(a.revision == v2 for a in stable_applies(world, since))


# ---- b. the progress deadline during a long stage -----------------------------------------

LONG_STAGE = [
    {"name": "canary-50", "weight": 50, "duration": "10m"},
    {"name": "full", "weight": 100},
]


def in_long_stage(minutes: int) -> World:
    """v2's canary-50 stage (10m) has run `minutes` with its canary rolled out; progressDeadline
    is 2m and pods become Ready one per tick."""
    world = start(custom_spec("2.4.0", stages=LONG_STAGE, progress_deadline="2m"))
    apply_approved(world, custom_spec("2.5.0", stages=LONG_STAGE, progress_deadline="2m"))
    world.speed = 1
    world.run_until(canary_running)
    ready_at = world.now
    world.run_until(
        lambda w: w.now >= ready_at + timedelta(minutes=minutes), advance=timedelta(seconds=20)
    )
    assert world.status.phase == "Progressing" and world.status.stage == "canary-50"
    return world


def test_b_scaling_or_a_late_pod_restart_does_not_exceed_the_progress_deadline():
    world = in_long_stage(6)  # 6m into the stage: three times progressDeadline
    v2 = world.status.rollout.candidate.revision
    rescale(world, 8)  # the canary is asked for 4 pods instead of 2
    scaled_at = world.now
    world.step(timedelta(seconds=20))
    assert world.status.rollout.canary_replicas == 4
    assert at(world.status.rollout.waiting_since) == scaled_at  # the deadline starts again here
    assert cond(world, "Reconciling").reason == "CanaryStarting"
    world.run_until(canary_running, advance=timedelta(seconds=20))
    assert world.canary.replicas == 4 and world.stable.replicas == 8

    world.run_until(
        lambda w: w.now >= scaled_at + timedelta(minutes=2), advance=timedelta(seconds=20)
    )
    world.flap("canary", 1)  # one canary pod restarts late in the stage (8m+ in)
    lost_at = world.now
    world.step(timedelta(seconds=20))
    rollout_state = world.status.rollout
    assert not rollout_state.ready_since and at(rollout_state.waiting_since) == lost_at
    world.run_until(
        lambda w: w.status.phase != "Progressing" or w.status.stage != "canary-50",
        advance=timedelta(seconds=20),
    )
    assert world.status.stage == "full"
    world.run_until(lambda w: w.status.phase == "Stable", advance=timedelta(seconds=20))
    assert world.stable.revision == v2 and world.stable.replicas == 8
    assert not entries(world, "ProgressDeadlineExceeded")

    # The deadline still holds, counted from the moment of the change: a canary asked for a
    # new size late in a stage that never gets there is rolled back 2m after being asked.
    world = in_long_stage(6)
    world.canary_becomes_ready = False
    rescale(world, 8)
    asked_at = world.now
    world.run_until(lambda w: w.status.phase != "Progressing", advance=timedelta(seconds=20))
    (exceeded,) = entries(world, "ProgressDeadlineExceeded")
    assert exceeded.to_phase == "RollingBack"
    assert (
        asked_at + timedelta(minutes=2)
        < at(exceeded.time)
        <= asked_at + timedelta(minutes=2, seconds=20)
    )
    assert "canary 2/4 Ready after 2m20s in stage canary-50" in exceeded.message
    assert "over progressDeadline 2m" in exceeded.message


# ---- c. counters and clocks survive a readiness blip --------------------------------------


class Switch:
    """Prometheus as the test sets it: `canary_error` is what error-rate returns on canary."""

    def __init__(self) -> None:
        self.canary_error: QueryOutcome = HEALTHY

    def __call__(self, track: str, metric: str, at: datetime) -> QueryOutcome:
        return self.canary_error if (track, metric) == ("canary", "error-rate") else HEALTHY


def counters(world: World, metric: str = "error-rate"):
    return world.status.rollout.analysis.metrics[metric]


def blip(world: World) -> timedelta:
    """One canary pod NotReady for a tick; returns how long the canary was not rolled out."""
    world.flap("canary", 1)
    lost = world.now
    world.step(timedelta(seconds=10))
    assert not world.status.rollout.ready_since
    world.run_until(canary_running, advance=timedelta(seconds=10))
    return at(world.status.rollout.ready_since) - lost


def test_c_counters_and_clocks_survive_a_readiness_blip():
    world = in_long_stage(1)
    prometheus = world.outcome = Switch()
    ready_since = at(world.status.rollout.ready_since)
    fail = QueryOutcome(samples=(0.5,))

    blips = timedelta(0)
    for failures in (1, 2):  # failed measurements apart, each followed by passes and a blip
        prometheus.canary_error = fail
        world.run_until(
            lambda w, n=failures: counters(w).failures == n, advance=timedelta(seconds=10)
        )
        prometheus.canary_error = HEALTHY
        world.run_until(
            lambda w: counters(w).consecutive_failures == 0, advance=timedelta(seconds=10)
        )
        before = counters(world).model_copy()
        ran = world.now - at(world.status.rollout.ready_since)
        elapsed = world.status.rollout.elapsed_seconds
        blips += blip(world)
        kept = counters(world)
        assert (kept.failures, kept.passes, kept.measurements) == (
            before.failures,
            before.passes,
            before.measurements,
        )
        assert world.status.rollout.elapsed_seconds == elapsed + ran.total_seconds()
    assert world.status.phase == "Progressing" and world.status.stage == "canary-50"
    # The stage clock counts all the time the canary was rolled out, blips excluded, and
    # restarted from none of them.
    rollout_state = world.status.rollout
    running = world.now - at(rollout_state.ready_since)
    assert timedelta(seconds=rollout_state.elapsed_seconds) + running == (
        world.now - ready_since - blips
    )
    assert blips > timedelta(0)

    prometheus.canary_error = fail  # the third failed measurement of the stage
    world.run_until(lambda w: w.status.phase == "RollingBack", advance=timedelta(seconds=10))
    (breach,) = entries(world, "AnalysisFailed")
    assert "metric error-rate failed 3 time(s), over failureLimit 2" in breach.message
    assert "last value 0.5, threshold <= 0.01" in breach.message
    trigger = world.status.rollback.trigger
    assert (trigger.kind, trigger.metric, trigger.value, trigger.threshold) == (
        "Metric",
        "error-rate",
        "0.5",
        "<= 0.01",
    )
    verdicts = [
        m.verdict
        for d in world.decisions
        for m in d.new_measurements
        if m.metric == "error-rate" and m.track == "canary" and at(m.time) >= ready_since
    ]
    assert verdicts.count("Fail") == 3 and verdicts[-1] == "Fail"

    # The pause clock: pauseTimeout counts from the first inconclusive measurement, blips
    # included, and the counters that paused the stage are kept.
    world = start(
        custom_spec("2.4.0", stages=LONG_STAGE, pauseTimeout="3m", onPauseTimeout="Rollback")
    )
    apply_approved(
        world,
        custom_spec("2.5.0", stages=LONG_STAGE, pauseTimeout="3m", onPauseTimeout="Rollback"),
    )
    world.speed = 1
    world.run_until(canary_running, advance=timedelta(seconds=10))
    prometheus = world.outcome = Switch()
    prometheus.canary_error = QueryOutcome.failed("Prometheus unreachable: ConnectionError")
    world.run_until(lambda w: w.status.phase == "Paused", advance=timedelta(seconds=10))
    since = world.status.rollout.analysis.inconclusive_since
    streak = counters(world).consecutive_inconclusive
    assert since and streak == 4
    blip(world)
    assert world.status.phase == "Paused"
    assert world.status.rollout.analysis.inconclusive_since == since
    assert counters(world).consecutive_inconclusive >= streak
    world.run_until(lambda w: w.status.phase != "Paused", advance=timedelta(seconds=10))
    (timeout,) = entries(world, "PauseTimeout")
    assert timeout.to_phase == "RollingBack"
    assert (
        at(since) + timedelta(minutes=3)
        < at(timeout.time)
        <= at(since) + timedelta(minutes=3, seconds=40)
    )


# ---- d. the stable Deployment disappears --------------------------------------------------


def test_d_a_vanished_stable_is_recreated_from_its_record_and_never_replaced_by_the_canary():
    world = serving()
    v1 = world.stable.revision
    v1_template = world.stable.template
    v2 = upgrade(world)
    world.speed = 1
    world.run_until(lambda w: w.status.stage == "canary-50" and canary_running(w))
    rec = Recorder(world)
    since = len(world.decisions)
    world.delete_child("stable")
    rec.step()
    (recreated,) = entries(world, "StableRecreated")
    assert (recreated.revision, recreated.version) == (v1, "2.4.0")
    assert recreated.from_phase == recreated.to_phase == "Progressing"
    assert (
        "fraud-scorer-stable is gone: recreating version 2.4.0 (revision " + v1 in recreated.message
    )
    assert world.stable.revision == v1 and world.stable.template == v1_template
    assert world.stable.replicas == 4
    # The stage (1m) cannot pass while the serving version is not at full strength.
    while not world.stable.rolled_out:
        assert world.status.phase == "Progressing" and world.status.stage == "canary-50"
        assert cond(world, "Reconciling").reason == "StableRecovering"
        rec.step(timedelta(seconds=30))
    assert set(rec.stable_revisions()) == {v1}
    recovered_at = world.now
    assert recovered_at - at(recreated.time) > timedelta(minutes=1)  # longer than the stage
    rec.until(lambda w: w.status.phase == "Stable")
    assert len(entries(world, "StableRecreated")) == 1
    (passed,) = [h for h in entries(world, "StagePassed", v2) if h.stage == "canary-50"]
    assert at(passed.time) >= recovered_at
    assert moves(world, since)[0] == ("Progressing", "Promoting", "AllStagesPassed", v2)
    assert world.stable.revision == v2

    # Mid-rollback: what served before is recreated from its recorded template, once.
    world = serving()
    v1, v1_template = world.stable.revision, world.stable.template
    v2 = upgrade(world)
    world.run_until(canary_running)
    world.speed = 0  # the rollback's stable apply takes time
    world.outcome = failing_on("canary")
    world.run_until(lambda w: w.status.phase == "RollingBack")
    world.delete_child("stable")
    for _ in range(3):
        world.step()
        assert world.status.phase == "RollingBack"
        assert world.stable.revision == v1 and world.stable.template == v1_template
    world.speed = 1
    world.run_until(lambda w: w.status.phase == "RolledBack")
    (recreated,) = entries(world, "StableRecreated")
    assert (recreated.revision, recreated.from_phase) == (v1, "RollingBack")
    assert world.stable.revision == v1 and world.stable.rolled_out and world.canary is None
    assert world.status.serving.revision == v1 and world.status.rolled_back_revisions == [v2]


# ---- e. promote requests are bound to their rollout and stage -------------------------------


def request_entries(world: World, kind: str) -> list[str]:
    return [
        h.message
        for h in entries(world, "RequestHandled")
        if h.message.startswith(f"aigate.dev/{kind}=")
    ]


def test_e_a_promote_counts_only_for_its_rollout_and_stage_and_expires_with_it():
    world = serving(manual=True)
    v2 = upgrade(world, manual=True)
    world.run_until(canary_running)
    first = request("promote", v2, "canary-50")
    annotate(world, "promote", first)  # for the rollout in flight (v2), stage canary-50
    world.step()
    assert world.status.requests.promote is None  # waits for v2's canary-50
    v3 = apply_approved(world, plan_spec("2.6.0", manual=True))
    world.step()
    assert world.status.last_transition.reason == "CanarySuperseded"
    promote = world.status.requests.promote
    assert promote.value == first and promote.by == "approver"
    assert promote.outcome == (
        f"expired: the rollout of revision {v2} ended (superseded) before the request was used"
    )
    assert request_entries(world, "promote") == [
        f"aigate.dev/promote={first!r} (by approver): {promote.outcome}"
    ]

    # v3's manual stage waits for a request of its own, the old value still annotated.
    world.run_until(lambda w: w.status.phase == "Paused")
    assert (world.status.stage, cond(world, "Reconciling").reason) == (
        "canary-50",
        "AwaitingPromotion",
    )
    for _ in range(10):
        world.step(timedelta(minutes=1))
        assert world.status.phase == "Paused" and world.status.stage == "canary-50"
    annotate(world, "promote", request("promote", v2, "canary-50", "again"))  # another revision
    world.step()
    assert world.status.requests.promote.outcome == f"ignored: it names another revision than {v3}"
    annotate(world, "promote", request("promote", v3, "canary-10"))  # a stage already passed
    world.step()
    assert world.status.requests.promote.outcome == "ignored: stage canary-10 has already passed"
    assert world.status.phase == "Paused" and world.status.stage == "canary-50"
    annotate(world, "promote", request("promote", v3, "canary-50", "looks good"))
    world.run_until(lambda w: w.status.phase == "Stable")
    assert world.stable.revision == v3
    assert (
        world.status.requests.promote.outcome == f"promoting past stage canary-50 of revision {v3}"
    )

    # A promote made for v4's canary-50 expires when v4 is aborted; retried, v4's rollout
    # waits at canary-50 for a new request although the very same value is still annotated.
    v4 = apply_approved(world, plan_spec("2.7.0", manual=True))
    world.run_until(canary_running)
    annotate(world, "promote", request("promote", v4, "canary-50"))
    annotate(world, "abort", request("abort", v4, text="INC-7", by="sre"))
    world.step()
    assert world.status.phase == "RollingBack"
    assert world.status.requests.promote.outcome.startswith(
        f"expired: the rollout of revision {v4} ended (AbortRequested)"
    )
    world.run_until(lambda w: w.status.phase == "RolledBack")
    annotate(world, "retry", request("retry", v4, text="INC-7 fixed"))
    world.run_until(lambda w: w.status.phase == "Paused", limit=100)
    assert world.status.stage == "canary-50" and world.status.rollout.candidate.revision == v4
    for _ in range(10):
        world.step(timedelta(minutes=1))
        assert world.status.phase == "Paused" and world.stable.revision == v3
    assert world.annotations["aigate.dev/promote"] == request("promote", v4, "canary-50")
    assert len(request_entries(world, "promote")) == 5

    # A promote naming no revision (here written during a post-promotion watch) never
    # counts, not even for the revision whose canary starts when the watch ends.
    world = serving(manual=True, monitor="5m")
    v2 = upgrade(world, manual=True, monitor="5m")
    world.run_until(lambda w: w.status.phase == "Paused")
    annotate(world, "promote", request("promote", v2, "canary-50"))
    world.run_until(lambda w: w.status.phase == "Verifying")
    annotate(world, "promote", "canary-50 by=approver go")
    v3 = apply_approved(world, plan_spec("2.6.0", manual=True, monitor="5m"))  # waits
    world.step()
    assert world.status.requests.promote.value == "canary-50 by=approver go"
    assert world.status.requests.promote.outcome.startswith("ignored: expected '<stage>@<full")
    world.run_until(lambda w: w.status.phase == "Paused", advance=timedelta(seconds=30))
    assert world.status.rollout.candidate.revision == v3 and world.status.stage == "canary-50"
    assert cond(world, "Reconciling").reason == "AwaitingPromotion"


# ---- f. a rollback always completes ---------------------------------------------------------


def test_f_a_refused_rollback_is_retried_with_backoff_and_always_completes():
    world = serving(monitor="10m")
    v1 = world.stable.revision
    v2 = upgrade(world, monitor="10m")
    world.run_until(lambda w: w.status.phase == "Verifying")
    annotate(world, "abort", "by=sre INC-9")  # the watch's rollback needs v1 applied to stable
    refused = "HTTP 422: admission webhook denied the request"
    requeues = []
    for attempt in range(1, 9):
        world.faults.reject_next_apply, world.faults.reject_track = refused, "stable"
        if attempt == 4:  # requests that arrive meanwhile
            annotate(world, "promote", request("promote", v2, "full"))
            annotate(world, "abort", "by=sre INC-10")
            annotate(world, "retry", request("retry", v2, text="INC-9 fixed"))
        world.step(timedelta(0))  # the retry is refused at once
        assert world.status.phase == "RollingBack"
        assert world.status.apply_error.attempts == attempt
        # Until the backoff has passed, the refused apply is not tried again (the operator's
        # own status write wakes it at once, so the requeue alone would not hold it back).
        held = rollout.decide(world.inputs())
        assert not [a for a in held.actions if getattr(a, "track", "") == "stable"]
        requeues.append(held.requeue_after)
        world.now += timedelta(seconds=held.requeue_after)
        assert world.stable.revision == v2  # nothing got through yet
        if attempt > 1:
            stalled = cond(world, "Stalled")
            assert (stalled.status, stalled.reason) == ("True", "RollbackBlocked")
            assert stalled.message == (
                f"abort requested ('by=sre INC-9' by sre) during the watch; restoring version "
                f"2.4.0 (revision "
                f"{v1}): 0/4 Ready; the API server refused the stable workload ({refused}); "
                f"retrying with backoff"
            )
            assert cond(world, "Ready").status == "False"
    assert requeues == [10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]
    assert world.status.rollback.revision == v2 and world.status.rollback.target.revision == v1
    assert world.status.requests.promote.outcome == "ignored: a rollback is in progress"
    assert world.status.requests.abort.value == "by=sre INC-10"
    assert world.status.requests.abort.outcome == "ignored: a rollback is already in progress"
    assert world.status.requests.retry is None  # a retry waits for the rollback's end
    assert "Failed" not in [h.to_phase for h in world.history()]

    since = len(world.decisions)
    world.run_until(lambda w: w.status.last_rollback is not None)
    assert (
        world.status.last_rollback.revision == v2 and world.status.last_rollback.to_revision == v1
    )
    assert world.status.last_rollback.trigger.request == "by=sre INC-9"
    assert world.stable.revision == v1 and world.stable.rolled_out
    assert world.service == (v1, 8080, 8080)
    assert world.canary.revision == v2 and world.canary.replicas == 1  # the retry's canary
    assert moves(world, since)[:2] == [
        ("RollingBack", "RolledBack", "RollbackCompleted", v2),
        ("RolledBack", "Progressing", "RolloutStarted", v2),
    ]
    assert world.status.requests.retry.outcome == f"retrying revision {v2}"
    assert world.status.serving.revision == v1 and world.status.rollout.candidate.revision == v2
    assert world.status.apply_error is None


# ---- g. Service settings belong to the serving revision --------------------------------------


def test_g_a_canary_never_changes_the_service_and_a_rollback_restores_it():
    world = serving(monitor="5m")  # port 8080
    v1 = world.stable.revision
    assert world.service == (v1, 8080, 8080)
    v2 = upgrade(world, monitor="5m", port=9090)
    world.speed = 1  # slow pods: each phase lasts several reconciles
    seen: list[tuple[str, tuple]] = []
    while world.status.phase != "Verifying":
        world.step(timedelta(seconds=10))
        seen.append((world.status.phase, world.service))
        assert len(seen) < 200
    in_canary = {service for phase, service in seen if phase in ("Progressing", "Paused")}
    assert in_canary == {(v1, 8080, 8080)}
    assert world.service == (v2, 9090, 9090)  # the candidate owns the traffic once promoted
    promoting = [service for phase, service in seen if phase == "Promoting"]
    assert len(promoting) > 1 and set(promoting) == {(v2, 9090, 9090)}

    world.outcome = failing_on("stable")  # the watch breaches: v1 returns with its Service
    world.run_until(lambda w: w.status.phase == "RolledBack")
    assert world.service == (v1, 8080, 8080)
    assert world.stable.revision == v1 and world.stable.rolled_out

    # A canary that breaches leaves the Service as it was all along.
    world.outcome = healthy
    v3 = upgrade(world, "2.6.0", port=7070)
    services = set()
    world.run_until(canary_running)
    world.outcome = failing_on("canary")
    while world.status.phase != "RolledBack":
        world.step(timedelta(seconds=10))
        services.add(world.service)
    assert services == {(v1, 8080, 8080)}
    assert world.status.last_rollback.revision == v3 and world.status.serving.revision == v1


# ---- h. a spec the operator cannot use -------------------------------------------------------


def test_h_an_unusable_spec_cancels_a_canary_but_lets_a_rollback_or_promotion_complete():
    world = serving()
    v1, v1_template = world.stable.revision, world.stable.template
    v2 = upgrade(world)
    world.speed = 1
    world.run_until(lambda w: w.status.stage == "canary-50" and canary_running(w))
    since = len(world.decisions)
    world.change_spec(None, BAD_SPEC)
    world.step()
    (cancelled,) = entries(world, "CanaryCancelled")
    assert cancelled.revision == v2 and cancelled.message == (
        f"canary of version 2.5.0 (revision {v2}) cancelled: spec is invalid: {BAD_SPEC}"
    )
    assert moves(world, since) == [("Progressing", "Failed", "InvalidSpec", "")]
    assert world.status.phase == "Failed" and world.status.rollout is None
    for _ in range(5):
        world.step(timedelta(seconds=30))
    assert world.status.phase == "Failed" and world.canary is None
    assert world.stable.revision == v1 and world.stable.template == v1_template
    assert world.stable.replicas == 4 and world.stable.rolled_out
    assert not stable_applies(world, since) and world.service == (v1, 8080, 8080)
    stalled = cond(world, "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "InvalidSpec")
    assert stalled.message == (
        f"spec is invalid: {BAD_SPEC}; version 2.4.0 (revision {v1}) keeps serving"
    )
    authorized = cond(world, "Authorized")
    assert (authorized.status, authorized.message) == ("False", f"spec is invalid: {BAD_SPEC}")
    assert world.status.serving.revision == v1 and world.status.rolled_back_revisions == []

    # A rollback in progress completes, then the resource shows Failed.
    world = serving()
    v1 = world.stable.revision
    v2 = upgrade(world)
    world.run_until(canary_running)
    world.speed = 1
    world.outcome = failing_on("canary")
    world.run_until(lambda w: w.status.phase == "RollingBack")
    since = len(world.decisions)
    world.change_spec(None, BAD_SPEC)
    world.run_until(lambda w: w.status.phase != "RollingBack")
    assert moves(world, since) == [
        ("RollingBack", "RolledBack", "RollbackCompleted", v2),
        ("RolledBack", "Failed", "InvalidSpec", ""),
    ]
    assert world.stable.revision == v1 and world.stable.rolled_out and world.canary is None
    assert world.status.rolled_back_revisions == [v2]
    assert cond(world, "Stalled").reason == "InvalidSpec"

    # Decided differently from the issue (docs/decisions/0007): a promotion in progress
    # completes (the candidate passed its plan with approved content), then Failed shows.
    world = serving()
    v2 = upgrade(world)
    world.run_until(lambda w: w.status.phase == "Promoting")
    world.speed = 1
    since = len(world.decisions)
    world.change_spec(None, BAD_SPEC)
    world.run_until(lambda w: w.status.phase != "Promoting")
    assert moves(world, since) == [
        ("Promoting", "Stable", "Promoted", v2),
        ("Stable", "Failed", "InvalidSpec", ""),
    ]
    assert world.stable.revision == v2 and world.stable.rolled_out
    assert world.status.serving.revision == v2
    assert cond(world, "Stalled").message == (
        f"spec is invalid: {BAD_SPEC}; version 2.5.0 (revision {v2}) keeps serving"
    )


# ---- i. the post-promotion watch: blind, timed out, never skipped ----------------------------

DOWN = QueryOutcome.failed("Prometheus unreachable: ConnectionError")


def stable_down(track: str, metric: str, at: datetime) -> QueryOutcome:
    return DOWN if track == "stable" else HEALTHY


def watch_inconclusive(world: World) -> int:
    metric = world.status.watch.analysis.metrics.get("error-rate")
    return metric.consecutive_inconclusive if metric is not None else 0


def test_i_the_watch_says_when_it_cannot_see_honours_pause_timeout_and_is_never_skipped():
    world = serving(monitor="5m")
    v2 = upgrade(world, monitor="5m")
    world.run_until(lambda w: w.status.phase == "Verifying")
    until = at(world.status.watch.until)
    world.outcome = stable_down
    events_from = len(world.events())
    for inconclusive in range(1, 5):  # inconclusiveLimit 3: the 4th in a row is too many
        world.run_until(
            lambda w, n=inconclusive: watch_inconclusive(w) == n, advance=timedelta(seconds=10)
        )
        reconciling = cond(world, "Reconciling")
        assert reconciling.reason == ("WatchInconclusive" if inconclusive == 4 else "Verifying")
    assert reconciling.message == (
        "post-promotion watch cannot conclude: metric error-rate: 4 inconclusive measurements "
        "in a row (inconclusiveLimit 3); last: query failed: Prometheus unreachable: "
        "ConnectionError; watch held until data returns or a person acts (aigate.dev/abort)"
    )
    world.run_until(lambda w: w.now > until + timedelta(minutes=5), advance=timedelta(seconds=30))
    assert world.status.phase == "Verifying" and world.status.watch.revision == v2  # held
    warnings = [e for e in world.events()[events_from:] if e.reason == "WatchInconclusive"]
    assert len(warnings) == 1 and warnings[0].type == "Warning"
    world.outcome = healthy  # data returns: the watch completes on what it saw
    world.run_until(lambda w: w.status.phase == "Stable", advance=timedelta(seconds=30))
    (completed,) = entries(world, "WatchCompleted", v2)
    assert {e.verdict for e in completed.evidence} == {"Pass"}

    # pauseTimeout with onPauseTimeout Rollback: a blind watch returns the previous version.
    world = serving(monitor="10m", pauseTimeout="2m", onPauseTimeout="Rollback")
    v1 = world.stable.revision
    v2 = upgrade(world, monitor="10m", pauseTimeout="2m", onPauseTimeout="Rollback")
    world.run_until(lambda w: w.status.phase == "Verifying")
    world.outcome = stable_down
    world.run_until(
        lambda w: w.status.watch.analysis.inconclusive_since, advance=timedelta(seconds=10)
    )
    blind_since = at(world.status.watch.analysis.inconclusive_since)
    world.run_until(lambda w: w.status.phase != "Verifying", advance=timedelta(seconds=10))
    (timeout,) = entries(world, "PauseTimeout", v2)
    assert timeout.to_phase == "RollingBack"
    assert (
        blind_since + timedelta(minutes=2)
        < at(timeout.time)
        <= blind_since + timedelta(minutes=2, seconds=30)
    )
    assert world.status.rollback.target.revision == v1
    world.run_until(lambda w: w.status.phase == "RolledBack")
    assert world.stable.revision == v1 and world.status.last_rollback.reason == "PauseTimeout"

    # An edit reverted during the promotion does not skip the watch.
    world = serving(monitor="5m")
    v2_spec = plan_spec("2.5.0", monitor="5m")
    v2 = upgrade(world, monitor="5m")
    world.run_until(lambda w: w.status.phase == "Promoting")
    world.speed = 1
    world.step()
    apply_approved(world, plan_spec("2.6.0", monitor="5m"))
    world.step()
    assert world.status.phase == "Promoting" and not world.stable.rolled_out
    world.change_spec(v2_spec)  # reverted before the promotion ended
    world.run_until(lambda w: w.status.phase != "Promoting")
    assert world.status.phase == "Verifying" and world.status.watch.revision == v2
    promoted_at = world.now
    world.run_until(lambda w: w.status.phase != "Verifying", advance=timedelta(seconds=30))
    (completed,) = entries(world, "WatchCompleted", v2)
    assert at(completed.time) >= promoted_at + timedelta(minutes=5) - timedelta(seconds=5)
    assert world.status.phase == "Stable" and world.stable.revision == v2


# ---- j. progressDeadline bounds a first version and a promotion ------------------------------


def test_j_a_stuck_first_version_or_promotion_is_stalled_by_progress_deadline_and_keeps_trying():
    spec = custom_spec("2.4.0", progress_deadline="2m")
    v1 = compute_revision(spec)
    world = World(spec=spec, now=T0, annotations=approved_for(spec, T0), speed=0)
    world.step()
    assert world.status.phase == "Deploying"
    world.run_until(lambda w: w.now > T0 + timedelta(minutes=2), advance=timedelta(seconds=15))
    assert cond(world, "Reconciling").reason == "Deploying"  # not yet: the deadline is 2m
    assert cond(world, "Stalled").status == "False"
    decision = world.step(timedelta(seconds=15))
    stalled = cond(world, "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "ProgressDeadlineExceeded")
    assert stalled.message == (
        f"deploying version 2.4.0 (revision {v1}): stable 0/4 Ready after 2m5s, over "
        f"progressDeadline 2m; still waiting for the Deployment"
    )
    assert world.status.phase == "Deploying"
    assert decision.requeue_after == rollout.REQUEUE_WHILE_CHANGING  # still trying
    world.delete_child("stable")  # and still putting it there
    world.step()
    assert world.stable.revision == v1 and world.status.phase == "Deploying"
    world.speed = 1
    world.run_until(lambda w: w.status.phase == "Stable")
    assert world.stable.revision == v1 and world.stable.rolled_out
    assert world.status.last_transition.reason == "Promoted"

    # A promotion stuck rolling the stable Deployment: the same.
    v2 = apply_approved(world, custom_spec("2.5.0", progress_deadline="2m"))
    world.speed = 1000
    world.run_until(lambda w: w.status.phase == "Promoting")
    world.speed = 0
    passed_at = at(world.status.last_transition.time)
    world.run_until(
        lambda w: cond(w, "Stalled").status == "True", advance=timedelta(seconds=15), limit=20
    )
    assert world.status.phase == "Promoting"
    stalled = cond(world, "Stalled")
    waited = at(stalled.last_transition_time) - passed_at
    assert timedelta(minutes=2) < waited <= timedelta(minutes=2, seconds=15)
    assert stalled.reason == "ProgressDeadlineExceeded"
    assert stalled.message == (
        f"promoting version 2.5.0 (revision {v2}): stable 0/4 Ready after "
        f"{format_duration(waited)}, over progressDeadline 2m; still waiting for the Deployment"
    )
    assert world.stable.ready_replicas == 4  # the old pods keep serving meanwhile
    assert world.stable.revision == v2 and world.status.serving.revision == v1
    world.speed = 1
    world.run_until(lambda w: w.status.phase == "Stable")
    assert world.status.serving.revision == v2 and world.stable.rolled_out
    assert cond(world, "Stalled").status == "False"


# ---- k. after a rollback, the conditions name the revision and the trigger --------------------


def assert_rolled_back(world: World, revision: str, why: str, serving_revision: str) -> None:
    message = (
        f"revision {revision} was rolled back ({why}); version 2.4.0 (revision "
        f"{serving_revision}) keeps serving. Change the spec, or annotate "
        f"aigate.dev/retry='@{revision} by=<you> <why>' to try this revision again"
    )
    assert world.status.phase == "RolledBack"
    for type_, status in (("Ready", "False"), ("Stalled", "True")):
        condition = cond(world, type_)
        assert (condition.status, condition.reason, condition.message) == (
            status,
            "RolledBack",
            message,
        )
    (rolling_back,) = [
        h for h in world.history() if h.to_phase == "RollingBack" and h.revision == revision
    ]
    (completed,) = entries(world, "RollbackCompleted", revision)
    assert rolling_back.message.startswith(
        f"rolling back version {completed.version} (revision {revision})"
    )
    assert completed.message.startswith(
        f"version {completed.version} (revision {revision}) rolled back ({why}); version 2.4.0 "
        f"(revision {serving_revision}) serving with 4/4 Ready"
    )


def test_k_after_a_rollback_the_conditions_name_the_revision_and_the_trigger():
    world = serving()
    v1 = world.stable.revision
    v2 = upgrade(world)
    world.outcome = failing_on("canary", value=0.05)
    world.run_until(lambda w: w.status.phase == "RolledBack")
    why = (
        "AnalysisFailed: metric error-rate failed 3 time(s), over failureLimit 2: last value "
        "0.05, threshold <= 0.01"
    )
    assert_rolled_back(world, v2, why, v1)
    trigger = world.status.last_rollback.trigger
    assert (trigger.metric, trigger.value, trigger.threshold) == ("error-rate", "0.05", "<= 0.01")

    world.outcome = healthy
    v3 = upgrade(world, "2.6.0")
    world.canary_becomes_ready = False
    world.run_until(lambda w: w.status.last_rollback.revision == v3, advance=timedelta(seconds=30))
    detail = world.status.last_rollback.trigger.detail
    assert world.status.last_rollback.trigger.kind == "Deadline"
    assert detail.startswith("canary 0/1 Ready after 10m") and detail.endswith(
        "in stage canary-10 (1/3, weight 10%), over progressDeadline 10m"
    )
    assert_rolled_back(world, v3, f"ProgressDeadlineExceeded: {detail}", v1)

    world.canary_becomes_ready = True
    v4 = upgrade(world, "2.7.0")
    world.run_until(canary_running)
    annotate(world, "abort", "by=sre INC-42 latency complaints")
    world.run_until(lambda w: w.status.last_rollback.revision == v4)
    assert_rolled_back(
        world, v4, "AbortRequested: aigate.dev/abort='by=sre INC-42 latency complaints' by sre", v1
    )
    assert world.status.rolled_back_revisions == [v2, v3, v4]

    # The records name the revision rolled back, not the one the spec asks for meanwhile.
    world = serving(monitor="10m")
    v1 = world.stable.revision
    v2 = upgrade(world, monitor="10m")
    world.run_until(lambda w: w.status.phase == "Verifying")
    world.change_spec(plan_spec("9.9.9"))  # not approved: waits for the watch
    world.step()
    assert world.status.phase == "Verifying"
    world.outcome = failing_on("stable")
    since = len(world.decisions)
    world.run_until(lambda w: w.status.phase not in ("Verifying", "RollingBack"))
    v9 = world.status.revision
    assert moves(world, since) == [
        ("Verifying", "RollingBack", "PostPromotionBreach", v2),
        ("RollingBack", "RolledBack", "RollbackCompleted", v2),
        ("RolledBack", "AwaitingApproval", "ApprovalRequired", v9),
    ]
    completed = entries(world, "RollbackCompleted", v2)[0]
    assert completed.version == "2.5.0" and v9 not in completed.message
    assert world.status.last_rollback.revision == v2 and world.status.rolled_back_revisions == [v2]
    assert world.stable.revision == v1


# ---- l. request values are remembered; every rolled-back revision stays refused ---------------


def without(world: World, kind: str) -> None:
    world.annotations = {k: v for k, v in world.annotations.items() if k != f"aigate.dev/{kind}"}


STOP = "by=sre stop"


def test_l_handled_values_are_never_acted_on_again_and_rolled_back_revisions_stay_refused():
    world = serving()
    specs = {v: plan_spec(v) for v in ("2.5.0", "2.6.0", "2.7.0")}
    v2 = apply_approved(world, specs["2.5.0"])
    world.run_until(canary_running)
    annotate(world, "abort", STOP)
    world.run_until(lambda w: w.status.phase == "RolledBack")
    handled_at = world.status.requests.abort.handled_at
    v3 = apply_approved(world, specs["2.6.0"])
    world.outcome = failing_on("canary")
    world.run_until(lambda w: w.status.last_rollback.revision == v3)
    assert world.status.rolled_back_revisions == [v2, v3]
    assert value_digest("abort", STOP) in world.status.handled_requests

    # Git removes the abort, then a revert brings the same value back mid-canary: ignored.
    world.outcome = healthy
    v4 = apply_approved(world, specs["2.7.0"])
    without(world, "abort")
    world.run_until(canary_running)
    annotate(world, "abort", STOP)
    world.run_until(lambda w: w.status.phase == "Stable")
    assert world.stable.revision == v4 and world.status.last_rollback.revision == v3
    assert world.status.requests.abort.handled_at == handled_at
    assert len(request_entries(world, "abort")) == 1

    # Every rolled-back revision stays refused, not only the latest one.
    for spec, revision in ((specs["2.5.0"], v2), (specs["2.6.0"], v3)):
        apply_approved(world, spec)
        world.step()
        assert world.status.phase == "RolledBack" and world.stable.revision == v4
        assert world.status.last_transition.reason == "RevisionRolledBack"
        assert cond(world, "Stalled").message.startswith(f"revision {revision} was rolled back")
        assert world.canary is None
    r1 = request("retry", v3, text="R1")
    annotate(world, "retry", r1)  # retries the spec's revision (v3) only
    world.run_until(lambda w: w.status.phase == "Stable" and w.stable.revision == v3)
    assert world.status.requests.retry.outcome == f"retrying revision {v3}"
    assert world.status.rolled_back_revisions == [v2]

    apply_approved(world, specs["2.5.0"])
    without(world, "retry")
    world.step()
    annotate(world, "retry", r1)  # the same value back through a revert: not a new retry
    for _ in range(5):
        world.step(timedelta(seconds=30))
        assert world.status.phase == "RolledBack" and world.stable.revision == v3
    assert len(request_entries(world, "retry")) == 1
    r2 = request("retry", v2, text="R2")
    annotate(world, "retry", r2)
    world.run_until(lambda w: w.status.phase == "Stable" and w.stable.revision == v2)
    assert world.status.rolled_back_revisions == []
    assert world.status.handled_requests == [
        value_digest("abort", STOP),
        value_digest("retry", r1),
        value_digest("retry", r2),
    ]


# ---- m. verdict policies and consecutive failures ----------------------------------------------

SEVERAL = QueryOutcome(samples=(0.001, 0.002))
EMPTY = QueryOutcome(samples=())
NAN = QueryOutcome(samples=(math.nan,))
PLUS_INF = QueryOutcome(samples=(math.inf,))
MINUS_INF = QueryOutcome(samples=(-math.inf,))


def on_canary_error_rate(outcome: QueryOutcome):
    def serve(track: str, metric: str, at: datetime) -> QueryOutcome:
        return outcome if (track, metric) == ("canary", "error-rate") else HEALTHY

    return serve


def test_m_verdict_policies_and_an_inconclusive_measurement_in_a_failure_streak():
    on_error = MetricSpec.model_validate(
        {"name": "m", "query": "q", "max": 0.01, "onError": "Fail"}
    )
    on_no_data = MetricSpec.model_validate(
        {"name": "m", "query": "q", "max": 0.01, "onNoData": "Fail"}
    )
    down = QueryOutcome.failed("Prometheus unreachable")
    for outcome, error_kind in (
        (SEVERAL, True),
        (PLUS_INF, True),
        (MINUS_INF, True),
        (down, True),
        (EMPTY, False),
        (NAN, False),
    ):
        verdicts = (judge(on_error, outcome).verdict, judge(on_no_data, outcome).verdict)
        assert verdicts == (("Fail", "Inconclusive") if error_kind else ("Inconclusive", "Fail"))
    assert judge(on_error, SEVERAL).reason == "2 series returned; the query must return exactly one"
    assert judge(on_no_data, NAN).reason == "NaN (no data in the window)"

    # Through the simulator: the approved candidate's policy decides rollback or pause.
    world = serving()
    v1 = world.stable.revision
    cases = [  # (policy, what Prometheus returns, expected end of the canary)
        ({"onError": "Fail"}, SEVERAL, "RollingBack"),
        ({"onError": "Fail"}, NAN, "Paused"),
        ({"onNoData": "Fail"}, EMPTY, "RollingBack"),
        ({"onNoData": "Fail"}, PLUS_INF, "Paused"),
    ]
    for number, (policy, outcome, expected) in enumerate(cases):
        world.outcome = healthy
        revision = apply_approved(world, custom_spec(f"3.0.{number}", error_rate=policy))
        world.run_until(
            lambda w, r=revision: canary_running(w) and w.status.rollout.candidate.revision == r
        )
        world.outcome = on_canary_error_rate(outcome)
        world.run_until(lambda w: w.status.phase in ("RollingBack", "Paused"))
        assert world.status.phase == expected, (policy, outcome)
        last = world.status.recent_measurements[-2]
        assert last.metric == "error-rate"
        assert last.verdict == ("Fail" if expected == "RollingBack" else "Inconclusive")
        if expected == "RollingBack":
            assert world.status.rollback.revision == revision
            assert world.status.rollback.reason == "AnalysisFailed"
            world.run_until(lambda w: w.status.phase == "RolledBack")
        else:
            assert world.status.last_transition.reason == "AnalysisInconclusive"
    assert world.stable.revision == world.status.serving.revision == v1

    # consecutiveFailureLimit 3 (failureLimit out of reach): a pass breaks the streak, an
    # inconclusive measurement neither extends nor breaks it.
    fail, script = QueryOutcome(samples=(0.5,)), []
    script += [fail, fail, EMPTY, HEALTHY, fail, fail, EMPTY, fail]
    streak_spec = custom_spec(
        "4.0.0", stages=LONG_STAGE, failureLimit=100, consecutiveFailureLimit=3
    )
    world = start(custom_spec("2.4.0", stages=LONG_STAGE))
    revision = apply_approved(world, streak_spec)
    world.run_until(canary_running)
    served = iter(script)
    world.outcome = lambda t, m, a: next(served) if (t, m) == ("canary", "error-rate") else HEALTHY
    streaks, verdicts = [], []
    while world.status.phase == "Progressing":
        measured = world.status.rollout.analysis.last_measured_at
        world.step(timedelta(seconds=10))
        state = world.status.rollout.analysis if world.status.rollout else None
        if state is not None and state.last_measured_at != measured:
            streaks.append(state.metrics["error-rate"].consecutive_failures)
            verdicts.append(state.metrics["error-rate"].last.verdict)
    assert next(served, None) is None  # the rollback came with the last scripted failure
    assert verdicts == ["Fail", "Fail", "Inconclusive", "Pass", "Fail", "Fail", "Inconclusive"]
    assert streaks == [1, 2, 2, 0, 1, 2, 2]
    assert world.status.phase == "RollingBack" and world.status.rollback.revision == revision
    assert world.status.rollback.message == (
        "metric error-rate failed 3 time(s), over consecutiveFailureLimit 3: last value 0.5, "
        "threshold <= 0.01"
    )


# ---- n. minPassingMeasurements ------------------------------------------------------------------


def lucky_stage(**analysis) -> tuple[World, list[datetime], datetime]:
    """A 10m stage (interval 30s) whose Prometheus is down until 9m40s in, then healthy; runs
    until the stage passed. Returns the world, the times of the passing measurements and
    when the canary was rolled out."""
    spec = custom_spec("2.5.0", stages=LONG_STAGE, inconclusiveLimit=1000, **analysis)
    world = start(custom_spec("2.4.0", stages=LONG_STAGE))
    apply_approved(world, spec)
    world.outcome = lambda t, m, a: DOWN
    world.run_until(canary_running)
    ready_at = at(world.status.rollout.ready_since)
    world.run_until(
        lambda w: w.now >= ready_at + timedelta(minutes=9, seconds=40),
        advance=timedelta(seconds=10),
    )
    assert world.status.phase == "Progressing"  # inconclusiveLimit out of reach: no pause
    world.outcome = healthy
    world.run_until(lambda w: w.status.stage == "full", advance=timedelta(seconds=10))
    passes = [
        at(m.time)
        for d in world.decisions
        for m in d.new_measurements
        if m.metric == "error-rate" and m.track == "canary" and m.verdict == "Pass"
    ]
    return world, passes, ready_at


def test_n_a_mostly_inconclusive_stage_cannot_pass_on_one_lucky_sample():
    analysis = custom_spec("2.5.0", stages=LONG_STAGE).rollout.analysis
    assert min_passing(analysis, timedelta(minutes=10)) == 10  # 20 intervals of 30s, half
    assert min_passing(analysis, timedelta(seconds=45)) == 1  # at least 1
    assert min_passing(analysis, timedelta(0)) == 1
    overridden = analysis.model_copy(update={"min_passing_measurements": 2})
    assert min_passing(overridden, timedelta(minutes=10)) == 2

    world, passes, ready_at = lucky_stage()
    (passed,) = [h for h in world.history() if h.reason == "StagePassed" and h.stage == "canary-50"]
    assert passes[0] >= ready_at + timedelta(minutes=9, seconds=40)  # the first lucky sample
    assert len(passes) == 10 and at(passed.time) == passes[-1]
    assert at(passed.time) >= ready_at + timedelta(minutes=14)  # long after the 10m
    analysing = [
        c.message
        for d in world.decisions
        for c in d.status.conditions
        if c.type == "Reconciling" and c.reason == "Analysing" and "10m done" in c.message
    ]
    assert analysing and all(
        "(each metric needs 10 passing measurement(s))" in m for m in analysing
    )

    world, passes, ready_at = lucky_stage(minPassingMeasurements=2)
    assert passes[0] >= ready_at + timedelta(minutes=9, seconds=40)
    (passed,) = [h for h in world.history() if h.reason == "StagePassed" and h.stage == "canary-50"]
    assert len(passes) == 2 and at(passed.time) == passes[-1]


# ---- o. zero or absurd durations are refused -----------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def with_field(path: tuple, value) -> dict:
    content = raw(plan_spec())
    *parents, last = path
    node = content
    for key in parents:
        node = node[key]
    node[last] = value
    return content


def test_o_zero_or_absurd_durations_are_refused_by_the_models_and_the_crd():
    cases = [
        (("rollout", "analysis", "interval"), "0s", "interval: expected a duration from 1s to 1h"),
        (("rollout", "analysis", "interval"), "2h", "interval: expected a duration from 1s to 1h"),
        (
            ("rollout", "analysis", "prometheus", "timeout"),
            "0s",
            "timeout: expected a duration from 100ms to 5m",
        ),
        (
            ("rollout", "stages", 0, "duration"),
            "1000h",
            "duration: expected a duration from 0s to 720h",
        ),
        (
            ("governance", "approvalTTL"),
            "10000h",
            "approvalTTL: expected a duration from 1m to 2160h",
        ),
        (
            ("rollout", "progressDeadline"),
            "0s",
            "progressDeadline: expected a duration from 1s to 24h",
        ),
    ]
    for path, value, message in cases:
        with pytest.raises(ValidationError, match=re.escape(f"{message}, found '{value}'")):
            AIDeploymentSpec.model_validate(with_field(path, value))
    AIDeploymentSpec.model_validate(with_field(("rollout", "analysis", "interval"), "1h"))  # edge
    assert parse_duration("87600h") == timedelta(days=3650)
    with pytest.raises(ValueError, match=r"duration '87601h' is longer than 3650 days"):
        parse_duration("87601h")
    with pytest.raises(ValueError, match="longer than 3650 days"):
        parse_duration("999999999999h")

    crd = yaml.safe_load((ROOT / "crds" / "aigate.dev_aideployments.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rollout_schema = spec["properties"]["rollout"]
    analysis = rollout_schema["properties"]["analysis"]
    where = {
        "approvalTTL": (spec["properties"]["governance"], "1m", "2160h"),
        "progressDeadline": (rollout_schema, "1s", "24h"),
        "interval": (analysis, "1s", "1h"),
        "pauseTimeout": (analysis, "1s", "720h"),
        "timeout": (analysis["properties"]["prometheus"], "100ms", "5m"),
        "duration": (rollout_schema["properties"]["stages"]["items"], "0s", "720h"),
        "monitorFor": (rollout_schema["properties"]["postPromotion"], "0s", "720h"),
    }
    for field, (schema, low, high) in where.items():
        rules = schema["x-kubernetes-validations"]
        assert {
            "fieldPath": f".{field}",
            "message": f"{field} must be a duration from {low} to {high}",
            "rule": f"!has(self.{field}) || (duration(self.{field}) >= duration('{low}') && "
            f"duration(self.{field}) <= duration('{high}'))",
        } in rules, field


# ---- p. a status the operator cannot read ----------------------------------------------------------


def test_p_an_unreadable_status_is_left_alone_except_for_its_conditions():
    world = serving()
    upgrade(world)
    world.run_until(canary_running)
    world.now += timedelta(minutes=1)  # a measurement is due
    annotate(world, "abort", "by=sre INC-3")  # and a request is waiting
    readable = world.inputs()
    assert rollout.measurement_plan(readable) is not None
    assert rollout.decide(readable).actions  # what a readable status would lead to
    field = "status.rollout.stageIndex: Input should be a valid integer, got 'two'"
    inputs = dataclasses.replace(readable, status_error=field)

    assert rollout.measurement_plan(inputs) is None
    decision = rollout.decide(inputs)
    assert decision.conditions_only
    assert decision.actions == () and decision.events == ()
    assert decision.new_history == () and decision.new_measurements == ()
    assert decision.requeue_after == rollout.REQUEUE_AT_REST
    message = (
        f"status cannot be read ({field}); aigate acts on nothing for this resource and keeps "
        f"its history, requests and approval until the status is repaired by the aigate "
        f"version that wrote it"
    )
    stalled, ready, reconciling = (cond(decision, t) for t in ("Stalled", "Ready", "Reconciling"))
    assert (stalled.status, stalled.reason, stalled.message) == (
        "True",
        "StatusUnreadable",
        message,
    )
    assert (ready.status, ready.reason, ready.message) == ("False", "StatusUnreadable", message)
    assert (reconciling.status, reconciling.reason) == ("False", "")
    assert stalled.observed_generation == world.generation
    # Nothing but the conditions is written: every other field is the model's default.
    assert decision.status.model_dump(exclude={"conditions"}) == AIDeploymentStatus().model_dump(
        exclude={"conditions"}
    )
    assert decision.status.phase == "Pending" and decision.status.history == []


# ---- q. back to the serving revision; scaling ------------------------------------------------------


def test_q_reverting_to_the_serving_revision_needs_no_approval_and_scaling_stays_stable():
    world = serving()
    v1, v1_template = world.stable.revision, world.stable.template
    v1_spec = world.spec
    v2 = upgrade(world)
    world.speed = 1
    world.run_until(canary_running)
    since = len(world.decisions)
    world.change_spec(v1_spec)
    world.annotations = {}  # every annotation removed, approval included
    world.step()
    (cancelled,) = entries(world, "CanaryCancelled", v2)
    assert cancelled.message == (
        f"canary of version 2.5.0 (revision {v2}) cancelled: version 2.4.0 (revision {v1}) serves"
    )
    assert moves(world, since) == [("Progressing", "Stable", "Serving", v1)]
    world.run_until(lambda w: w.canary is None)
    world.step()
    assert world.status.phase == "Stable" and world.status.rollout is None
    assert world.stable.revision == v1 and world.stable.template == v1_template
    assert not stable_applies(world, since)
    authorized = cond(world, "Authorized")
    assert (authorized.status, authorized.message) == (
        "True",
        f"revision {v1} is the revision serving",
    )
    ready = cond(world, "Ready")
    assert (ready.status, ready.reason) == ("True", "Available")

    # Scaling needs no approval either: stable is re-applied at the new size, still Stable.
    for replicas in (6, 2):
        since = len(world.decisions)
        rescale(world, replicas)
        decision = world.step()
        assert decision.actions[0] == rollout.ApplyDeployment(
            "stable", v1, "2.4.0", replicas, v1_template
        )
        assert decision.actions[0].template == v1_template
        assert cond(world, "Reconciling").reason == "Scaling"
        world.run_until(lambda w: cond(w, "Ready").status == "True")
        assert world.stable.replicas == replicas and world.stable.rolled_out
        assert world.status.phase == "Stable" and moves(world, since) == []
        assert cond(world, "Ready").message == (
            f"version 2.4.0 (revision {v1}) serving with {replicas}/{replicas} replicas Ready"
        )
    assert world.canary is None and world.status.serving.revision == v1


def test_h_a_vanished_stable_under_an_unusable_spec_returns_at_the_last_known_replicas():
    """With the spec unusable there is no spec.replicas to read: a stable Deployment that
    disappears meanwhile comes back at the last replica count the operator could read."""
    world = serving(replicas=4)
    world.change_spec(None, BAD_SPEC)
    world.run_until(lambda w: w.status.phase == "Failed")
    assert world.status.replicas == 4
    world.delete_child("stable")
    world.run_until(lambda w: w.stable is not None and w.stable.rolled_out)
    assert world.stable.replicas == 4 and world.status.phase == "Failed"
    assert [h.reason for h in world.history()].count("StableRecreated") == 1


# ---- found by an adversarial review of the state machine -------------------------------


def test_review_a_refused_service_never_keeps_a_rolled_back_canary_serving():
    world = serving()
    upgrade(world)
    world.run_until(lambda w: w.status.rollout is not None and w.status.rollout.ready_since)
    annotate(world, "abort", "by=sre INC-1")
    for _ in range(40):  # the Service is refused on every apply
        world.faults = Faults(reject_next_apply="HTTP 422: denied", reject_track="service")
        world.step(timedelta(seconds=30))
    assert world.canary is None  # deleted whatever happens to the Service
    assert world.status.phase == "RolledBack"


def test_review_a_status_from_the_previous_aigate_is_routed_afresh_not_crashed_on():
    world = serving()
    v2 = upgrade(world)
    world.run_until(lambda w: w.status.rollout is not None and w.status.rollout.ready_since)
    old = world.status.model_dump(mode="json", by_alias=True)
    for field in ("rollout", "serving", "watch", "rollback", "children"):
        old.pop(field, None)
    old.update({"stageIndex": 0, "analysis": {"track": "canary"}})  # the old shape
    world.status = AIDeploymentStatus.model_validate(old)
    world.step()
    assert "ControlStateMissing" in [h.reason for h in world.history()]
    # Nothing says what serves or that aigate created the stable Deployment: it is left
    # alone (never overwritten by v2 without its canary), and the condition says why.
    world.run_until(lambda w: w.status.phase == "Failed")
    assert world.status.conditions and "no record of creating" in " ".join(
        c.message for c in world.status.conditions
    )
    assert world.stable.version == "2.4.0" and world.canary is None
    assert v2 not in [a.revision for a in world.applied if hasattr(a, "revision")]


def test_review_an_approval_recorded_while_waiting_is_not_used_after_it_expired():
    world = serving()
    upgrade(world, monitor="3h")
    world.run_until(lambda w: w.status.phase == "Verifying")
    raw = plan_spec("2.6.0").model_dump(mode="json", by_alias=True, exclude_unset=True)
    raw["governance"] = {"approvalTTL": "1h"}
    v3_spec = AIDeploymentSpec.model_validate(raw)
    world.change_spec(v3_spec)
    world.annotations = approved_for(v3_spec, world.now, age=timedelta(minutes=1))
    world.step()
    world.annotations = {}  # the approval is withdrawn from the annotations
    world.run_until(lambda w: w.status.phase != "Verifying", advance=timedelta(minutes=5))
    assert world.status.phase == "AwaitingApproval"  # expired before it could be used
    assert world.stable.version == "2.5.0"


def test_review_a_stage_index_outside_the_plan_restarts_the_canary():
    world = serving()
    upgrade(world)
    world.run_until(lambda w: w.status.rollout is not None and w.status.rollout.ready_since)
    status = world.status.model_copy(deep=True)
    status.rollout.stage_index = 99
    world.status = status
    world.step()
    assert world.status.phase == "Progressing" and world.status.rollout.stage_index == 0
    assert world.history()[-1].reason == "CanarySuperseded"


def test_review_a_clock_stepping_back_never_stretches_a_backoff():
    world = serving(monitor="10m")
    upgrade(world, monitor="10m")
    world.run_until(lambda w: w.status.phase == "Verifying")
    annotate(world, "abort", "by=sre INC-2")
    world.faults = Faults(reject_next_apply="HTTP 422: denied", reject_track="stable")
    world.step(timedelta(0))
    world.now -= timedelta(hours=1)
    held = rollout.decide(world.inputs())
    assert held.requeue_after <= 10.0


# ---- drift: what runs is what aigate wrote ---------------------------------------------------


def test_drift_on_stable_is_reverted_at_once_and_recorded_once():
    world = serving()
    written = dict(world.deployments["stable"].template)
    world.edit_child("stable")  # `kubectl set image` on fraud-scorer-stable
    world.step()
    assert world.deployments["stable"].template == written  # re-applied whole
    noted = [h for h in world.history() if h.reason == "DriftDetected"]
    assert len(noted) == 1 and "fraud-scorer-stable was changed outside aigate" in noted[0].message
    assert [e.type for e in world.events() if e.reason == "DriftDetected"] == ["Warning"]
    world.run_until(lambda w: w.stable.rolled_out)
    assert world.status.phase == "Stable"
    assert len([h for h in world.history() if h.reason == "DriftDetected"]) == 1


def test_drift_on_the_canary_is_reverted_and_the_stage_goes_on_with_the_candidate():
    world = serving()
    v2 = upgrade(world)
    world.run_until(lambda w: w.canary is not None and w.canary.rolled_out)
    candidate = dict(world.deployments["canary"].template)
    world.edit_child("canary")
    world.step()
    assert world.deployments["canary"].template == candidate
    assert "fraud-scorer-canary was changed outside aigate" in " ".join(
        h.message for h in world.history() if h.reason == "DriftDetected"
    )
    world.run_until(lambda w: w.status.phase == "Stable" and w.stable.revision == v2)


def test_drift_while_awaiting_approval_restores_the_serving_version():
    world = serving()
    world.change_spec(plan_spec("2.9.0"))  # not approved
    world.run_until(lambda w: w.status.phase == "AwaitingApproval")
    written = dict(world.deployments["stable"].template)
    world.edit_child("stable")
    world.step()
    assert world.deployments["stable"].template == written
    assert world.status.phase == "AwaitingApproval"


def test_drift_on_the_canary_while_stable_is_promoted_is_reverted():
    world = serving()
    upgrade(world)
    world.speed = 1  # stable rolls slowly: Promoting lasts several steps
    world.run_until(lambda w: w.status.phase == "Promoting")
    candidate = dict(world.deployments["canary"].template)
    world.edit_child("canary")
    world.step()
    assert world.status.phase == "Promoting"
    assert world.deployments["canary"].template == candidate
