"""Invariants of the rollout state machine, under random metric outcomes and requests."""

from __future__ import annotations

import math
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aigate.core.revision import compute_revision
from aigate.core.verdict import QueryOutcome
from support.factories import approval_annotations
from support.sim import T0, plan_spec, serving, upgrade

PASS = QueryOutcome(samples=(0.001,))
FAIL = QueryOutcome(samples=(0.5,))
INCONCLUSIVE = [
    QueryOutcome.failed("Prometheus unreachable: ConnectionError"),
    QueryOutcome.failed("HTTP 400: parse error"),
    QueryOutcome(samples=()),
    QueryOutcome(samples=(math.nan,)),
    QueryOutcome(samples=(math.inf,)),
    QueryOutcome(samples=(0.001, 0.002)),
]

outcomes = st.sampled_from([PASS, FAIL, *INCONCLUSIVE])
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STEP = timedelta(seconds=15)


def scripted(script: list[QueryOutcome], default: QueryOutcome):
    """Outcome i of the script for the i-th measurement of error-rate; others pass."""
    calls = {"n": 0}

    def outcome(track, metric, at):
        if metric != "error-rate":
            return PASS
        i = calls["n"]
        calls["n"] += 1
        return script[i] if i < len(script) else default

    return outcome


@SETTINGS
@given(script=st.lists(st.sampled_from(INCONCLUSIVE), min_size=1, max_size=40))
def test_a_metric_that_never_returns_a_valid_value_never_lets_a_stage_pass(script):
    world = serving()
    v2 = upgrade(world)
    world.outcome = scripted(script, INCONCLUSIVE[0])
    for _ in range(120):
        world.step(STEP)
        assert world.stable.revision != v2
        assert world.status.phase not in ("Promoting",)
        assert world.status.stage in ("canary-10", "")
        assert not [h for h in world.status.history if h.reason == "StagePassed"]


@SETTINGS
@given(
    script=st.lists(outcomes, max_size=30),
    abort_at=st.one_of(st.none(), st.integers(0, 40)),
    canary_ready=st.booleans(),
    monitor=st.sampled_from(["0s", "5m"]),
    after_promotion=st.sampled_from([PASS, FAIL]),
)
def test_every_rollback_ends_with_the_previous_stable_version_at_full_strength(
    script, abort_at, canary_ready, monitor, after_promotion
):
    world = serving(monitor=monitor)
    v1 = world.stable.revision
    v2 = upgrade(world, monitor=monitor)
    world.canary_becomes_ready = canary_ready
    world.outcome = scripted(script, after_promotion)
    for step in range(150):
        if abort_at is not None and step == abort_at:
            world.annotations = world.annotations | {"aigate.dev/abort": f"by=sre abort-{step}"}
        world.step(STEP)
        if world.status.phase == "RolledBack":
            assert world.canary is None
            assert world.stable.revision == v1
            assert world.stable.replicas == 4 and world.stable.ready_replicas == 4
            assert world.status.rolled_back_revisions == [v2]
            return
        if world.status.phase == "Stable" and world.stable.revision == v2:
            return
    # While a canary ran, stable never had fewer Ready pods than spec.replicas.
    assert world.min_stable_ready in (None, 4)


@SETTINGS
@given(
    approved=st.sampled_from(["other", "expired", "future", "none"]),
    script=st.lists(outcomes, max_size=10),
)
def test_never_deploys_a_revision_without_a_valid_approval(approved, script):
    world = serving()
    v1 = world.stable.revision
    spec = plan_spec("3.0.0")
    v3 = compute_revision(spec)
    world.change_spec(spec)
    world.annotations = {
        "other": approval_annotations(v1, world.now),
        "expired": approval_annotations(v3, world.now - timedelta(days=30)),
        "future": approval_annotations(v3, world.now + timedelta(days=1)),
        "none": {},
    }[approved]
    world.outcome = scripted(script, PASS)
    for _ in range(60):
        decision = world.step(STEP)
        assert all(getattr(a, "revision", v1) != v3 for a in decision.actions)
        assert world.stable.revision == v1 and world.canary is None
        assert world.status.phase == "AwaitingApproval"


def test_module_constants_are_sane():
    assert T0.tzinfo is not None
