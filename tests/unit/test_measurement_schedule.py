"""Measurements keep to a grid (issue 10): each is due one interval after the previous was
due, so a late one does not push the rest back, and each carries how late it was taken."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from aigate.api.v1alpha1 import AnalysisState
from aigate.core import analysis as an
from aigate.core import rollout
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


def test_a_measurement_taken_ahead_counts_only_for_the_same_due_measurement():
    """measure_ahead() takes a measurement before its round has a reconcile slot; the round
    uses it only if it finds the same one due (analysis, due time, queries), whenever each
    was planned."""
    from aigate.reconciler import Ahead

    world = serving(interval="10s")
    upgrade(world, interval="10s")
    world.run_until(lambda w: bool(w.plans), advance=timedelta(seconds=1))
    plan = world.plans[-1]
    taken = an.Measurements.of(plan, ())
    ahead = Ahead(plan, taken)
    later = replace(plan, at=plan.at + timedelta(seconds=2), lag_seconds=2.0)
    assert ahead.takes(later)
    assert not ahead.takes(replace(plan, due=plan.at))  # another due time
    assert not ahead.takes(replace(plan, stage_index=plan.stage_index + 1))
    assert not ahead.takes(replace(plan, revision="another"))
    assert not ahead.takes(replace(plan, queries=plan.queries[:-1]))


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
