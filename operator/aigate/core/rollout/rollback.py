"""RollingBack: the version that served before returns at full strength, with its own
template and Service settings, and the canary goes. A rollback always completes: a refused
apply is retried with backoff and reported, never turned into Failed."""

from __future__ import annotations

from aigate.api.v1alpha1 import RollbackSummary
from aigate.core.rollout import effects
from aigate.core.rollout.draft import Draft
from aigate.core.rollout.model import REQUEUE_WHILE_CHANGING


def run(d: Draft) -> None:
    s = d.status
    rollback = s.rollback
    assert rollback is not None
    _answer_requests(d)
    target = rollback.target
    effects.note_recreated_stable(d, target)
    effects.remove_canary(d)  # first: nothing refused later may keep the canary serving
    effects.put_stable(d, target)
    effects.put_service(d, target)
    stable = d.sit.stable
    done = (
        d.sit.canary is None and stable is not None and stable.serves(target.revision, d.replicas)
    )
    if not done:
        ready = stable.updated_ready if stable and stable.revision == target.revision else 0
        text = (
            f"{rollback.message}; restoring version {target.version} (revision "
            f"{target.revision}): {ready}/{d.replicas} Ready"
        )
        error = s.apply_error
        if error is not None and error.phase == "RollingBack":
            d.stalled(
                "RollbackBlocked",
                f"{text}; the API server refused the {error.track} "
                f"workload ({error.message}); retrying with backoff",
            )
            effects.back_off(d, error)
            return
        d.requeue_within(REQUEUE_WHILE_CHANGING)
        d.progressing(rollback.reason, text)
        return
    s.serving = target
    s.previous = None
    s.watch = None
    s.apply_error = None
    effects.remember_rolled_back(d, rollback.revision)
    s.last_rollback = RollbackSummary(
        revision=rollback.revision,
        version=rollback.version,
        to_revision=target.revision,
        reason=rollback.reason,
        trigger=rollback.trigger,
        completed_at=d.now_iso,
    )
    s.rollback = None
    d.goto(
        "RolledBack",
        "RollbackCompleted",
        f"version {rollback.version} (revision {rollback.revision}) rolled back "
        f"({rollback.reason}: {rollback.trigger.detail}); version {target.version} (revision "
        f"{target.revision}) serving with {d.replicas}/{d.replicas} Ready",
        "Warning",
        subject=(rollback.revision, rollback.version),
    )


def _answer_requests(d: Draft) -> None:
    """Requests that arrive meanwhile are recorded; a retry waits for the rollback's end."""
    for kind, outcome in (
        ("abort", "ignored: a rollback is already in progress"),
        ("promote", "ignored: a rollback is in progress"),
    ):
        request = d.pending(kind)
        if request is not None:
            d.handle(request, outcome)
