"""Every phase change decide() may make, declared once: (from, to, reason).

decide() refuses to make a transition that is not listed here (UndeclaredTransitionError), the
unit tests enumerate the table, and docs/state-machine.md is rendered from it
(`python -m aigate.core.rollout.table`).
"""

from __future__ import annotations

from typing import NamedTuple

from aigate.api.v1alpha1 import Phase


class Transition(NamedTuple):
    source: Phase
    target: Phase
    reason: str
    meaning: str


class UndeclaredTransitionError(AssertionError):
    """A bug: decide() tried a phase change the table does not declare."""


# Phases where nothing is in flight: what happens next depends only on the spec, the
# approval and what serves (routing.route).
AT_REST: tuple[Phase, ...] = ("Pending", "AwaitingApproval", "Stable", "RolledBack", "Failed")
# Phases of a canary rollout (status.rollout is set, the canary runs).
CANARY: tuple[Phase, ...] = ("Progressing", "Paused")

# Where a resource at rest goes, and why (routing.route returns one of these).
ROUTES: dict[tuple[Phase, str], str] = {
    ("Failed", "InvalidSpec"): "the spec cannot be used (the condition names the field)",
    ("Failed", "ChildConflict"): "a child's name is held by an object aigate did not create",
    ("Failed", "ApplyRejected"): "the API server refused the new revision's workload",
    ("Stable", "Serving"): "the spec's revision is the one serving",
    ("AwaitingApproval", "ApprovalRequired"): "the spec's revision is not approved",
    ("AwaitingApproval", "ApprovalPolicyMissing"): (
        "the approval policy does not enforce, so no approval is trusted"
    ),
    ("RolledBack", "RevisionRolledBack"): "the spec's revision was rolled back, not retried",
    ("Deploying", "FirstVersion"): "nothing serves yet: the approved revision goes to stable",
    ("Progressing", "RolloutStarted"): "an approved new revision starts its canary stages",
}
# Which routes each phase can take. Stable and RolledBack are not re-entered from
# themselves; a refusal that changed is announced again. Nothing but a candidate's own
# workload is refused for good (ApplyRejected), and only Pending lacks a record of
# what serves (Deploying), apart from a resource that never served.
_FROM_REST: dict[Phase, tuple[tuple[Phase, str], ...]] = {
    "Pending": (
        ("Failed", "InvalidSpec"),
        ("Failed", "ChildConflict"),
        ("Stable", "Serving"),
        ("AwaitingApproval", "ApprovalRequired"),
        ("AwaitingApproval", "ApprovalPolicyMissing"),
        ("Deploying", "FirstVersion"),
        ("Progressing", "RolloutStarted"),
    ),
    "AwaitingApproval": (
        ("Failed", "InvalidSpec"),
        ("Failed", "ChildConflict"),
        ("Stable", "Serving"),
        ("AwaitingApproval", "ApprovalRequired"),
        ("AwaitingApproval", "ApprovalPolicyMissing"),
        ("RolledBack", "RevisionRolledBack"),
        ("Deploying", "FirstVersion"),
        ("Progressing", "RolloutStarted"),
    ),
    "Stable": (
        ("Failed", "InvalidSpec"),
        ("Failed", "ChildConflict"),
        ("AwaitingApproval", "ApprovalRequired"),
        ("AwaitingApproval", "ApprovalPolicyMissing"),
        ("RolledBack", "RevisionRolledBack"),
        ("Progressing", "RolloutStarted"),
    ),
    "RolledBack": (
        ("Failed", "InvalidSpec"),
        ("Failed", "ChildConflict"),
        ("Stable", "Serving"),
        ("AwaitingApproval", "ApprovalRequired"),
        ("AwaitingApproval", "ApprovalPolicyMissing"),
        ("Progressing", "RolloutStarted"),
    ),
    "Failed": (
        ("Failed", "InvalidSpec"),
        ("Failed", "ChildConflict"),
        ("Failed", "ApplyRejected"),
        ("Stable", "Serving"),
        ("AwaitingApproval", "ApprovalRequired"),
        ("AwaitingApproval", "ApprovalPolicyMissing"),
        ("RolledBack", "RevisionRolledBack"),
        ("Deploying", "FirstVersion"),
        ("Progressing", "RolloutStarted"),
    ),
}
# A canary the spec no longer asks for is cancelled and the resource routed anew.
_CANCEL_ROUTES: tuple[tuple[Phase, str], ...] = (
    ("Failed", "InvalidSpec"),
    ("Failed", "ChildConflict"),
    ("Failed", "ApplyRejected"),
    ("Stable", "Serving"),
    ("AwaitingApproval", "ApprovalRequired"),
    ("AwaitingApproval", "ApprovalPolicyMissing"),
    ("RolledBack", "RevisionRolledBack"),
)

_ROLLBACK_REASONS = (
    ("AnalysisFailed", "a metric breached its failure limit"),
    ("ProgressDeadlineExceeded", "the canary was not Ready within progressDeadline"),
    ("AbortRequested", "a person asked to abort (aigate.dev/abort)"),
)


# The transitions of the phases that have a job in flight.
_IN_FLIGHT_ROWS: tuple[Transition, ...] = (
    # pauseTimeout counts from the moment the analysis paused
    Transition(
        "Paused",
        "RollingBack",
        "PauseTimeout",
        "inconclusive past pauseTimeout with onPauseTimeout: Rollback",
    ),
    Transition(
        "Progressing",
        "Paused",
        "AwaitingPromotion",
        "a manual stage passed its analysis and waits for aigate.dev/promote",
    ),
    Transition("Paused", "Progressing", "AnalysisResumed", "measurements conclusive again"),
    Transition(
        "Deploying",
        "Deploying",
        "CandidateSuperseded",
        "another approved revision replaces the first version before it served",
    ),
    Transition("Deploying", "Failed", "ApplyRejected", "the API server refused the workload"),
    Transition("Deploying", "Verifying", "Promoted", "first version serving; watch starts"),
    Transition("Deploying", "Stable", "Promoted", "first version serving (no watch)"),
    Transition("Promoting", "Verifying", "Promoted", "new version serving; watch starts"),
    Transition("Promoting", "Stable", "Promoted", "new version serving (no watch)"),
    Transition(
        "Promoting",
        "RollingBack",
        "AbortRequested",
        "a person aborted the promotion: the version that served before returns",
    ),
    Transition("Verifying", "Stable", "WatchCompleted", "the post-promotion watch passed"),
    Transition(
        "Verifying",
        "Stable",
        "PostPromotionBreach",
        "breach with no previous version to return to: reported, keeps serving",
    ),
    Transition(
        "Verifying",
        "RollingBack",
        "PostPromotionBreach",
        "breach during the watch: the previous version returns",
    ),
    Transition(
        "Verifying",
        "RollingBack",
        "AbortRequested",
        "a person aborted during the watch: the previous version returns",
    ),
    Transition(
        "Verifying",
        "RollingBack",
        "PauseTimeout",
        "the watch could not see past pauseTimeout with onPauseTimeout: Rollback",
    ),
    Transition(
        "RollingBack",
        "RolledBack",
        "RollbackCompleted",
        "the version that served before runs at full strength, no canary",
    ),
)


def _rows() -> tuple[Transition, ...]:
    rows: list[Transition] = []
    for source, routes in _FROM_REST.items():
        rows += [Transition(source, t, r, ROUTES[(t, r)]) for t, r in routes]
    for source in CANARY:
        rows += [
            Transition(source, t, r, "canary cancelled: " + ROUTES[(t, r)])
            for t, r in _CANCEL_ROUTES
        ]
        rows += [
            Transition(
                source,
                "Progressing",
                "CanarySuperseded",
                "another approved revision replaces the canary, from its first stage",
            ),
            Transition(
                source,
                "Paused",
                "AnalysisInconclusive",
                "inconclusive measurements past inconclusiveLimit",
            ),
            Transition(source, "Progressing", "StageStarted", "a stage passed; the next starts"),
            Transition(source, "Promoting", "AllStagesPassed", "the last stage passed"),
        ]
        rows += [Transition(source, "RollingBack", r, m) for r, m in _ROLLBACK_REASONS]
    rows += _IN_FLIGHT_ROWS
    return tuple(rows)


TRANSITIONS: tuple[Transition, ...] = _rows()
_INDEX = frozenset((t.source, t.target, t.reason) for t in TRANSITIONS)


def declared(source: str, target: str, reason: str) -> bool:
    return (source, target, reason) in _INDEX


def check(source: str, target: str, reason: str) -> None:
    if not declared(source, target, reason):
        raise UndeclaredTransitionError(f"{source} -> {target} ({reason}) is not in the table")


def render_markdown() -> str:
    lines = [
        "| from | to | reason | when |",
        "|---|---|---|---|",
    ]
    lines += [f"| {t.source} | {t.target} | {t.reason} | {t.meaning} |" for t in TRANSITIONS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
