"""The rollout state machine (pure): decide(inputs) -> Decision.

Modules, from the top: decide (dispatch), catchup (measurements taken while
the round waited), one module per phase group (rest, canary,
promotion, watch, rollback), effects and routing (what several phases share), draft (the
decision being built), situation (classify the inputs once), snapshots, table (every
allowed transition), model (inputs and outputs). See docs/state-machine.md.
"""

from aigate.core.rollout.catchup import Basis, CaughtUp, Taken, basis, catch_up, still_due
from aigate.core.rollout.decide import (
    decide,
    measurement_plan,
    next_measurement,
    next_slot,
    unreadable_status,
)
from aigate.core.rollout.effects import canary_replicas
from aigate.core.rollout.ledger import close_chain
from aigate.core.rollout.model import (
    REQUEUE_AT_REST,
    REQUEUE_NOW,
    REQUEUE_WHILE_CHANGING,
    Action,
    ApplyDeployment,
    ApplyService,
    Decision,
    DeleteDeployment,
    Event,
    Inputs,
    Observed,
    WorkloadState,
    action_track,
)
from aigate.core.rollout.table import TRANSITIONS, UndeclaredTransitionError

__all__ = [
    "REQUEUE_AT_REST",
    "REQUEUE_NOW",
    "REQUEUE_WHILE_CHANGING",
    "TRANSITIONS",
    "Action",
    "ApplyDeployment",
    "ApplyService",
    "Basis",
    "CaughtUp",
    "Decision",
    "DeleteDeployment",
    "Event",
    "Inputs",
    "Observed",
    "Taken",
    "UndeclaredTransitionError",
    "WorkloadState",
    "action_track",
    "basis",
    "canary_replicas",
    "catch_up",
    "close_chain",
    "decide",
    "measurement_plan",
    "next_measurement",
    "next_slot",
    "still_due",
    "unreadable_status",
]
