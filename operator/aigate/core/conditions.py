"""kstatus-style conditions: set one, keeping lastTransitionTime when the status holds."""

from __future__ import annotations

from aigate.api.v1alpha1 import Condition

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
AUTHORIZED = "Authorized"

MAX_MESSAGE = 1024


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    now_iso: str,
    generation: int,
) -> list[Condition]:
    """Returns a new list with `type_` set; other conditions are kept as they are."""
    status_text = "True" if status else "False"
    previous = next((c for c in conditions if c.type == type_), None)
    transition = (
        previous.last_transition_time
        if previous is not None and previous.status == status_text and previous.last_transition_time
        else now_iso
    )
    updated = Condition(
        type=type_,
        status=status_text,
        reason=reason,
        message=message[:MAX_MESSAGE],
        last_transition_time=transition,
        observed_generation=generation,
    )
    return (
        [c for c in conditions if c.type != type_] + [updated]
        if previous is None
        else [updated if c.type == type_ else c for c in conditions]
    )


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)
