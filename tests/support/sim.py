"""A pure simulation of the cluster around decide(): actions take effect at once (or
after a readiness delay), and metric outcomes come from a function the test supplies.
Used by unit and property tests of the rollout state machine."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aigate.api.v1alpha1 import AIDeploymentSpec, AIDeploymentStatus
from aigate.core import rollout
from aigate.core.analysis import Measurements, MetricResult
from aigate.core.revision import compute_revision
from aigate.core.verdict import QueryOutcome
from support.factories import approved_for, spec_dict, spec_model

Outcome = Callable[[str, str, datetime], QueryOutcome]  # (track, metric, at) -> outcome


def passing(track: str, metric: str, at: datetime) -> QueryOutcome:
    return QueryOutcome(samples=(0.001,))


@dataclasses.dataclass
class World:
    spec: AIDeploymentSpec
    now: datetime
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    status: AIDeploymentStatus = dataclasses.field(default_factory=AIDeploymentStatus)
    stable: rollout.WorkloadState | None = None
    canary: rollout.WorkloadState | None = None
    outcome: Outcome = passing
    canary_becomes_ready: bool = True
    generation: int = 1
    decisions: list[rollout.Decision] = dataclasses.field(default_factory=list)
    min_stable_ready: int | None = None  # lowest stable Ready count seen while a canary ran
    last_inputs: rollout.Inputs | None = None

    @property
    def revision(self) -> str:
        return compute_revision(self.spec)

    def inputs(self, measurements: Measurements | None = None) -> rollout.Inputs:
        return rollout.Inputs(
            generation=self.generation,
            spec=self.spec,
            spec_error="",
            annotations=self.annotations,
            status=self.status,
            observed=rollout.Observed(stable=self.stable, canary=self.canary),
            now=self.now,
            name="fraud-scorer",
            namespace="risk",
            measurements=measurements,
        )

    def step(self, advance: timedelta = timedelta(seconds=5)) -> rollout.Decision:
        inputs = self.inputs()
        plan = rollout.measurement_plan(inputs)
        if plan is not None:
            results = tuple(
                MetricResult(q.metric, q.query, self.outcome(plan.track, q.metric, plan.at))
                for q in plan.queries
            )
            inputs = dataclasses.replace(
                inputs, measurements=Measurements(plan.track, plan.at, results)
            )
        decision = rollout.decide(inputs)
        self.last_inputs = inputs
        self.decisions.append(decision)
        self.status = decision.status
        for action in decision.actions:
            self._apply(action)
        if self.canary is not None and self.stable is not None:
            ready = self.stable.ready_replicas
            self.min_stable_ready = (
                ready if self.min_stable_ready is None else min(self.min_stable_ready, ready)
            )
        self.now += advance
        return decision

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

    def change_spec(self, spec: AIDeploymentSpec) -> None:
        self.spec = spec
        self.generation += 1

    def _workload(
        self, revision: str, version: str, replicas: int, template: dict[str, Any], ready: bool
    ) -> rollout.WorkloadState:
        return rollout.WorkloadState(
            revision=revision,
            version=version,
            replicas=replicas,
            ready_replicas=replicas if ready else 0,
            updated_replicas=replicas,
            total_replicas=replicas,
            observed_current=True,
            template=template,
        )

    def _apply(self, action: rollout.Action) -> None:
        if isinstance(action, rollout.ApplyDeployment):
            ready = action.track == "stable" or self.canary_becomes_ready
            state = self._workload(
                action.revision, action.version, action.replicas, action.template, ready
            )
            setattr(self, action.track, state)
        elif isinstance(action, rollout.ScaleDeployment):
            current = getattr(self, action.track)
            if current is not None:
                setattr(
                    self,
                    action.track,
                    dataclasses.replace(
                        current,
                        replicas=action.replicas,
                        ready_replicas=action.replicas,
                        updated_replicas=action.replicas,
                        total_replicas=action.replicas,
                    ),
                )
        elif isinstance(action, rollout.DeleteDeployment):
            setattr(self, action.track, None)

    def events(self) -> list[rollout.Event]:
        return [e for d in self.decisions for e in d.events]


# ---- a standard plan and worlds built on it ----------------------------------------------

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def plan_spec(version: str = "2.4.0", *, manual: bool = False, monitor: str = "0s", **analysis):
    raw = spec_dict()
    raw["model"]["version"] = version
    raw["template"]["spec"]["containers"][0]["image"] = f"fake-model:{version}"
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
    return spec_model(raw)


def serving(v1="2.4.0", **kwargs) -> World:
    """A world where v1 is approved, deployed and Stable (its watch over)."""
    spec = plan_spec(v1, **kwargs)
    world = World(spec=spec, now=T0, annotations=approved_for(spec, T0))
    world.run_until(lambda w: w.status.phase == "Stable" and not w.status.monitor_until)
    return world


def upgrade(world: World, v2="2.5.0", **kwargs) -> str:
    spec = plan_spec(v2, **kwargs)
    world.change_spec(spec)
    world.annotations = approved_for(spec, world.now, age=timedelta(minutes=1))
    return compute_revision(spec)
