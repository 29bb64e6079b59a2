"""The canary state machine: stages, analysis, promotion, rollback, requests, restart."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta

import pytest

from aigate.core import rollout
from aigate.core.analysis import Measurements, MetricResult
from aigate.core.revision import compute_revision
from aigate.core.verdict import QueryOutcome
from support.factories import approval_annotations, approved_for, request, spec_dict, spec_model
from support.sim import T0, World, plan_spec, serving, upgrade


def canary_running(world: World) -> bool:
    rollout_state = world.status.rollout
    return rollout_state is not None and bool(rollout_state.ready_since)


def reasons(world: World) -> list[str]:
    return [e.reason for e in world.events()]


def test_first_version_goes_straight_to_stable_with_no_canary():
    world = serving()
    assert world.canary is None
    assert world.stable is not None and world.stable.replicas == 4
    assert [h.to_phase for h in world.status.history if h.reason not in {"Approved"}][-2:] == [
        "Deploying",
        "Stable",
    ]


def test_healthy_version_passes_every_stage_with_replicas_following_the_weight():
    world = serving()
    v1 = world.stable.revision
    v2 = upgrade(world)
    seen: dict[str, int] = {}
    while world.status.phase != "Stable" or world.stable.revision != v2:
        world.step(timedelta(seconds=10))
        if world.canary is not None and world.status.stage in ("canary-10", "canary-50", "full"):
            seen[world.status.stage] = world.canary.replicas
        assert len(world.decisions) < 400
    assert seen == {"canary-10": 1, "canary-50": 2, "full": 4}
    assert world.canary is None
    assert world.stable.revision == v2 and world.stable.replicas == 4
    assert world.min_stable_ready == 4  # stable never lost a Ready pod during the canary
    passed = [h for h in world.status.history if h.reason == "StagePassed"]
    assert [h.stage for h in passed] == ["canary-10", "canary-50", "full"]
    assert all(not h.evidence for h in world.status.history)  # status names the records
    passed = [r for r in world.delivered if r.reason == "StagePassed"]
    assert [(r.sequence, r.digest) for r in passed][-3:] == [
        (h.sequence, h.digest) for h in world.status.history if h.reason == "StagePassed"
    ]
    for entry in passed[-3:]:
        assert {e.metric for e in entry.evidence} == {"error-rate", "p99-latency"}
        assert all(e.verdict == "Pass" and e.track == "canary" for e in entry.evidence)
        assert all('track="canary"' in e.query for e in entry.evidence)
    promoted = next(h for h in world.status.history if h.reason == "Promoted" and h.revision == v2)
    assert promoted.from_phase == "Promoting" and promoted.to_phase == "Stable"
    assert world.status.serving.revision == v2 and world.status.previous is None  # no watch
    assert world.status.last_rollback is None and v1 != v2


def test_stage_needs_its_duration_and_a_measurement_of_every_metric():
    world = serving()
    upgrade(world)
    world.run_until(canary_running)
    ready_at = world.now
    world.run_until(lambda w: w.status.stage == "canary-50", advance=timedelta(seconds=5))
    passed_at = next(h for h in world.status.history if h.reason == "StagePassed").time
    assert datetime.fromisoformat(passed_at.replace("Z", "+00:00")) >= ready_at + timedelta(
        minutes=1
    ) - timedelta(seconds=5)


def failing_metric(name: str, value: float = 0.05):
    def outcome(track, metric, at):
        return QueryOutcome(samples=(value if metric == name and track == "canary" else 0.001,))

    return outcome


def test_breach_rolls_back_and_names_metric_value_and_threshold():
    world = serving()
    v1 = world.stable.revision
    v2 = upgrade(world)
    world.outcome = failing_metric("error-rate", 0.05)
    world.run_until(lambda w: w.status.phase == "RolledBack")
    assert world.canary is None
    assert world.stable.revision == v1 and world.stable.replicas == 4 and world.stable.rolled_out
    assert world.min_stable_ready == 4
    assert world.status.rolled_back_revisions == [v2]
    rollback = next(e for e in world.events() if e.reason == "AnalysisFailed")
    assert (
        "error-rate" in rollback.message
        and "0.05" in rollback.message
        and "<= 0.01" in rollback.message
    )
    assert rollback.type == "Warning"
    entry = next(r for r in world.delivered if r.to_phase == "RollingBack")
    assert any(e.metric == "error-rate" and e.verdict == "Fail" for e in entry.evidence)
    # failureLimit 2: the third failure triggers the rollback, not the first
    fails = [m for d in world.decisions for m in d.new_measurements if m.metric == "error-rate"]
    assert [m.verdict for m in fails] == ["Fail", "Fail", "Fail"]


def test_rolled_back_revision_is_not_retried_until_spec_change_or_retry():
    world = serving()
    v2 = upgrade(world)
    world.outcome = failing_metric("error-rate")
    world.run_until(lambda w: w.status.phase == "RolledBack")
    for _ in range(20):
        decision = world.step(timedelta(minutes=1))
        assert not any(
            isinstance(a, rollout.ApplyDeployment) and a.track == "canary" for a in decision.actions
        )
    assert world.status.phase == "RolledBack"
    assert world.status.conditions and any(
        c.reason == "RolledBack" for c in world.status.conditions
    )
    world.outcome = failing_metric("none")
    retry = request("retry", v2, text="ticket-42")
    world.annotations = world.annotations | {"aigate.dev/retry": retry}
    world.run_until(lambda w: w.status.phase == "Stable" and w.stable.revision == v2)
    assert world.status.requests.retry is not None and world.status.requests.retry.value == retry
    assert world.status.requests.retry.by == "approver"
    # the same retry value is not acted on twice
    assert sum(1 for r in reasons(world) if r == "RequestHandled") == 1


def test_new_spec_after_rollback_starts_a_new_canary():
    world = serving()
    upgrade(world)
    world.outcome = failing_metric("error-rate")
    world.run_until(lambda w: w.status.phase == "RolledBack")
    world.outcome = failing_metric("none")
    v3 = upgrade(world, "2.5.1")
    world.run_until(lambda w: w.status.phase == "Stable" and w.stable.revision == v3)


def prometheus_down(track, metric, at):
    return QueryOutcome.failed("Prometheus at http://127.0.0.1:9 unreachable: ConnectionError")


def test_prometheus_down_pauses_after_the_limit_never_promotes_and_resumes():
    world = serving()
    v2 = upgrade(world)
    world.run_until(canary_running)
    world.outcome = prometheus_down
    world.run_until(lambda w: w.status.phase == "Paused", advance=timedelta(seconds=30))
    paused = next(c for c in world.status.conditions if c.type == "Reconciling")
    assert paused.reason == "AnalysisInconclusive" and "unreachable" in paused.message
    inconclusive = [
        m for d in world.decisions for m in d.new_measurements if m.metric == "error-rate"
    ]
    assert [m.verdict for m in inconclusive][-4:] == ["Inconclusive"] * 4  # limit 3: the 4th pauses
    for _ in range(40):  # 20 minutes down: never promoted, never a new stage
        world.step(timedelta(seconds=30))
        assert world.status.phase == "Paused" and world.status.stage == "canary-10"
    assert world.stable.revision != v2
    world.outcome = failing_metric("none")
    world.run_until(lambda w: w.status.phase == "Progressing", advance=timedelta(seconds=30))
    world.run_until(lambda w: w.status.phase == "Stable" and w.stable.revision == v2)


def test_nan_and_empty_results_never_count_as_a_pass():
    world = serving()
    upgrade(world)
    world.outcome = lambda track, metric, at: (
        QueryOutcome(samples=(math.nan,))
        if metric == "error-rate"
        else QueryOutcome(samples=(0.001,))
    )
    world.run_until(lambda w: w.status.phase == "Paused", advance=timedelta(seconds=30))
    assert world.status.stage == "canary-10"
    world.outcome = lambda track, metric, at: (
        QueryOutcome(samples=()) if metric == "error-rate" else QueryOutcome(samples=(0.001,))
    )
    for _ in range(20):
        world.step(timedelta(seconds=30))
        assert world.status.stage == "canary-10"


def test_pause_timeout_rollback_policy():
    world = serving(pauseTimeout="2m", onPauseTimeout="Rollback")
    upgrade(world, pauseTimeout="2m", onPauseTimeout="Rollback")
    world.run_until(canary_running)
    world.outcome = prometheus_down
    world.run_until(lambda w: w.status.phase == "RolledBack", advance=timedelta(seconds=30))
    assert "PauseTimeout" in reasons(world)


def test_pause_timeout_hold_policy_stays_paused():
    world = serving()
    upgrade(world, pauseTimeout="2m")
    world.run_until(canary_running)
    world.outcome = prometheus_down
    world.run_until(lambda w: w.status.phase == "Paused", advance=timedelta(seconds=30))
    for _ in range(20):
        world.step(timedelta(seconds=30))
    assert world.status.phase == "Paused"
    assert "holding" in next(c for c in world.status.conditions if c.type == "Reconciling").message


def test_manual_promotion_waits_for_the_promote_annotation():
    world = serving(manual=True)
    v2 = upgrade(world, manual=True)
    world.run_until(lambda w: w.status.phase == "Paused")
    assert world.status.stage == "canary-50"
    waiting = next(c for c in world.status.conditions if c.type == "Reconciling")
    assert (
        waiting.reason == "AwaitingPromotion" and "aigate.dev/promote=canary-50" in waiting.message
    )
    for _ in range(30):
        world.step(timedelta(minutes=1))
        assert world.status.phase == "Paused" and world.stable.revision != v2
    world.annotations = world.annotations | {
        "aigate.dev/promote": request("promote", v2, "canary-50")
    }
    world.run_until(lambda w: w.status.phase == "Stable" and w.stable.revision == v2)
    assert world.status.requests.promote.value == f"canary-50@{v2} by=approver"
    assert world.status.requests.promote.outcome.startswith("promoting past stage canary-50")


def test_promote_naming_another_stage_does_not_promote_this_one():
    world = serving(manual=True)
    v2 = upgrade(world, manual=True)
    world.annotations = world.annotations | {
        "aigate.dev/promote": request("promote", v2, "canary-10")
    }
    world.run_until(lambda w: w.status.phase == "Paused")
    for _ in range(10):
        world.step(timedelta(minutes=1))
    assert world.status.phase == "Paused" and world.status.stage == "canary-50"


def test_abort_rolls_back_at_once_and_is_recorded_once():
    world = serving(manual=True)
    v1 = world.stable.revision
    upgrade(world, manual=True)
    world.run_until(lambda w: w.status.stage == "canary-10" and w.canary is not None)
    abort = request("abort", text="2026-11-23T12:30:00Z", by="sre")
    world.annotations = world.annotations | {"aigate.dev/abort": abort}
    world.step()
    assert world.status.phase in ("RollingBack", "RolledBack")
    world.run_until(lambda w: w.status.phase == "RolledBack")
    assert world.stable.revision == v1 and world.canary is None
    assert world.status.requests.abort.value == abort
    assert world.status.requests.abort.by == "sre"
    handled = [e for e in world.events() if e.reason == "RequestHandled"]
    assert len(handled) == 1 and "abort" in handled[0].message and "(by sre)" in handled[0].message


def test_abort_with_nothing_in_progress_is_recorded_and_ignored():
    world = serving()
    world.annotations = world.annotations | {"aigate.dev/abort": request("abort", text="oops")}
    world.step()
    assert world.status.phase == "Stable"
    assert world.status.requests.abort.outcome.startswith("ignored")


def test_progress_deadline_rolls_back_a_canary_that_never_becomes_ready():
    world = serving()
    v1 = world.stable.revision
    upgrade(world)
    world.canary_becomes_ready = False
    world.run_until(lambda w: w.status.phase == "RolledBack", advance=timedelta(minutes=1))
    event = next(e for e in world.events() if e.reason == "ProgressDeadlineExceeded")
    assert "0/1 Ready" in event.message and "10m" in event.message
    assert world.stable.revision == v1 and world.canary is None


def test_breach_during_post_promotion_watch_restores_the_previous_version():
    world = serving(monitor="10m")
    v1 = world.stable.revision
    v2 = upgrade(world, monitor="10m")
    world.run_until(lambda w: w.status.phase == "Verifying" and w.stable.revision == v2)
    assert world.status.watch is not None and world.status.previous.revision == v1
    world.outcome = lambda track, metric, at: QueryOutcome(
        samples=(0.5 if metric == "error-rate" else 0.001,)
    )
    world.run_until(lambda w: w.status.phase == "RolledBack")
    assert world.stable.revision == v1 and world.stable.replicas == 4 and world.stable.rolled_out
    assert world.stable.version == "2.4.0"
    assert world.status.rolled_back_revisions == [v2]
    assert "PostPromotionBreach" in reasons(world)
    assert world.status.previous is None and world.status.serving.revision == v1


def test_post_promotion_watch_completes_when_healthy():
    world = serving(monitor="5m")
    v2 = upgrade(world, monitor="5m")
    world.run_until(lambda w: w.status.phase == "Verifying" and w.stable.revision == v2)
    world.run_until(lambda w: w.status.watch is None, advance=timedelta(seconds=30))
    assert "WatchCompleted" in [h.reason for h in world.status.history]
    assert world.status.phase == "Stable"


def test_first_version_breach_is_reported_but_cannot_roll_back():
    spec = plan_spec(monitor="5m")
    world = World(
        spec=spec,
        now=T0,
        annotations=approved_for(spec, T0),
        outcome=lambda track, metric, at: QueryOutcome(samples=(0.5,)),
    )
    world.run_until(lambda w: "PostPromotionBreach" in reasons(w))
    assert world.status.phase == "Stable" and world.stable is not None


def test_unapproved_spec_change_mid_canary_cancels_the_canary_and_keeps_stable():
    world = serving()
    v1 = world.stable.revision
    upgrade(world)
    world.run_until(lambda w: w.canary is not None)
    raw = spec_dict()
    raw["model"]["version"] = "9.9.9"
    world.change_spec(spec_model(raw))  # annotations still approve 2.5.0
    world.run_until(lambda w: w.status.phase == "AwaitingApproval" and w.canary is None)
    assert world.stable.revision == v1 and world.stable.replicas == 4
    cancelled = next(h for h in world.status.history if h.reason == "CanaryCancelled")
    assert cancelled.revision != world.status.revision and "not approved" in cancelled.message
    routed = next(h for h in world.status.history if h.to_phase == "AwaitingApproval")
    assert routed.from_phase == "Progressing" and routed.reason == "ApprovalRequired"


def test_restart_between_recording_and_acting_duplicates_nothing():
    """Each step, the operator records its decision, dies before acting, and a new one
    decides again from the stored status: the rollout ends the same, each fact once."""
    world = serving()
    v2 = upgrade(world)
    for _ in range(400):
        if world.status.phase == "Stable" and world.stable.revision == v2:
            break
        recorded = world.step(timedelta(0))
        # The same inputs (same observation, same measurements) against the stored status:
        replay = rollout.decide(dataclasses.replace(world.last_inputs, status=recorded.status))
        assert replay.new_measurements == ()  # measurements are never counted twice
        assert "StagePassed" not in [e.reason for e in replay.events]
        world.now += timedelta(seconds=10)
    assert world.stable.revision == v2
    passed = [h.stage for h in world.status.history if h.reason == "StagePassed"]
    assert passed == ["canary-10", "canary-50", "full"]
    pairs = list(zip(world.status.history, world.status.history[1:], strict=False))
    assert not [
        a for a, b in pairs if (a.reason, a.stage, a.message) == (b.reason, b.stage, b.message)
    ]


def _analysis(world: World):
    return world.status.rollout.analysis if world.status.rollout else None


def test_measurement_is_not_counted_twice_for_the_same_instant():
    world = serving()
    upgrade(world)
    world.run_until(lambda w: _analysis(w) is not None and _analysis(w).last_measured_at)
    state = _analysis(world)
    counters = state.metrics["error-rate"].measurements
    stamp = datetime.fromisoformat(state.last_measured_at.replace("Z", "+00:00"))
    results = (MetricResult("error-rate", "q", QueryOutcome(samples=(0.5,))),)
    stale = Measurements("canary", stamp, results, state.revision, state.stage_index)
    decision = rollout.decide(dataclasses.replace(world.inputs(), measurements=stale))
    assert decision.status.rollout.analysis.metrics["error-rate"].measurements == counters


def test_measurement_taken_for_another_stage_is_not_counted_in_this_one():
    world = serving()
    upgrade(world)
    world.run_until(lambda w: _analysis(w) is not None and _analysis(w).last_measured_at)
    state = _analysis(world)
    later = world.now + timedelta(minutes=5)
    results = (MetricResult("error-rate", "q", QueryOutcome(samples=(0.5,))),)
    for revision, stage in ((state.revision, state.stage_index + 1), ("other", state.stage_index)):
        foreign = Measurements("canary", later, results, revision, stage)
        decision = rollout.decide(dataclasses.replace(world.inputs(), measurements=foreign))
        assert decision.new_measurements == ()


@pytest.mark.parametrize(
    ("replicas", "weight", "expected"),
    [(4, 10, 1), (4, 50, 2), (4, 100, 4), (10, 25, 3), (1, 1, 1), (3, 34, 2)],
)
def test_canary_replica_rounding(replicas, weight, expected):
    assert rollout.canary_replicas(replicas, weight) == expected


def test_query_templating_escapes_values():
    from aigate.core.analysis import Subject, plan_queries

    spec = plan_spec()
    (query, _) = plan_queries(spec.rollout.analysis, Subject('a"}or{x="', "n", "r", "v", "canary"))
    assert query.query == 'err{app="a\\"}or{x=\\"",track="canary"}'


def test_approval_annotations_helper_matches_gate():
    spec = plan_spec()
    assert approval_annotations(compute_revision(spec), T0)[
        "aigate.dev/approved-revision"
    ] == compute_revision(spec)


def test_a_promote_or_retry_naming_a_short_revision_or_none_is_ignored_and_recorded():
    world = serving(manual=True)
    v2 = upgrade(world, manual=True)
    world.run_until(lambda w: w.status.phase == "Paused")
    for value in (f"canary-50@{v2[:12]} by=approver", "canary-50 by=approver", f"canary-50@{v2}"):
        world.annotations = world.annotations | {"aigate.dev/promote": value}
        world.step(timedelta(minutes=1))
        assert world.status.phase == "Paused", value
        assert world.status.requests.promote.value == value
        assert world.status.requests.promote.outcome == (
            "ignored: expected '<stage>@<full 64-hex revision> by=<user> [text]' (the full "
            "revision, and who asks)"
        )
