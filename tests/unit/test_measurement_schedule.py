"""Measurements keep to a grid (issue 10): each is due one interval after the previous was
due, so a late one does not push the rest back, and each carries how late it was taken."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from aigate.api.v1alpha1 import AnalysisState
from aigate.core import analysis as an
from aigate.core import rollout
from aigate.core.gate import format_rfc3339, parse_rfc3339
from aigate.core.verdict import QueryOutcome
from support.factories import approved_for, request
from support.sim import plan_spec, serving, upgrade

T = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
INTERVAL = timedelta(seconds=30)


def test_the_next_measurement_is_due_one_interval_after_this_one_was_due():
    assert an.next_due(T + timedelta(seconds=4), T, INTERVAL) == T + INTERVAL


def test_the_first_measurement_starts_the_grid_where_it_is_taken():
    assert an.next_due(T, None, INTERVAL) == T + INTERVAL


def test_a_measurement_that_missed_a_whole_slot_starts_the_grid_again():
    late = T + INTERVAL + timedelta(seconds=1)
    assert an.next_due(late, T, INTERVAL) == late + INTERVAL


def test_a_status_from_before_the_grid_is_due_an_interval_after_its_last_measurement():
    analysis = plan_spec().rollout.analysis  # interval 30s
    old = AnalysisState(last_measured_at="2026-11-24T12:00:00Z")
    assert an.due_time(old, analysis) == T + INTERVAL
    assert an.due_time(AnalysisState(), analysis) is None


def test_late_reconciles_keep_the_grid_and_record_their_lag():
    """Every reconcile 7 s late: due times stay one interval (10 s) apart and the lags are
    recorded, so a one-minute stage still gets its measurements at the planned pace."""
    world = serving(interval="10s")
    upgrade(world, interval="10s")
    world.run_until(lambda w: bool(w.plans), advance=timedelta(seconds=1))
    first = world.plans[-1]
    assert first.due is None and first.lag_seconds == 0.0
    for _ in range(3):
        due = an.due_time(world.status.rollout.analysis, world.spec.rollout.analysis)
        world.now = due + timedelta(seconds=7)
        world.step(advance=timedelta(0))
        plan = world.plans[-1]
        assert plan.due == due and plan.lag_seconds == 7.0
        assert an.due_time(world.status.rollout.analysis, world.spec.rollout.analysis) == (
            due + timedelta(seconds=10)
        )
    lags = [m.lag_seconds for m in world.status.recent_measurements]
    assert 7.0 in lags and 0.0 in lags


def test_a_taken_measurement_counts_only_for_the_same_due_measurement():
    """The measurer takes a measurement while its round waits; a round counts it only if
    it finds the same one due (analysis, due time, queries), whenever each was planned."""
    world = serving(interval="10s")
    upgrade(world, interval="10s")
    world.run_until(lambda w: bool(w.plans), advance=timedelta(seconds=1))
    plan = world.plans[-1]
    later = replace(plan, at=plan.at + timedelta(seconds=2), lag_seconds=2.0)
    assert an.same_measurement(plan, later)
    assert not an.same_measurement(plan, replace(plan, due=plan.at))  # another due time
    assert not an.same_measurement(plan, replace(plan, stage_index=plan.stage_index + 1))
    assert not an.same_measurement(plan, replace(plan, revision="another"))
    assert not an.same_measurement(plan, replace(plan, queries=plan.queries[:-1]))


def _measuring(interval: str = "10s", **analysis):
    """A canary under analysis, its first measurement counted."""
    world = serving(interval=interval, **analysis)
    upgrade(world, interval=interval, **analysis)
    world.run_until(lambda w: bool(w.plans), advance=timedelta(seconds=1))
    world.step(advance=timedelta(0))
    return world


def _take_while_round_waits(world, count: int) -> None:
    for _ in range(count):
        world.tick(world.next_due_in())
        assert world.take_due()


def test_measurements_taken_while_the_round_waits_are_on_time_and_all_count():
    """Under load a round comes 25 s late: the measurer has taken the two measurements due
    meanwhile at their due times, and the round counts both, in order, with lag 0."""
    world = _measuring()
    before = world.status.rollout.analysis.metrics["error-rate"].measurements
    due = an.due_time(world.status.rollout.analysis, world.spec.rollout.analysis)
    _take_while_round_waits(world, 2)
    world.tick(timedelta(seconds=5))  # the round's turn comes
    decision = world.step(advance=timedelta(0))
    counted = world.status.rollout.analysis.metrics["error-rate"].measurements
    assert counted == before + 2
    times = [m.time for m in decision.new_measurements]  # one per metric and measurement
    assert times == sorted(times)
    assert sorted(set(times)) == [format_rfc3339(due), format_rfc3339(due + INTERVAL / 3)]
    assert {m.lag_seconds for m in decision.new_measurements} == {0.0}
    assert world.taken == []
    assert an.due_time(world.status.rollout.analysis, world.spec.rollout.analysis) == (
        due + timedelta(seconds=20)
    )


def test_a_breach_stops_the_count_and_the_rest_never_counts():
    """The second of three measurements taken meanwhile breaches (failureLimit 1): the
    rollback starts in that round, and the third, for the analysis that has just ended, is
    never counted anywhere."""
    world = _measuring(failureLimit=1)
    world.outcome = lambda track, metric, at: QueryOutcome(samples=(0.9,))
    _take_while_round_waits(world, 3)
    decision = world.step(advance=timedelta(0))
    assert world.status.phase == "RollingBack"
    assert len({m.time for m in decision.new_measurements}) == 2
    assert world.taken == []
    again = rollout.catch_up(world.inputs(), world.offered)
    assert again.counted == 0


def test_the_measurer_takes_nothing_past_the_stage_end_and_none_is_carried_into_the_next():
    """The one-minute stage ends while the round waits 70 s: the measurer takes the stage's
    measurements up to its end and then nothing (what falls due after it is the next
    stage's, at the next stage's weight); the round counts them all, promotes to the next
    stage, and the new stage's analysis starts empty."""
    world = _measuring(interval="10s")
    stage = world.status.rollout.stage_index
    stage_ends = parse_rfc3339(world.status.rollout.ready_since) + timedelta(minutes=1)
    while world.next_due_in() is not None:
        _take_while_round_waits(world, 1)
    taken = [t.plan.due for t in world.taken]
    assert taken and max(taken) <= stage_ends < max(taken) + timedelta(seconds=10)
    world.tick(stage_ends + timedelta(seconds=10) - world.now)  # the round comes at +70 s
    decision = world.step(advance=timedelta(0))
    assert world.status.rollout.stage_index == stage + 1
    assert len({m.time for m in decision.new_measurements}) == len(taken)
    assert {m.track for m in decision.new_measurements} == {"canary"}
    analysis = world.status.rollout.analysis
    assert analysis is None or all(c.measurements == 0 for c in analysis.metrics.values())
    assert world.taken == []


def test_time_alone_never_changes_status():
    """A round woken by a watch event that finds nothing new writes no status: no condition
    says how long something has taken (issue 10: at 1,000 rollouts, every round of a stage
    was a status write of the whole object). At each step of a slow rollout (one pod Ready
    per tick), the same world is decided again a few seconds later: unless a measurement
    falls due or a transition happens, status is the same."""
    world = serving(replicas=4, interval="10s")
    world.speed = 1
    v2 = upgrade(world, replicas=4, interval="10s", monitor="1m")  # with the watch after
    probed = 0
    while not (world.status.phase == "Stable" and world.stable.revision == v2):
        world.step(timedelta(seconds=1))
        now = rollout.decide(world.inputs())
        for later in (timedelta(seconds=1), timedelta(seconds=3)):
            inputs = replace(world.inputs(), now=world.now + later)
            if rollout.measurement_plan(inputs) is not None:
                continue
            decision = rollout.decide(inputs)
            if not (now.new_history or now.new_measurements or decision.new_history):
                probed += 1
                assert decision.status == now.status, decision.status.conditions
        assert len(world.decisions) < 400
    assert probed > 50


def test_a_breach_taken_after_the_stage_could_have_passed_on_an_earlier_one_still_counts():
    """The round waits 70 s through the end of a one-minute stage. The measurements taken in
    its last 20 s fail (failureLimit 1): each taken measurement is decided at the time it
    was taken, as an operator on time would have, so the breach rolls back. Decided at the
    round's time, the first taken measurement would already pass the stage (its duration
    ran out meanwhile) and the failing ones would be dropped as being for an ended stage."""
    world = _measuring(interval="10s", failureLimit=1)
    ready_since = parse_rfc3339(world.status.rollout.ready_since)
    stage_ends = ready_since + timedelta(minutes=1)
    world.outcome = lambda track, metric, at: QueryOutcome(
        samples=(0.9 if at >= stage_ends - timedelta(seconds=20) else 0.001,)
    )
    while world.next_due_in() is not None:
        _take_while_round_waits(world, 1)
    world.tick(stage_ends + timedelta(seconds=10) - world.now)  # the round comes at +70 s
    decision = world.step(advance=timedelta(0))
    assert world.status.phase == "RollingBack", world.status.phase
    failed = [m for m in decision.new_measurements if m.verdict == "Fail"]
    assert len({m.time for m in failed}) == 2
    assert world.taken == []


def _taken_then_round(world, count: int, wait: timedelta) -> None:
    _take_while_round_waits(world, count)
    world.tick(wait)


def test_a_spec_changed_while_the_round_waited_is_decided_at_the_rounds_time():
    """v3 arrives, approved a moment ago, while the round waits with measurements in hand:
    nothing is decided at a time before the change was made (no record says v3 was seen, or
    refused as approved in the future, 45 s before it existed); the measurements taken for
    v2 are dropped, never counted."""
    world = _measuring()
    _taken_then_round(world, 3, timedelta(seconds=45))
    spec = plan_spec("2.6.0", interval="10s")
    world.change_spec(spec)
    world.annotations = approved_for(spec, world.now, age=timedelta(0))
    decision = world.step(advance=timedelta(0))
    assert decision.new_history
    assert all(
        parse_rfc3339(h.time) >= world.now - timedelta(seconds=1) for h in decision.new_history
    )
    assert not any(e.reason == "ApprovalRequired" for e in decision.events)
    assert world.taken == []


def test_an_approval_that_expired_before_the_round_is_never_taken_as_valid_earlier():
    """The new spec's approval expired 20 s before the round ran: deciding the measurements
    taken earlier at their own times must not accept it then."""
    world = _measuring()
    _taken_then_round(world, 3, timedelta(seconds=45))
    spec = plan_spec("2.6.0", interval="10s")
    world.change_spec(spec)
    world.annotations = approved_for(spec, world.now, age=timedelta(hours=168, seconds=20))
    world.step(advance=timedelta(0))
    candidate = world.status.rollout.candidate if world.status.rollout else None
    assert candidate is None or candidate.version != "2.6.0"
    assert world.status.phase != "Progressing" or candidate.version == "2.5.0"


def test_a_request_made_while_the_round_waited_is_handled_at_the_rounds_time():
    world = _measuring()
    _taken_then_round(world, 3, timedelta(seconds=5))
    world.annotations = {**world.annotations, "aigate.dev/abort": request("abort", text="stop")}
    decision = world.step(advance=timedelta(0))
    assert world.status.phase == "RollingBack"
    assert all(
        parse_rfc3339(h.time) >= world.now - timedelta(seconds=1) for h in decision.new_history
    )


def test_a_breach_taken_while_the_canary_served_counts_though_a_pod_blipped_since():
    """Two failing measurements (failureLimit 1) taken on time while the canary served; a
    canary pod goes NotReady just before the round: each is decided with the children as
    observed when it was taken, so the breach rolls back."""
    world = _measuring(failureLimit=1)
    world.outcome = lambda track, metric, at: QueryOutcome(samples=(0.9,))
    _take_while_round_waits(world, 2)
    world.outcome = lambda track, metric, at: QueryOutcome(samples=(0.001,))
    world.flap("canary", 1)
    world.step(advance=timedelta(0))
    assert world.status.phase == "RollingBack"


def test_a_late_round_passes_a_stage_at_its_end_without_measuring_what_fell_due_after_it():
    """The round comes 11 s after the one-minute stage ended, past the next measurement's
    due time (3 s after the end): an operator on time passed the stage at its end, before that one was due,
    so the late round decides first and measures nothing for the ended stage."""
    world = _measuring(interval="7s")  # the grid misses the stage end: 56 s, 63 s
    stage = world.status.rollout.stage_index
    stage_ends = parse_rfc3339(world.status.rollout.ready_since) + timedelta(minutes=1)
    while world.next_due_in() is not None:
        _take_while_round_waits(world, 1)
    world.tick(stage_ends + timedelta(seconds=11) - world.now)
    served = len(world.served)
    world.step(advance=timedelta(0))
    assert world.status.rollout.stage_index == stage + 1
    assert len(world.served) == served, [p.due for p, _ in world.served[served:]]


def test_a_late_round_still_measures_after_the_stage_end_when_the_stage_cannot_pass_yet():
    """The last measurement before the stage's end failed (failureLimit 2 not reached): the
    stage cannot pass at its end, so the analysis goes on and the late round measures."""
    world = _measuring(interval="7s")  # the grid misses the stage end: 56 s, 63 s
    stage = world.status.rollout.stage_index
    stage_ends = parse_rfc3339(world.status.rollout.ready_since) + timedelta(minutes=1)
    world.outcome = lambda track, metric, at: QueryOutcome(
        samples=(0.9 if at >= stage_ends - timedelta(seconds=5) else 0.001,)
    )
    while world.next_due_in() is not None:
        _take_while_round_waits(world, 1)
    world.tick(stage_ends + timedelta(seconds=11) - world.now)
    served = len(world.served)
    world.step(advance=timedelta(0))
    assert world.status.rollout.stage_index == stage
    assert len(world.served) == served + 1
