"""Deploying and Promoting: the candidate becomes the stable version.

Deploying is the first version (nothing serves, so there is no baseline for a canary and
nothing to roll back to); Promoting follows the last passed stage. Both keep going when the
spec changes meanwhile (the candidate passed what it had to), both are bounded by
progressDeadline (stuck → Stalled, still trying), and both end by recording the candidate
as what serves and starting the post-promotion watch."""

from __future__ import annotations

from datetime import timedelta

from aigate.api.durations import format_duration, parse_duration
from aigate.api.v1alpha1 import AnalysisState, WatchState
from aigate.core.gate import format_rfc3339
from aigate.core.rollout import effects
from aigate.core.rollout.draft import Draft
from aigate.core.rollout.routing import route
from aigate.core.rollout.snapshots import plan_of, snapshot_of


def run(d: Draft) -> None:
    rollout = d.status.rollout
    assert rollout is not None
    candidate = rollout.candidate
    stable = d.sit.stable
    if stable is not None and stable.serves(candidate.revision, d.replicas):
        # Serving at full strength is a fact: it is recorded before anything else is
        # decided, so a spec that changed meanwhile gets its own canary against it.
        _promoted(d)
        return
    if d.status.phase == "Deploying" and (_superseded(d) or _refused(d)):
        return
    if _aborted(d):
        return
    effects.put_stable(d, candidate)
    effects.put_service(d, candidate)
    effects.keep_canary_as_written(d, candidate)
    _waiting(d, rollout.waiting_since)


def _superseded(d: Draft) -> bool:
    """Before the first version serves, another approved revision simply replaces it."""
    rollout = d.status.rollout
    assert rollout is not None
    where = route(d)
    if where.phase != "Deploying" or d.sit.revision == rollout.candidate.revision:
        return False
    assert d.spec is not None
    effects.end_rollout(d, "superseded")
    effects.begin_rollout(d, snapshot_of(d.spec))
    d.goto("Deploying", "CandidateSuperseded", where.message, subject=d.subject_of_spec())
    return True


def _refused(d: Draft) -> bool:
    error = d.status.apply_error
    if error is None or error.phase != "Deploying" or error.generation != d.inputs.generation:
        return False
    rollout = d.status.rollout
    assert rollout is not None
    effects.end_rollout(d, "refused by the API server")
    d.goto(
        "Failed",
        "ApplyRejected",
        f"the API server refused the stable workload of revision "
        f"{rollout.candidate.revision} ({error.message}); fix the spec",
        "Warning",
    )
    return True


def _aborted(d: Draft) -> bool:
    abort = d.pending("abort")
    if abort is None:
        return False
    rollout, serving = d.status.rollout, d.status.serving
    assert rollout is not None
    if d.status.phase == "Deploying" or serving is None:
        d.handle(abort, "ignored: the first version has nothing to roll back to")
        return False
    return effects.abort_to(
        d,
        abort,
        bad=rollout.candidate,
        target=serving,
        what="the promotion",
        during=" during the promotion",
    )


def _waiting(d: Draft, waiting_since: str) -> None:
    rollout = d.status.rollout
    assert rollout is not None
    candidate = rollout.candidate
    plan = plan_of(candidate)
    stable = d.sit.stable
    ready = stable.updated_ready if stable and stable.revision == candidate.revision else 0
    since = effects.parse_time(waiting_since) or d.now
    waited = d.now - since
    what = "deploying" if d.status.phase == "Deploying" else "promoting"
    count = (
        f"{what} version {candidate.version} (revision {candidate.revision}): stable "
        f"{ready}/{d.replicas} Ready"
    )
    text = f"{count} after {format_duration(waited)}"
    error = d.status.apply_error
    if error is not None and error.phase == "Promoting":
        d.stalled(
            "ApplyFailed",
            f"{text}; the API server refused the stable workload ({error.message}); retrying",
        )
        effects.back_off(d, error)
        return
    deadline = parse_duration(plan.rollout.progress_deadline) if plan else timedelta(minutes=10)
    effects.requeue_while_waiting(d, deadline - waited)
    if waited > deadline:
        d.stalled(
            "ProgressDeadlineExceeded",
            f"{text}, over progressDeadline "
            f"{format_duration(deadline)}; still waiting for the Deployment",
        )
        return
    # Since when, not for how long: an elapsed time would make every round a status write.
    d.progressing(
        "Deploying" if what == "deploying" else "Promoting",
        f"{count}, waiting since {waiting_since} (progressDeadline {format_duration(deadline)})",
    )


def _promoted(d: Draft) -> None:
    s = d.status
    rollout = s.rollout
    assert rollout is not None
    candidate = rollout.candidate
    effects.remove_canary(d)
    before = None if s.phase == "Deploying" else s.serving
    s.serving = candidate
    s.apply_error = None
    effects.end_rollout(d, "promoted")
    plan = plan_of(candidate)
    monitor_for = parse_duration(plan.rollout.post_promotion.monitor_for) if plan else timedelta(0)
    serving_text = f"version {candidate.version} (revision {candidate.revision}) serving"
    if monitor_for > timedelta(0) and plan is not None:
        s.previous = before  # the watch's rollback target; kept while the watch runs
        until = format_rfc3339(d.now + monitor_for)
        s.watch = _watch(d, candidate.revision, until)
        d.goto(
            "Verifying",
            "Promoted",
            f"{serving_text}; post-promotion watch until {until}",
            subject=(candidate.revision, candidate.version),
        )
        return
    d.goto("Stable", "Promoted", serving_text, subject=(candidate.revision, candidate.version))


def _watch(d: Draft, revision: str, until: str) -> WatchState:
    return WatchState(
        revision=revision,
        started_at=d.now_iso,
        until=until,
        analysis=AnalysisState(
            track="stable", revision=revision, stage_index=-1, started_at=d.now_iso
        ),
    )
