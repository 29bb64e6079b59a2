"""Verifying: the post-promotion watch of the version now serving, analysed with the plan
approved with that version (not whatever the spec says meanwhile). A breach returns the
previous version; a watch that cannot see says so and honours pauseTimeout."""

from __future__ import annotations

from aigate.api.durations import format_duration, parse_duration
from aigate.api.v1alpha1 import AIDeploymentSpec, RollbackTrigger, WatchState
from aigate.core import analysis as an
from aigate.core.rollout import effects
from aigate.core.rollout.draft import Draft
from aigate.core.rollout.snapshots import plan_of


def run(d: Draft) -> None:
    s = d.status
    watch, serving = s.watch, s.serving
    assert watch is not None and serving is not None
    plan = plan_of(serving)
    if plan is None:  # cannot happen for a version aigate promoted; never guess a plan
        _end(
            d,
            "Stable",
            "PostPromotionBreach",
            "the serving version's recorded plan does not match its revision; watch ended",
            "Warning",
        )
        return
    if _aborted(d):
        return
    # No rollout is in flight: a promote written now is not for the next one.
    effects.answer_promote_without_rollout(d)
    effects.remove_canary(d)
    full = effects.keep_serving(d)
    analysis_spec = plan.rollout.analysis
    state = effects.count_measurements(d, watch.analysis, analysis_spec)
    watch.analysis = state
    needed = an.min_passing(analysis_spec, parse_duration(plan.rollout.post_promotion.monitor_for))
    standing = an.standing(state, analysis_spec, needed)
    if standing.breach:
        _breach(
            d, standing.breach, effects.metric_trigger(standing.breach, standing.breach_evidence)
        )
        return
    effects.requeue_for_next_measurement(d, state, analysis_spec)
    if standing.inconclusive:
        _blind(d, watch, plan, standing.inconclusive)
        return
    state.inconclusive_since = ""
    watch.warned = False
    until = effects.parse_time(watch.until) or d.now
    if d.now >= until and standing.all_passing:
        _end(
            d,
            "Stable",
            "WatchCompleted",
            f"post-promotion watch of version {serving.version} (revision {serving.revision}) "
            f"passed",
            evidence=an.latest_evidence(state),
        )
        return
    over = "; watch period over, extended until every metric passes" if d.now >= until else ""
    strength = "" if full else " (not at full strength)"
    d.progressing(
        "Verifying",
        f"version {serving.version} (revision {serving.revision}) "
        f"serving{strength}; post-promotion watch until {watch.until}{over}: "
        f"{effects.metrics_summary(state)}",
    )
    d.requeue_within(max(0.1, (until - d.now).total_seconds()))


def _aborted(d: Draft) -> bool:
    abort = d.pending("abort")
    if abort is None:
        return False
    s = d.status
    assert s.serving is not None
    if s.previous is None:
        d.handle(abort, "ignored: the first version has nothing to roll back to")
        return False
    return effects.abort_to(
        d,
        abort,
        bad=s.serving,
        target=s.previous,
        what="to the previous version",
        during=" during the watch",
    )


def _breach(d: Draft, why: str, trigger: RollbackTrigger) -> None:
    s = d.status
    assert s.serving is not None and s.watch is not None
    evidence = an.latest_evidence(s.watch.analysis)
    if s.previous is None:
        _end(
            d,
            "Stable",
            "PostPromotionBreach",
            f"{why}; there is no previous version to roll back to, so version "
            f"{s.serving.version} keeps serving: act on it",
            "Warning",
            evidence,
        )
        return
    effects.begin_rollback(
        d,
        "PostPromotionBreach",
        why,
        bad=s.serving,
        target=s.previous,
        trigger=trigger,
        evidence=evidence,
    )


def _blind(d: Draft, watch: WatchState, plan: AIDeploymentSpec, why: str) -> None:
    """The watch cannot see: said once as a Warning, then held (or rolled back) by policy."""
    s = d.status
    assert s.serving is not None
    analysis_spec = plan.rollout.analysis
    waited = effects.inconclusive_for(d, watch.analysis)
    timeout = analysis_spec.pause_timeout
    timed_out = bool(timeout) and waited > parse_duration(timeout or "0s")
    if timed_out and analysis_spec.on_pause_timeout == "Rollback" and s.previous is not None:
        detail = (
            f"post-promotion watch inconclusive for {format_duration(waited)}, over "
            f"pauseTimeout {timeout}: {why}"
        )
        effects.begin_rollback(
            d,
            "PauseTimeout",
            detail,
            bad=s.serving,
            target=s.previous,
            trigger=RollbackTrigger(kind="PauseTimeout", detail=detail),
        )
        return
    message = f"post-promotion watch cannot conclude: {why}"
    if not watch.warned:
        watch.warned = True
        d.note("WatchInconclusive", message, "Warning", an.latest_evidence(watch.analysis))
    d.progressing(
        "WatchInconclusive",
        f"{message}; watch held until data returns or a person acts (aigate.dev/abort)",
    )


def _end(d: Draft, target, reason: str, message: str, event="Normal", evidence=()) -> None:
    s = d.status
    assert s.serving is not None
    subject = (s.serving.revision, s.serving.version)
    s.watch = None
    s.previous = None
    d.goto(target, reason, message, event, evidence, subject=subject)
