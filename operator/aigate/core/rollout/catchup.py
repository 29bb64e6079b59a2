"""Measurements taken while a resource's round waited for its turn (an operator under load
queues its rounds behind the API server): each counts in the order taken, decided at the
time it was taken with the children as observed then, as an operator on time would have,
so a slow API server delays decisions but never measurements.

A measurement counts only while the analysis it was taken for is still the one running and
it is the next due there (a transition in between, a breach above all, leaves the rest
uncounted: they were for an analysis that has ended), and only while nothing but time has
changed since it was planned: a new spec, annotation (an approval, a request) or an approval
policy or signature that no longer holds is decided at the round's own time, never at an
earlier one it did not exist at (the taken measurements are dropped; the round measures
for itself what is due). Each taken measurement is offered to one round: what that round
does not count is dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from aigate.api.v1alpha1 import AnalysisSpec
from aigate.core import analysis as an
from aigate.core.rollout.decide import decide, next_slot
from aigate.core.rollout.model import Decision, Inputs, Observed

Basis = tuple[Hashable, ...]


@dataclass(frozen=True)
class Taken:
    """A measurement taken when it was due, the plan it was taken for, the basis (basis())
    of the inputs that plan came from, and the children as observed when it was taken."""

    plan: an.MeasurementPlan
    measurements: an.Measurements
    basis: Basis = ()
    observed: Observed | None = None


def basis(inputs: Inputs) -> Basis:
    """What people decided, as these inputs hold it: the spec's generation and every
    annotation (approvals, risk acceptance, promote/abort/retry requests)."""
    return (inputs.generation, tuple(sorted(inputs.annotations.items())))


@dataclass(frozen=True)
class CaughtUp:
    """`inputs` with the taken measurements counted into its status; `carried`: what those
    decisions said on the way (events, records, history), to precede the round's own."""

    inputs: Inputs
    carried: Decision | None = None
    counted: int = 0

    def then(self, decision: Decision) -> Decision:
        """The round's decision, preceded by what catching up decided."""
        carried = self.carried
        if carried is None:
            return decision
        return dataclasses.replace(
            decision,
            events=(*carried.events, *decision.events),
            new_measurements=(*carried.new_measurements, *decision.new_measurements),
            new_history=(*carried.new_history, *decision.new_history),
            new_records=(*carried.new_records, *decision.new_records),
        )


def catch_up(inputs: Inputs, taken: Sequence[Taken]) -> CaughtUp:
    """Counts each taken measurement that is the next one due, deciding after each."""
    caught = CaughtUp(inputs)
    if not _only_time_moved(inputs):
        return caught
    now_basis = basis(inputs)
    for one in taken:
        due = next_slot(caught.inputs)
        if (
            due is None
            or not an.same_measurement(due, one.plan)
            or one.plan.at > inputs.now
            or one.basis != now_basis
        ):
            continue  # for an analysis that has ended, already counted, or planned before
            # something other than time changed
        # Decided at the time it was taken, as an operator on time would have: decided at
        # the round's time, a stage whose duration ran out while the round waited would
        # pass on its first measurement and drop the later ones, a breach included.
        # With the children as they were then: a canary pod that blipped NotReady since
        # does not void a breach measured while it served.
        taken_at = dataclasses.replace(
            caught.inputs,
            measurements=one.measurements,
            now=one.plan.at,
            observed=one.observed or caught.inputs.observed,
        )
        step = decide(taken_at)
        after = next_slot(dataclasses.replace(caught.inputs, status=step.status))
        if after is not None and an.same_measurement(after, one.plan):
            continue  # not counted (the stage is held: e.g. its route is missing)
        caught = CaughtUp(
            dataclasses.replace(caught.inputs, status=step.status),
            step if caught.carried is None else caught.then(step),
            caught.counted + 1,
        )
    return caught


def _only_time_moved(inputs: Inputs) -> bool:
    """Nothing the gate weighs fails now in a way an earlier time might not have seen: an
    unreadable spec or status, an approval policy or a signature that does not hold is
    decided at the round's own time."""
    if inputs.spec is None or inputs.status_error or inputs.policy_problem:
        return False
    checks = (inputs.signatures.approval, inputs.signatures.risk)
    return all(check is None or check.verified for check in checks)


def still_due(
    start: an.MeasurementPlan | None,
    taken: Sequence[Taken],
    analysis: AnalysisSpec,
    now_basis: Basis,
) -> tuple[list[Taken], an.MeasurementPlan | None]:
    """From `start`, status' next measurement: the taken ones that follow it one after
    another on its grid under the same basis (those a round will count), and the
    measurement due after them."""
    if start is None:
        return [], None
    kept: list[Taken] = []
    plan = start
    for one in taken:
        if one.basis != now_basis or not an.same_measurement(one.plan, plan):
            continue  # counted already, for an analysis that has ended, or planned before
            # something other than time changed
        kept.append(one)
        plan = an.following(one.plan, analysis)
    return kept, plan
