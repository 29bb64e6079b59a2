"""Takes one resource's measurements when they fall due, whatever its round is waiting on.

Under load a round waits for a reconcile slot and then for the API server to take its
writes; a measurement taken only when its round comes would be late by that queue. The
measurer is the resource's clock: it measures each one at its due time on the analysis'
grid and keeps it until a round counts it (core/rollout/catchup.py). Each round tells it
what status now says is next; what it took for an analysis that has since ended is dropped.
It takes nothing due after the analysis may end by time alone (a stage's duration, the
watch period): that is for whatever the round decides comes next.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from aigate.core import analysis as an
from aigate.core import rollout
from aigate.reconciler import Schedule

log = logging.getLogger("aigate.measurer")

# Measurements kept for rounds that have not come: past this, the measurer waits for one
# (an API server that takes no writes at all must not make it hoard results).
MAX_TAKEN = 24

# Takes the scheduled measurement now; None: it is not the one due now, or its pods
# cannot be measured (the measurer then waits for the next plan()).
Take = Callable[[Schedule, datetime], Awaitable[rollout.Taken | None]]


class Measurer:
    def __init__(
        self,
        take: Take,
        took: asyncio.Event,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        subject: str = "",
    ) -> None:
        self._take = take
        self._took = took  # set after each measurement: its round should come
        self._now = now
        self._subject = subject
        self._next: Schedule | None = None  # after what was taken since
        self._taken: list[rollout.Taken] = []
        self._busy = False
        self._held = False  # not takeable now: wait for the next plan()
        self._changed = asyncio.Event()  # a new schedule, a measurement taken, or stopped
        self._clock: asyncio.Task[None] | None = None

    # ---- its life -----------------------------------------------------------------------

    def start(self) -> None:
        self._clock = asyncio.create_task(self._run(), name=f"measurer {self._subject}")
        self._clock.add_done_callback(lambda _: self._changed.set())

    async def stop(self) -> None:
        """Cancels the clock and waits until it has stopped (a cancel aimed at the caller
        still reaches the caller)."""
        if self._clock is not None:
            self._clock.cancel()
            await asyncio.wait({self._clock})

    # ---- what rounds ask --------------------------------------------------------------

    def plan(self, schedule: Schedule | None, settled: Sequence[rollout.Taken] = ()) -> None:
        """Status' next measurement: those taken since that still follow it are kept, but
        none a round has been offered (`settled`: it counted them or never will)."""
        if settled:
            self._taken = [t for t in self._taken if not any(t is s for s in settled)]
        if schedule is None:
            self._taken, self._next = [], None
        else:
            self._taken, plan = rollout.still_due(
                schedule.plan, self._taken, schedule.analysis, schedule.basis
            )
            self._next = dataclasses.replace(schedule, plan=plan)
        self._held = False
        self._changed.set()

    def owes(self, at: datetime) -> bool:
        """A measurement due by `at` is being taken or will be (so a round at `at` waits
        for it rather than measuring the same thing again)."""
        if self._clock is None or self._clock.done():
            return False
        if self._busy:
            return True
        due = self._due()
        return due is not None and due <= at

    async def through(self, at: datetime) -> Sequence[rollout.Taken]:
        while self.owes(at):
            self._changed.clear()
            await self._changed.wait()
        return tuple(self._taken)

    # ---- the clock --------------------------------------------------------------------

    def _due(self) -> datetime | None:
        """When the next measurement is to be taken; None: none is to be taken ahead of a
        round (none planned, not takeable now, enough kept, or past the analysis' end)."""
        if self._next is None or self._held or len(self._taken) >= MAX_TAKEN:
            return None
        plan = self._next.plan
        if plan.due is None:
            return datetime.min.replace(tzinfo=UTC)  # the analysis' first: at once
        if plan.ends is not None and plan.due > plan.ends:
            return None
        return plan.due

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            due = self._due()
            wait = None if due is None else (due - self._now()).total_seconds()
            if wait is None or wait > 0:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow the
                # daemon's cancel when the wait ends at the same moment (a plan() just
                # before the cancel), and the clock would then never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._changed.wait()
                continue
            await self._measure(self._next)

    async def _measure(self, schedule: Schedule | None) -> None:
        assert schedule is not None
        self._busy = True
        try:
            taken = await self._take(schedule, self._now())
        except Exception:
            # The round measures for itself then (and reports whatever is wrong).
            log.exception("measuring failed", extra={"aideployment": self._subject})
            taken, self._next = None, None
        finally:
            self._busy = False
            self._changed.set()
        if taken is None:
            self._held = self._next is schedule  # unless a round planned meanwhile
            return
        if self._next is not None and an.same_measurement(taken.plan, self._next.plan):
            self._taken.append(taken)
            following = an.following(taken.plan, self._next.analysis)
            self._next = dataclasses.replace(self._next, plan=following)
            self._took.set()
        # else: status moved on while it was taken (a round counted another, or a
        # transition): it was for an analysis that is no longer next, and is dropped.
