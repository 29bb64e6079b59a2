"""A simulated cluster around decide(), deliberately unlike kind: Deployments take ticks to
roll out (old pods keep serving until new ones are Ready), the Deployment controller lags
a tick behind, applies can be lost (a crash between the status write and the apply),
refused (4xx) or cut short (5xx), pods flap, people delete, scale or edit children (an
edit shows as drift, as the kube adapter reports it), and the clock moves irregularly. Metric outcomes come from a function the test supplies.

The World mirrors the reconciler: plan measurements from the stored status, decide, write
the status, then act; a refused apply is written back as status.applyError the way
reconciler.py does it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aigate.api.records import AIRecordSpec
from aigate.api.v1alpha1 import (
    AIDeploymentSpec,
    AIDeploymentStatus,
    ApplyError,
    ChildRecord,
    ChildRecords,
    RouteWeights,
)
from aigate.core import analysis as an
from aigate.core import rollout, traffic
from aigate.core.analysis import Measurements, MetricResult
from aigate.core.children import Drift
from aigate.core.gate import format_rfc3339
from aigate.core.revision import compute_revision
from aigate.core.rollout.snapshots import plan_of
from aigate.core.verdict import QueryOutcome
from support.factories import approved_for, image_for, spec_dict, spec_model

Outcome = Callable[[str, str, datetime], QueryOutcome]  # (track, metric, at) -> outcome


def passing(track: str, metric: str, at: datetime) -> QueryOutcome:
    return QueryOutcome(samples=(0.001,))


@dataclasses.dataclass
class SimDeployment:
    """A Deployment as the controller rolls it: new pods become Ready `speed` per tick; old
    pods (previous template) keep serving until replaced (maxUnavailable 0)."""

    revision: str
    version: str
    replicas: int
    template: dict[str, Any]
    new_ready: int = 0
    old_ready: int = 0
    observed: bool = False  # the controller has seen the latest change
    not_ready: int = 0  # flapping: Ready pods that are NotReady this tick
    edits: int = 0  # changes by people since aigate last wrote it (0: as aigate wrote it)
    terminating: bool = False  # deleted; gone at the next tick (foreground deletion)

    def state(self) -> rollout.WorkloadState:
        if self.terminating:  # as the kube adapter reports an object being deleted
            return rollout.WorkloadState("", "", 0, self.new_ready, 0, self.replicas, False, True)
        ready = max(0, self.new_ready - self.not_ready) + self.old_ready
        return rollout.WorkloadState(
            revision=self.revision,
            version=self.version,
            replicas=self.replicas,
            ready_replicas=ready,
            updated_replicas=self.replicas if self.observed else 0,
            total_replicas=self.replicas + self.old_ready,
            observed_current=self.observed,
            template=self.template,
        )

    def apply(self, revision: str, version: str, replicas: int, template: dict) -> None:
        if revision != self.revision or template != self.template:
            self.old_ready = min(self.replicas, self.new_ready + self.old_ready)
            self.new_ready = 0
        self.revision, self.version, self.template = revision, version, template
        self.replicas = replicas
        self.new_ready = min(self.new_ready, replicas)
        self.observed = False
        self.edits = 0

    def edit(self) -> None:
        """A person's `kubectl set image`: a new template rolls out under aigate's labels."""
        self.edits += 1
        self.template = {**self.template, "edited": self.edits}
        self.old_ready = min(self.replicas, self.new_ready + self.old_ready)
        self.new_ready = 0
        self.observed = False

    def tick(self, speed: int) -> None:
        if not self.observed:
            self.observed = True
            return
        self.new_ready = min(self.replicas, self.new_ready + speed)
        self.old_ready = max(0, min(self.old_ready, self.replicas - self.new_ready))
        self.not_ready = 0


@dataclasses.dataclass
class Faults:
    """What goes wrong on the next step (each used once, then cleared)."""

    lose_actions: bool = False  # crash after the status write: nothing applied
    reject_next_apply: str = ""  # the next ApplyDeployment is refused with this 4xx text
    reject_track: str = ""  # ... only one of this track ("" for any)
    cut_after: int | None = None  # a 5xx after this many actions: the rest not applied


@dataclasses.dataclass
class World:
    spec: AIDeploymentSpec | None
    now: datetime
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    status: AIDeploymentStatus = dataclasses.field(default_factory=AIDeploymentStatus)
    deployments: dict[str, SimDeployment] = dataclasses.field(default_factory=dict)
    service: tuple[str, int, int] | None = None  # (revision, port, targetPort)
    outcome: Outcome = passing
    speed: int = 1000  # pods becoming Ready per tick; small values make rollouts slow
    canary_becomes_ready: bool = True
    generation: int = 1
    spec_error: str = ""
    conflicts: tuple[str, ...] = ()
    faults: Faults = dataclasses.field(default_factory=Faults)
    decisions: list[rollout.Decision] = dataclasses.field(default_factory=list)
    # The AIRecords delivered from status.records.outbox, as the reconciler creates them.
    delivered: list[Any] = dataclasses.field(default_factory=list)
    plans: list[Any] = dataclasses.field(default_factory=list)  # MeasurementPlans served
    served: list[tuple[Any, tuple[QueryOutcome, ...]]] = dataclasses.field(default_factory=list)
    # Measurements the measurer took while the round waited, not counted yet.
    taken: list[rollout.Taken] = dataclasses.field(default_factory=list)
    offered: list[rollout.Taken] = dataclasses.field(default_factory=list)  # to the last round
    last_caught: rollout.CaughtUp | None = None
    min_stable_ready: int | None = None  # lowest stable Ready count seen while a canary ran
    last_inputs: rollout.Inputs | None = None
    applied: list[rollout.Action] = dataclasses.field(default_factory=list)  # this step's
    policy_problem: str = ""  # the approval policy does not enforce (core/admission.py)
    # The Gateway API router's rule (spec.rollout.traffic.gatewayAPI): aigate's two weights
    # in it, None when the route does not exist. The user's route starts with stable only.
    route: dict[str, int | None] | None = dataclasses.field(
        default_factory=lambda: {"stable": 1, "canary": None}
    )
    # The canary weight the rule held each time actions were applied (what the reconciler
    # wrote first), for the model test.
    weight_at_actions: int | None = None

    # ---- what decide() sees ----------------------------------------------------------------

    @property
    def stable(self) -> rollout.WorkloadState | None:
        d = self.deployments.get("stable")
        return d.state() if d else None

    @property
    def canary(self) -> rollout.WorkloadState | None:
        d = self.deployments.get("canary")
        return d.state() if d else None

    @property
    def drift(self) -> tuple[Drift, ...]:
        return tuple(
            Drift(track, f"edit-{d.edits}", f"changed: spec.template (person), edit {d.edits}")
            for track, d in self.deployments.items()
            if d.edits and not d.terminating
        )

    @property
    def revision(self) -> str:
        assert self.spec is not None
        return compute_revision(self.spec)

    def inputs(self, measurements: Measurements | None = None) -> rollout.Inputs:
        return rollout.Inputs(
            generation=self.generation,
            spec=self.spec,
            spec_error=self.spec_error,
            annotations=dict(self.annotations),
            status=self.status,
            observed=rollout.Observed(
                stable=self.stable,
                canary=self.canary,
                conflicts=self.conflicts,
                drift=self.drift,
                service_ports=self.service[1:] if self.service else None,
            ),
            now=self.now,
            name="fraud-scorer",
            namespace="risk",
            uid="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            measurements=measurements,
            policy_problem=self.policy_problem,
            route=self.route_view(),
        )

    def gateway(self):
        serving = self.status.serving
        plan = None
        if self.spec is None and serving is not None:
            plan = plan_of(serving)
        return traffic.gateway_of(self.spec, plan)

    def route_view(self) -> traffic.RouteView | None:
        """The rule as adapters/gateway.py reads it (None with the replica router)."""
        config = self.gateway()
        if config is None:
            return None
        where = f"risk/{config.http_route}"
        if self.route is None:
            return traffic.RouteView(where, config.rule, f"HTTPRoute {where} does not exist")
        return traffic.RouteView(where, config.rule, "", self.route["stable"], self.route["canary"])

    def _route(self, intent: traffic.RouteIntent | None) -> None:
        """As reconciler._route does, before any other action: set the weights, record them."""
        if intent is None or self.route is None:
            return
        stable, canary = intent.weights
        self.route = {"stable": stable, "canary": canary}
        status = self.status.model_copy(deep=True)
        view = self.route_view()
        assert view is not None
        status.traffic.written = RouteWeights(
            route=view.route, rule=view.rule, stable=stable, canary=canary
        )
        self.status = status

    def edit_route(self, stable: int | None, canary: int | None) -> None:
        """Someone else changes (or removes: None) aigate's weights in the rule."""
        if self.route is not None:
            self.route = {"stable": stable, "canary": canary}

    # ---- one reconcile, then time passes ------------------------------------------------

    def step(self, advance: timedelta = timedelta(seconds=5)) -> rollout.Decision:
        self.offered = list(self.taken)
        caught = self.last_caught = rollout.catch_up(self.inputs(), self.taken)
        inputs = caught.inputs
        plan = rollout.measurement_plan(inputs)
        if plan is not None:
            inputs = dataclasses.replace(inputs, measurements=self._serve(plan))
        decision = caught.then(rollout.decide(inputs))
        self.status = decision.status
        # As the measurer does once the round has written status: what it was offered goes
        # (counted, or never to be).
        self.taken = [t for t in self.taken if not any(t is o for o in self.offered)]
        self.taken = self._still_due()[0]
        self.last_inputs = inputs
        self.decisions.append(decision)
        self._deliver_records()
        if not self.faults.lose_actions:
            self._route(decision.route)
        self.weight_at_actions = self.route["canary"] if self.route is not None else None
        self._act(decision.actions)
        self._watch_stable_strength()
        self.tick(advance)
        return decision

    def _serve(self, plan) -> Measurements:
        """Prometheus answers `plan` with the outcomes the test supplies."""
        outcomes = tuple(self.outcome(plan.track, q.metric, plan.at) for q in plan.queries)
        results = tuple(
            MetricResult(
                q.metric,
                q.query,
                o,
                baseline=self.outcome("stable", q.metric, plan.at) if q.baseline_query else None,
                baseline_query=q.baseline_query or "",
            )
            for q, o in zip(plan.queries, outcomes, strict=True)
        )
        self.plans.append(plan)
        self.served.append((plan, outcomes))
        return Measurements.of(plan, results)

    def _still_due(self) -> tuple[list[rollout.Taken], Any]:
        inputs = self.inputs()
        start = rollout.next_slot(inputs) if self.spec is not None else None
        if start is None or self.spec is None:
            return [], None
        basis = rollout.basis(inputs)
        return rollout.still_due(start, self.taken, self.spec.rollout.analysis, basis)

    def next_due_in(self) -> timedelta | None:
        """How long until the measurer takes the next measurement (None: nothing to take
        ahead of a round, as aigate/measurer.py decides)."""
        plan = self._still_due()[1]
        if plan is None or (plan.due and plan.ends and plan.due > plan.ends):
            return None
        return max(timedelta(0), plan.due - self.now) if plan.due else timedelta(0)

    def take_due(self) -> bool:
        """The measurer takes the measurement due now while the round waits (aigate/
        measurer.py, reconciler.take): only while its analysis runs and its pods can be
        measured now; the next round counts it."""
        self.taken, plan = self._still_due()
        wait = self.next_due_in()
        if plan is None or wait is None or wait > timedelta(0):
            return False
        inputs = self.inputs()
        running = rollout.next_measurement(inputs)
        if running is None or not an.same_analysis(running, plan):
            return False
        taken = an.taken_now(plan, self.now)
        measured = self._serve(taken)
        self.taken.append(rollout.Taken(taken, measured, rollout.basis(inputs), inputs.observed))
        return True

    def _deliver_records(self) -> None:
        """What the reconciler does after the status write: the outbox becomes records."""
        outbox = self.status.records.outbox
        if outbox:
            self.delivered.extend(AIRecordSpec.model_validate(r) for r in outbox)
            self.status = self.status.model_copy(deep=True)  # the decision stays as made
            self.status.records.outbox = []

    def tick(self, advance: timedelta) -> None:
        for name in [n for n, d in self.deployments.items() if d.terminating]:
            del self.deployments[name]
        for name, deployment in self.deployments.items():
            if name == "canary" and not self.canary_becomes_ready:
                deployment.observed = True
                continue
            deployment.tick(self.speed)
        self.now += advance

    def _act(self, actions: tuple[rollout.Action, ...]) -> None:
        """As reconciler._apply_all does: each action on its own, the first refusal
        recorded, a recorded refusal cleared once an apply of the same child goes through."""
        faults, self.faults = self.faults, Faults()
        self.applied = []
        if faults.lose_actions:
            return
        refused, cleared = False, False
        for index, action in enumerate(actions):
            if faults.cut_after is not None and index >= faults.cut_after:
                return  # a 5xx: the reconcile ends, nothing recorded
            if (
                faults.reject_next_apply
                and faults.reject_track in ("", rollout.action_track(action))
                and (not isinstance(action, rollout.DeleteDeployment))
            ):
                if not refused:
                    self._record_rejection(action, faults.reject_next_apply)
                refused = True
                continue
            self._apply(action)
            self.applied.append(action)
            error = self.status.apply_error
            cleared = cleared or (error is not None and error.track == rollout.action_track(action))
        if cleared and not refused:
            status = self.status.model_copy(deep=True)
            status.apply_error = None
            self.status = status

    def _record_rejection(self, action: rollout.Action, message: str) -> None:
        previous = self.status.apply_error
        same = previous is not None and (previous.phase, previous.track) == (
            self.status.phase,
            rollout.action_track(action),
        )
        status = self.status.model_copy(deep=True)
        status.apply_error = ApplyError(
            generation=self.generation,
            phase=self.status.phase,
            track=rollout.action_track(action),
            message=message,
            attempts=previous.attempts + 1 if same and previous else 1,
            last_at=format_rfc3339(self.now),
        )
        self.status = status

    def _apply(self, action: rollout.Action) -> None:
        self._record_child(action)
        if isinstance(action, rollout.ApplyDeployment):
            existing = self.deployments.get(action.track)
            # The API server answers 409 (create) or loses the write (apply): never done.
            assert existing is None or not existing.terminating, "write to a deleted Deployment"
            if existing is None:
                self.deployments[action.track] = SimDeployment(
                    action.revision, action.version, action.replicas, action.template
                )
            else:
                existing.apply(action.revision, action.version, action.replicas, action.template)
        elif isinstance(action, rollout.DeleteDeployment):
            if action.track in self.deployments:
                self.deployments[action.track].terminating = True
        elif isinstance(action, rollout.ApplyService):
            self.service = (action.revision, action.port, action.target_port)

    def _record_child(self, action: rollout.Action) -> None:
        """As the reconciler does after each write: status.children names what aigate wrote."""
        status = self.status.model_copy(deep=True)
        records = status.children or ChildRecords()
        track = rollout.action_track(action)
        if isinstance(action, rollout.DeleteDeployment):
            setattr(records, track, None)
        else:
            setattr(records, track, ChildRecord(uid=f"uid-{track}", digest="as-written"))
        status.children = records
        self.status = status

    def _watch_stable_strength(self) -> None:
        stable = self.stable
        if self.canary is not None and stable is not None:
            ready = stable.ready_replicas
            self.min_stable_ready = (
                ready if self.min_stable_ready is None else min(self.min_stable_ready, ready)
            )

    def run_until(
        self,
        predicate: Callable[[World], bool],
        *,
        limit: int = 500,
        advance: timedelta = timedelta(seconds=5),
    ) -> None:
        for _ in range(limit):
            if predicate(self):
                return
            self.step(advance)
        raise AssertionError(
            f"not reached after {limit} steps; phase {self.status.phase}, "
            f"conditions {[(c.type, c.reason, c.message) for c in self.status.conditions]}"
        )

    # ---- what people do ---------------------------------------------------------------

    def change_spec(self, spec: AIDeploymentSpec | None, error: str = "") -> None:
        self.spec = spec
        self.spec_error = error
        self.generation += 1

    def flap(self, track: str, pods: int = 1) -> None:
        deployment = self.deployments.get(track)
        if deployment is not None:
            deployment.not_ready = min(deployment.new_ready, pods)

    def delete_child(self, track: str) -> None:
        self.deployments.pop(track, None)

    def edit_child(self, track: str) -> None:
        deployment = self.deployments.get(track)
        if deployment is not None:
            deployment.edit()

    def events(self) -> list[rollout.Event]:
        return [e for d in self.decisions for e in d.events]

    def history(self) -> list:
        return [h for d in self.decisions for h in d.new_history]


# ---- a standard plan and worlds built on it ----------------------------------------------

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def plan_spec(
    version: str = "2.4.0",
    *,
    manual: bool = False,
    monitor: str = "0s",
    replicas: int = 4,
    port: int = 8080,
    traffic: dict | None = None,
    **analysis,
):
    raw = spec_dict()
    raw["model"]["version"] = version
    raw["replicas"] = replicas
    raw["service"] = {"port": port}
    raw["template"]["spec"]["containers"][0]["image"] = image_for(version)
    raw["rollout"]["stages"] = [
        {"name": "canary-10", "weight": 10, "duration": "1m"},
        {"name": "canary-50", "weight": 50, "duration": "1m", "manualPromotion": manual},
        {"name": "full", "weight": 100},
    ]
    raw["rollout"]["analysis"].update(
        {
            "interval": "30s",
            "failureLimit": 2,
            "inconclusiveLimit": 3,
            "metrics": [
                {
                    "name": "error-rate",
                    "query": 'err{app="{{name}}",track="{{track}}"}',
                    "max": 0.01,
                },
                {"name": "p99-latency", "query": 'p99{track="{{track}}"}', "max": 0.25},
            ],
        }
    )
    raw["rollout"]["analysis"].update(analysis)
    raw["rollout"]["postPromotion"] = {"monitorFor": monitor}
    if traffic is not None:
        raw["rollout"]["traffic"] = traffic
    return spec_model(raw)


GATEWAY = {"gatewayAPI": {"httpRoute": "models", "rule": "serve"}}


def serving(v1="2.4.0", **kwargs) -> World:
    """A world where v1 is approved, deployed and Stable (its watch over)."""
    spec = plan_spec(v1, **kwargs)
    world = World(spec=spec, now=T0, annotations=approved_for(spec, T0))
    world.run_until(lambda w: w.status.phase == "Stable")
    return world


def upgrade(world: World, v2="2.5.0", **kwargs) -> str:
    spec = plan_spec(v2, **kwargs)
    world.change_spec(spec)
    world.annotations = approved_for(spec, world.now, age=timedelta(minutes=1))
    return compute_revision(spec)
