"""The measurer (aigate/measurer.py) takes each measurement at its due time while the
resource's round waits, hands rounds what is due by their time, and drops what status has
moved past. Its Prometheus is a function here; the clock is real but every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from aigate.core import analysis as an
from aigate.core import rollout
from aigate.measurer import MAX_TAKEN, Measurer
from aigate.reconciler import Schedule
from support.sim import plan_spec

ANALYSIS = plan_spec(interval="1s").rollout.analysis
QUERIES = (an.PlannedQuery("error-rate", 'err{track="canary"}', None),)


def _plan(due: datetime | None) -> an.MeasurementPlan:
    now = datetime.now(UTC)
    return an.MeasurementPlan(
        "canary", now, QUERIES, revision="r2", stage_index=0, due=due and due.replace(microsecond=0)
    )


class Prometheus:
    def __init__(self, fail: bool = False) -> None:
        self.asked: list[an.MeasurementPlan] = []
        self.answer = asyncio.Event()
        self.answer.set()
        self.fail = fail

    async def take(self, schedule: Schedule, now: datetime) -> rollout.Taken:
        await self.answer.wait()
        if self.fail:
            raise RuntimeError("connection refused")
        plan = an.taken_now(schedule.plan, now)
        self.asked.append(plan)
        return rollout.Taken(plan, an.Measurements.of(plan, ()))


@contextlib.asynccontextmanager
async def running(measurer: Measurer):
    measurer.start()
    try:
        yield
    finally:
        await _within(measurer.stop())


async def _within(awaitable, seconds: float = 20.0):
    return await asyncio.wait_for(awaitable, timeout=seconds)


def test_a_due_measurement_is_taken_at_once_and_handed_to_the_round():
    async def scenario() -> None:
        prometheus, took = Prometheus(), asyncio.Event()
        measurer = Measurer(prometheus.take, took)
        async with running(measurer):
            measurer.plan(Schedule("risk", ANALYSIS, _plan(None)))  # the first: due at once
            await _within(took.wait())
            taken = await _within(measurer.through(datetime.now(UTC)))
        assert [t.plan.due for t in taken] == [None]
        assert taken[0].plan.lag_seconds == 0.0

    asyncio.run(scenario())


def test_a_round_waits_for_a_measurement_being_taken():
    """Prometheus answers slowly: a round that comes meanwhile gets the measurement once
    it is in, not an empty hand (it would otherwise measure the same thing again)."""

    async def scenario() -> None:
        prometheus, took = Prometheus(), asyncio.Event()
        prometheus.answer.clear()
        measurer = Measurer(prometheus.take, took)
        async with running(measurer):
            measurer.plan(Schedule("risk", ANALYSIS, _plan(None)))
            round_ = asyncio.create_task(measurer.through(datetime.now(UTC)))
            await asyncio.sleep(0)
            assert measurer.owes(datetime.now(UTC)) and not round_.done()
            prometheus.answer.set()
            taken = await _within(round_)
        assert len(taken) == 1

    asyncio.run(scenario())


def test_a_measurer_no_round_empties_stops_at_max_taken():
    """No round comes (the API server takes no writes): the measurer takes each on its
    grid, in order, until it holds MAX_TAKEN, then waits for a round. Its clock runs a
    second per look here, so every measurement is due at once."""

    async def scenario() -> None:
        prometheus, took = Prometheus(), asyncio.Event()
        ticks = iter(range(10_000))
        start = datetime.now(UTC).replace(microsecond=0)
        measurer = Measurer(
            prometheus.take, took, now=lambda: start + timedelta(seconds=next(ticks))
        )
        async with running(measurer):
            measurer.plan(Schedule("risk", ANALYSIS, _plan(None)))
            taken = await _within(measurer.through(start + timedelta(days=1)))
            asked = len(prometheus.asked)
            await asyncio.sleep(0.05)
            assert len(prometheus.asked) == asked  # full: nothing more is asked
        dues = [t.plan.due for t in taken]
        assert len(dues) == MAX_TAKEN
        assert dues[0] is None
        assert dues[1:] == sorted(set(dues[1:]))

    asyncio.run(scenario())


def test_status_moving_on_drops_what_was_taken_for_it():
    """A round counted the first measurement: status now says the second is next, so the
    first is no longer handed out; then a transition: nothing taken follows it."""

    async def scenario() -> None:
        prometheus, took = Prometheus(), asyncio.Event()
        measurer = Measurer(prometheus.take, took)
        async with running(measurer):
            first = _plan(None)
            measurer.plan(Schedule("risk", ANALYSIS, first))
            await _within(took.wait())
            taken = await _within(measurer.through(datetime.now(UTC)))
            after = an.following(taken[0].plan, ANALYSIS)
            measurer.plan(Schedule("risk", ANALYSIS, replace(after, due=after.due)))
            assert all(t.plan.due != taken[0].plan.due for t in measurer._taken)
            measurer.plan(Schedule("risk", ANALYSIS, replace(after, stage_index=1)))
            assert measurer._taken == []
            measurer.plan(None)
            assert not measurer.owes(datetime.now(UTC) + timedelta(days=1))

    asyncio.run(scenario())


def test_a_failing_measurement_never_holds_up_the_round():
    async def scenario() -> None:
        prometheus, took = Prometheus(fail=True), asyncio.Event()
        measurer = Measurer(prometheus.take, took)
        async with running(measurer):
            measurer.plan(Schedule("risk", ANALYSIS, _plan(None)))
            taken = await _within(measurer.through(datetime.now(UTC)))
        assert taken == () and not took.is_set()

    asyncio.run(scenario())


def test_a_measurement_whose_pods_cannot_be_measured_now_is_not_owed_until_the_next_plan():
    """take() says not now (the canary is not ready, or status moved on): the round does
    not wait for it, and nothing is asked again until a round plans anew."""

    async def scenario() -> None:
        calls: list[datetime] = []

        async def not_now(schedule: Schedule, now: datetime) -> rollout.Taken | None:
            calls.append(now)
            return None

        measurer = Measurer(not_now, asyncio.Event())
        async with running(measurer):
            measurer.plan(Schedule("risk", ANALYSIS, _plan(None)))
            assert await _within(measurer.through(datetime.now(UTC))) == ()
            await asyncio.sleep(0.05)
            assert len(calls) == 1 and not measurer.owes(datetime.now(UTC))
            measurer.plan(Schedule("risk", ANALYSIS, _plan(None)))
            await _within(measurer.through(datetime.now(UTC)))
            assert len(calls) == 2

    asyncio.run(scenario())


def test_nothing_due_after_the_analysis_may_end_is_taken_ahead():
    """A stage ends at `ends`: the measurement due after it is the next stage's business,
    so the measurer neither takes it nor makes a round wait for it."""

    async def scenario() -> None:
        prometheus, took = Prometheus(), asyncio.Event()
        now = datetime.now(UTC).replace(microsecond=0)
        measurer = Measurer(prometheus.take, took)
        async with running(measurer):
            late = replace(_plan(now - timedelta(seconds=1)), ends=now - timedelta(seconds=2))
            measurer.plan(Schedule("risk", ANALYSIS, late))
            assert not measurer.owes(now + timedelta(days=1))
            assert await _within(measurer.through(now + timedelta(days=1))) == ()
            await asyncio.sleep(0.05)
        assert prometheus.asked == []

    asyncio.run(scenario())


def test_a_round_never_waits_on_a_stopped_measurer():
    async def scenario() -> None:
        prometheus = Prometheus()
        prometheus.answer.clear()  # it would never answer
        measurer = Measurer(prometheus.take, asyncio.Event())
        measurer.start()
        measurer.plan(Schedule("risk", ANALYSIS, _plan(None)))
        round_ = asyncio.create_task(measurer.through(datetime.now(UTC)))
        await asyncio.sleep(0.01)
        await _within(measurer.stop())
        assert await _within(round_) == ()

    asyncio.run(scenario())
