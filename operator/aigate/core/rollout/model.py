"""What decide() reads and what it returns: plain, immutable data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from aigate.api.records import AIRecordSpec
from aigate.api.v1alpha1 import (
    AIDeploymentSpec,
    AIDeploymentStatus,
    HistoryEntry,
    MeasurementRecord,
)
from aigate.core.analysis import Measurements
from aigate.core.children import Child, Drift
from aigate.core.gate import Signatures
from aigate.core.traffic import RouteIntent, RouteView
from aigate.core.workloads import Track

# How soon to look again. Changes to the resource itself or its Deployments wake the
# operator at once; these only bound how long anything else can go unnoticed.
# While pods start or stop. Their watch events wake the resource as they change (the
# operator's caches are updated before the wake-up), so this is only a safety net.
REQUEUE_WHILE_CHANGING = 10.0
REQUEUE_AT_REST = 60.0
REQUEUE_NOW = 0.1
MAX_BACKOFF = 300.0


@dataclass(frozen=True)
class WorkloadState:
    """What the API server says about one of our Deployments."""

    revision: str
    version: str
    replicas: int
    ready_replicas: int
    updated_replicas: int
    total_replicas: int
    observed_current: bool  # status.observedGeneration caught up with metadata.generation
    # Being deleted (a cancelled canary going away): nothing can be written to it until it
    # is gone (a create answers 409, an apply is lost with the object).
    terminating: bool = False
    template: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def rolled_out(self) -> bool:
        """Every desired pod runs the current template and is Ready, and no old pod is left."""
        return (
            self.observed_current
            and self.updated_replicas == self.replicas
            and self.ready_replicas == self.replicas
            and self.total_replicas == self.replicas
        )

    @property
    def updated_ready(self) -> int:
        """Ready pods of the current template: Ready pods less the old ones still running
        (readyReplicas counts both while a Deployment rolls); 0 until the Deployment
        controller has seen the current generation."""
        if not self.observed_current:
            return 0
        old = self.total_replicas - self.updated_replicas
        return max(0, min(self.updated_replicas, self.ready_replicas - old))

    def serves(self, revision: str, replicas: int) -> bool:
        """`revision` runs here at `replicas`, every pod Ready."""
        return self.revision == revision and self.replicas == replicas and self.rolled_out


@dataclass(frozen=True)
class Observed:
    stable: WorkloadState | None = None
    canary: WorkloadState | None = None
    # Children with our deterministic names that aigate did not create: never touched.
    conflicts: tuple[str, ...] = ()
    # aigate's children whose content is not what aigate last wrote: re-applied whole.
    drift: tuple[Drift, ...] = ()
    # (port, targetPort) of aigate's Service; None when there is none (or not aigate's).
    service_ports: tuple[int, int] | None = None

    def drift_of(self, child: Child) -> Drift | None:
        return next((d for d in self.drift if d.child == child), None)


@dataclass(frozen=True)
class ApplyDeployment:
    """Server-side apply of a track's Deployment with this template and replica count."""

    track: Track
    revision: str
    version: str
    replicas: int
    template: dict[str, Any] = field(compare=False, hash=False, repr=False, default_factory=dict)


@dataclass(frozen=True)
class DeleteDeployment:
    track: Track


@dataclass(frozen=True)
class ApplyService:
    """The one Service, with the settings of the revision that owns the traffic."""

    revision: str
    port: int
    target_port: int


Action = ApplyDeployment | DeleteDeployment | ApplyService


def action_track(action: Action) -> Child:
    """The child an action writes: stable, canary or service."""
    return "service" if isinstance(action, ApplyService) else action.track


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Inputs:
    generation: int
    spec: AIDeploymentSpec | None
    spec_error: str  # why the spec could not be used, when spec is None
    annotations: Mapping[str, str]
    status: AIDeploymentStatus
    observed: Observed
    now: datetime
    name: str = ""
    namespace: str = ""
    measurements: Measurements | None = None
    managed_fields: Sequence[Mapping[str, Any]] = ()
    # Non-empty when the stored status could not be read (e.g. written by another version):
    # the operator then acts on nothing and replaces nothing but its conditions.
    status_error: str = ""
    # Why the approval policy does not enforce for this resource (`aigate run
    # --require-approval-policy`; core/admission.py), "" when it does or is not required.
    policy_problem: str = ""
    # The reconciler's checks of the signature annotations against the approver key
    # registry (I/O); the gate weighs them (required_by is filled in from the spec).
    signatures: Signatures = field(default_factory=Signatures)
    # Risk tiers whose approvals must be signed whatever the spec says (a platform setting).
    signed_tiers: frozenset[str] = frozenset()
    uid: str = ""
    # How long AIRecords are kept (`aigate run --record-retention`): their expiresAt.
    record_retention: timedelta = timedelta(days=400)
    # The Gateway API router's rule as read (None: the replica router, or not read).
    route: RouteView | None = None


@dataclass(frozen=True)
class Decision:
    status: AIDeploymentStatus
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_after: float = REQUEUE_AT_REST
    new_measurements: tuple[MeasurementRecord, ...] = ()
    new_history: tuple[HistoryEntry, ...] = ()
    # The AIRecords this decision sealed (also in status.records.outbox, unsigned).
    new_records: tuple[AIRecordSpec, ...] = ()
    # True when only status.conditions may be written (the stored status was unreadable).
    conditions_only: bool = False
    # The Gateway API router's weights to set, before any action (None: replica router).
    route: RouteIntent | None = None
