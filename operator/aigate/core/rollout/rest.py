"""Phases with nothing in flight: Pending, AwaitingApproval, Stable, RolledBack, Failed.

Each reconcile routes the resource (routing.route); if it belongs in another phase it goes
there (starting a rollout where the route says so), otherwise the phase keeps its children
as they should be and answers requests that have nothing to act on."""

from __future__ import annotations

from aigate.core.rollout import effects
from aigate.core.rollout.draft import Draft
from aigate.core.rollout.model import REQUEUE_WHILE_CHANGING
from aigate.core.rollout.routing import Route, route, serving_text
from aigate.core.rollout.snapshots import snapshot_of

# At rest in the same phase, only a refusal that changed (another annotation wrong, another
# reason to fail) is announced again; Stable and RolledBack are not re-entered.
_REANNOUNCED = ("AwaitingApproval", "Failed")


def settle(d: Draft) -> None:
    where = route(d)
    moved = where.phase != d.status.phase
    if moved or (where.phase in _REANNOUNCED and not d.arrived(*where)):
        if where.phase in ("Deploying", "Progressing"):
            assert d.spec is not None
            d.status.apply_error = None
            effects.begin_rollout(d, snapshot_of(d.spec))
        event = "Warning" if where.phase in ("AwaitingApproval", "Failed") else "Normal"
        d.goto(where.phase, where.reason, where.message, event, subject=d.subject_of_spec())
        if where.phase not in ("Stable", "AwaitingApproval", "RolledBack", "Failed"):
            return
    _answer_requests(d)
    _STEADY[where.phase](d, where)


def _answer_requests(d: Draft) -> None:
    abort = d.pending("abort")
    if abort is not None:
        d.handle(abort, "ignored: no rollout in progress")
    effects.answer_promote_without_rollout(d)


def _stable(d: Draft, where: Route) -> None:
    assert d.spec is not None
    serving = d.status.serving
    assert serving is not None
    full = effects.keep_serving(d)
    effects.remove_canary(d)
    stable = d.sit.stable
    ready = stable.ready_replicas if stable is not None else 0
    text = f"version {serving.version} (revision {serving.revision}) serving with {ready}/{d.replicas} replicas Ready"
    if full:
        d.available("Available", text)
        return
    d.progressing("Scaling" if stable and stable.replicas != d.replicas else "Unavailable", text)
    d.requeue_within(REQUEUE_WHILE_CHANGING)


def _held(d: Draft, where: Route) -> None:
    """AwaitingApproval, RolledBack, Failed: the serving version stays as it is (recreated if
    it disappeared), no canary runs, and the condition says what would move things on."""
    effects.remove_canary(d)
    # A rolled-back resource keeps serving at spec.replicas (scaling needs no approval);
    # otherwise the serving version is left as it is, unless it disappeared or was changed
    # by someone else (drift is reverted in every phase).
    restore = d.sit.stable is None or d.inputs.observed.drift_of("stable") is not None
    if d.status.serving is not None and (where.phase == "RolledBack" or restore):
        effects.keep_serving(d)
    message = where.message
    if where.phase == "RolledBack":
        message = rolled_back_text(d)
    elif where.phase == "Failed":
        message = f"{where.message}; {serving_text(d)}"
    d.stalled(where.reason if where.phase != "RolledBack" else "RolledBack", message)
    if d.actions:
        d.requeue_within(REQUEUE_WHILE_CHANGING)


def rolled_back_text(d: Draft) -> str:
    last = d.status.last_rollback
    revision = d.sit.revision
    why = ""
    if last is not None and last.revision == revision:
        why = f" ({last.reason}: {last.trigger.detail})"
    return (
        f"revision {revision} was rolled back{why}; {serving_text(d)}. Change the spec, or "
        f"annotate aigate.dev/retry='@{revision} by=<you> <why>' to try this revision again"
    )


_STEADY = {
    "Stable": _stable,
    "AwaitingApproval": _held,
    "RolledBack": _held,
    "Failed": _held,
}
