"""Model-based test: decide() driven through the faulty simulator by random interleavings of
people, GitOps, Prometheus, the Deployment controller and crashes; invariants are checked
after every step against a ghost that keeps its own account of what truly happened.

Budget: `make test` runs the default profile; `HYPOTHESIS_PROFILE=long` soaks it.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import os
import re
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from aigate.api.durations import parse_duration
from aigate.api.v1alpha1 import AIDeploymentSpec, AIDeploymentStatus
from aigate.core import rollout
from aigate.core.analysis import min_passing
from aigate.core.requests import Request
from aigate.core.revision import compute_revision
from aigate.core.rollout import table
from aigate.core.rollout.draft import Draft
from aigate.core.rollout.situation import classify
from aigate.core.verdict import QueryOutcome, judge
from support.factories import approval_annotations, approved_for
from support.sim import GATEWAY, T0, Faults, World, plan_spec

settings.register_profile(
    "default-model",
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile(
    "long",
    max_examples=600,
    stateful_step_count=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
PROFILE = "long" if os.environ.get("HYPOTHESIS_PROFILE") == "long" else "default-model"

CANARY_PHASES = ("Progressing", "Paused")
IN_FLIGHT = ("Deploying", "Promoting", "RollingBack", "Verifying")
ROLLING = ("Deploying", "Progressing", "Paused", "Promoting", "Verifying", "RollingBack")
OUTCOMES = [
    QueryOutcome(samples=(0.001,)),  # pass
    QueryOutcome(samples=(0.5,)),  # fail
    QueryOutcome.failed("Prometheus unreachable: ConnectionError"),
    QueryOutcome(samples=()),
    QueryOutcome(samples=(math.nan,)),
    QueryOutcome(samples=(math.inf,)),
    QueryOutcome(samples=(0.001, 0.002)),
]
STEP = st.sampled_from([1, 5, 10, 20, 30])
HANDLED = re.compile(r"^aigate\.dev/(promote|abort|retry)=('(?:[^'\\]|\\.)*')")


@dataclasses.dataclass
class StageEvidence:
    """What the ghost saw of one stage of one attempt: canary-ready time and the verdicts
    it served (judged by the ghost itself)."""

    ready_seconds: float = 0.0
    last_verdicts: dict[str, str] = dataclasses.field(default_factory=dict)
    passes: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Ghost:
    specs: dict[str, AIDeploymentSpec] = dataclasses.field(default_factory=dict)
    served: list[str] = dataclasses.field(default_factory=list)  # truly fully served, in order
    evidence: dict[tuple[int, str, int], StageEvidence] = dataclasses.field(default_factory=dict)
    passed_stages: dict[tuple[int, str], set[int]] = dataclasses.field(default_factory=dict)
    served_at_start: dict[int, str | None] = dataclasses.field(default_factory=dict)
    before_promotion: dict[str, str | None] = dataclasses.field(default_factory=dict)
    handled: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    first_approved: set[str] = dataclasses.field(default_factory=set)


def model_spec(
    version: str,
    manual: bool = False,
    monitor: str = "0s",
    replicas: int = 4,
    traffic: dict | None = None,
):
    """A plan short enough for a random walk to get through: 20 s stages, 10 s interval."""
    spec = plan_spec(
        version,
        manual=manual,
        monitor=monitor,
        replicas=replicas,
        traffic=traffic,
        interval="10s",
        failureLimit=1,
        inconclusiveLimit=2,
        pauseTimeout="1m",
    )
    raw = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    raw["rollout"]["progressDeadline"] = "2m"
    for stage in raw["rollout"]["stages"][:2]:
        stage["duration"] = "20s"
    return AIDeploymentSpec.model_validate(raw)


class RolloutModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.outcomes: dict[tuple[str, str], QueryOutcome] = {}
        self.counter = 0

    @initialize(
        start=st.sampled_from(["fresh", "serving", "serving", "serving"]),
        monitor=st.sampled_from(["0s", "1m"]),
        router=st.sampled_from(["Replicas", "GatewayAPI", "GatewayAPI-budget"]),
    )
    def start(self, start, monitor, router):
        self.traffic = None
        if router.startswith("GatewayAPI"):
            budget = {"canaryReplicas": 1} if router.endswith("budget") else {}
            self.traffic = {**GATEWAY, **budget}
        spec = model_spec("1.0.0", monitor=monitor, traffic=self.traffic)
        self.world = World(spec=spec, now=T0, annotations=approved_for(spec, T0))
        self.world.outcome = lambda track, metric, at: self.outcomes.get(
            (track, metric), OUTCOMES[0]
        )
        self.ghost = Ghost(specs={compute_revision(spec): spec})
        self.world.speed = 1  # rollouts take time: one pod Ready per tick
        if start == "serving":
            for _ in range(20):
                if self.world.status.phase == "Stable":
                    break
                self._step(timedelta(seconds=30))

    # ---- people and GitOps --------------------------------------------------------------

    @rule(
        version=st.sampled_from(["1.0.0", "2.0.0", "3.0.0"]),
        approved=st.booleans(),
        manual=st.booleans(),
        monitor=st.sampled_from(["0s", "2m"]),
        then=st.integers(1, 15),
    )
    def apply_spec(self, version, approved, manual, monitor, then):
        """A new spec, with its approval in the same apply when `approved` (GitOps)."""
        spec = model_spec(version, manual=manual, monitor=monitor, traffic=self.traffic)
        self.ghost.specs[compute_revision(spec)] = spec
        self.world.change_spec(spec)
        if approved:
            self.world.annotations = approved_for(spec, self.world.now, timedelta(minutes=1))
        for _ in range(then):
            self._step(timedelta(seconds=10))

    @rule(missing=st.booleans(), then=STEP)
    def approval_policy(self, missing, then):
        """The approval policy is deleted (or bound with Warn only), or comes back."""
        self.world.policy_problem = "ValidatingAdmissionPolicy p not found" if missing else ""
        self._step(timedelta(seconds=then))

    @rule(then=STEP)
    def break_spec(self, then):
        self.world.change_spec(None, "spec.rollout.analysis.metrics[0].query: unknown")
        self._step(timedelta(seconds=then))

    @rule(replicas=st.integers(1, 6), then=STEP)
    def scale(self, replicas, then):
        if self.world.spec is not None:
            raw = self.world.spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
            self.world.change_spec(AIDeploymentSpec.model_validate({**raw, "replicas": replicas}))
        self._step(timedelta(seconds=then))

    @rule(wrong=st.sampled_from(["other", "expired", "none"]), then=STEP)
    def withdraw_approval(self, wrong, then):
        revision = "f" * 12 if wrong == "other" else self.world.status.revision or "x"
        self.world.annotations = {
            "other": approval_annotations(revision, self.world.now),
            "expired": approval_annotations(revision, self.world.now - timedelta(days=30)),
            "none": {},
        }[wrong]
        self._step(timedelta(seconds=then))

    @rule(
        kind=st.sampled_from(["promote", "abort", "retry"]),
        stage=st.sampled_from(["canary-10", "canary-50", "full", ""]),
        bind=st.booleans(),
        reuse=st.booleans(),
        then=st.integers(1, 15),
    )
    def request(self, kind, stage, bind, reuse, then):
        if not reuse:
            self.counter += 1
        text = f"r{self.counter}"
        # bound: the full revision the request is for; unbound values are never acted on
        revision = (
            {
                "promote": self.world.status.canary_revision,
                "abort": self.world.status.canary_revision,
                "retry": self.world.status.revision,
            }[kind]
            if bind
            else ""
        )
        target = (
            f"{stage}@{revision}" if kind == "promote" else (f"@{revision}" if revision else "")
        )
        if kind == "promote" and not revision:
            target = stage
        value = " ".join(part for part in (target, "by=someone", text) if part)
        self.world.annotations = self.world.annotations | {f"aigate.dev/{kind}": value}

        # ---- Prometheus, pods, the controller, crashes -----------------------------------------
        for _ in range(then):
            self._step(timedelta(seconds=10))

    @rule(
        track=st.sampled_from(["canary", "stable"]),
        metric=st.sampled_from(["error-rate", "p99-latency"]),
        outcome=st.sampled_from(OUTCOMES),
        then=STEP,
    )
    def prometheus(self, track, metric, outcome, then):
        self.outcomes[(track, metric)] = outcome
        self._step(timedelta(seconds=then))

    @rule(track=st.sampled_from(["canary", "stable"]), pods=st.integers(1, 3), then=STEP)
    def flap(self, track, pods, then):
        self.world.flap(track, pods)
        self._step(timedelta(seconds=then))

    @rule(track=st.sampled_from(["canary", "stable"]), then=STEP)
    def delete_child(self, track, then):
        self.world.delete_child(track)
        self._step(timedelta(seconds=then))

    @rule(track=st.sampled_from(["canary", "stable"]), then=STEP)
    def edit_child(self, track, then):
        """`kubectl set image` on a child: drift, which the next decision must revert."""
        self.world.edit_child(track)
        self._step(timedelta(seconds=then))

    @rule(speed=st.sampled_from([0, 1, 2, 1000]), canary_ready=st.booleans(), then=STEP)
    def controller(self, speed, canary_ready, then):
        self.world.speed = speed
        self.world.canary_becomes_ready = canary_ready
        self._step(timedelta(seconds=then))

    @rule(kind=st.sampled_from(["lose", "reject", "reject-canary", "cut"]), then=STEP)
    def fault(self, kind, then):
        self.world.faults = {
            "lose": Faults(lose_actions=True),
            "reject": Faults(reject_next_apply="HTTP 422: quota exceeded"),
            "reject-canary": Faults(reject_next_apply="HTTP 403: denied", reject_track="canary"),
            "cut": Faults(cut_after=1),
        }[kind]

        # ---- time ------------------------------------------------------------------------------
        self._step(timedelta(seconds=then))

    @rule(seconds=st.sampled_from([45, 120, 700]))
    def time_jumps(self, seconds):
        self._step(timedelta(seconds=seconds))

    @precondition(lambda self: self.world.status.phase != "Stable")
    @rule(steps=st.integers(1, 12), seconds=st.sampled_from([5, 10, 20]))
    def settle(self, steps, seconds):
        """Time passes with nothing else happening: lets rollouts get somewhere."""
        for _ in range(steps):
            self._step(timedelta(seconds=seconds))

    @precondition(lambda self: self.world.status.phase in ROLLING)
    @rule(steps=st.integers(5, 30))
    def let_it_run(self, steps):
        """Nothing interferes until the phase changes: a rollout gets to its next phase (or
        not), where the other rules get their chance to interfere."""
        phase = self.world.status.phase
        for _ in range(steps):
            self._step(timedelta(seconds=10))
            if self.world.status.phase != phase:
                return

    @precondition(lambda self: self.world.status.phase in ROLLING)
    @rule(count=st.integers(1, 4), then=STEP)
    def slow_round(self, count, then):
        """The round waits on a slow API server while measurements fall due: the measurer
        takes each at its due time (the pods change meanwhile), and the next round counts
        those still due, in order."""
        world = self.world
        for _ in range(count):
            wait = world.next_due_in()
            if wait is None:
                break
            status, canary, served = world.status, world.canary, len(world.served)
            world.tick(wait)
            self._note_ready_time(status, canary, wait)
            if world.take_due():
                self._note_measurements(status, world.served[served:])
        self._step(timedelta(seconds=then))

    @rule(
        edit=st.sampled_from(["all-to-canary", "canary-removed", "route-deleted", "route-back"]),
        then=STEP,
    )
    def route(self, edit, then):
        """Someone edits the HTTPRoute's rule, deletes the route, or creates it again."""
        if edit == "route-deleted":
            self.world.route = None
        elif edit == "route-back":
            self.world.route = self.world.route or {"stable": 1, "canary": None}
        else:
            self.world.edit_route(0, 100 if edit == "all-to-canary" else None)
        self._step(timedelta(seconds=then))

    @rule(then=STEP)
    def conflict(self, then):
        """Someone creates an object with the canary's name, then removes it."""
        self.world.conflicts = ("Deployment fraud-scorer-canary",)
        self._step(timedelta(seconds=then))
        self.world.conflicts = ()
        self._step(timedelta(seconds=then))

    def _step(self, advance: timedelta) -> None:
        world = self.world
        before = world.status.model_copy(deep=True)
        observed_canary = world.canary
        annotations = dict(world.annotations)
        served_before = len(world.served)
        decision = world.step(advance)
        after = decision.status
        self._note_truth()  # what this decision observed counts for its own checks
        self._note_measurements(before, world.served[served_before:])
        # The advance after this decision runs under the status it wrote (a stage entered
        # with its canary already serving is ready from that moment, as decide() counts).
        self._note_ready_time(after, observed_canary, advance)
        self._check_stage_progress(before, after, annotations)
        self._check_stable_applies(before, decision, annotations)
        self._check_rollback(before, after)
        self._check_without_policy(before, after)
        self._check_records(decision)
        self._check_drift_reverted(decision)
        self._check_traffic(decision)
        self._check_idempotent(decision)

    # ---- the ghost's account ---------------------------------------------------------------

    def _note_measurements(self, before: AIDeploymentStatus, served) -> None:
        rollout_state = before.rollout
        for plan, outcomes in served:
            if plan.track != "canary" or rollout_state is None:
                continue
            spec = self.ghost.specs.get(plan.revision)
            if spec is None:
                continue
            key = (rollout_state.attempt, plan.revision, plan.stage_index)
            evidence = self.ghost.evidence.setdefault(key, StageEvidence())
            by_name = {m.name: m for m in spec.rollout.analysis.metrics}
            for query, outcome in zip(plan.queries, outcomes, strict=True):
                verdict = judge(by_name[query.metric], outcome).verdict
                evidence.last_verdicts[query.metric] = verdict
                if verdict == "Pass":
                    evidence.passes[query.metric] = evidence.passes.get(query.metric, 0) + 1

    def _note_ready_time(self, before: AIDeploymentStatus, canary, advance: timedelta) -> None:
        r = before.rollout
        if r is None or before.phase not in CANARY_PHASES or canary is None:
            return
        # A canary budget (Gateway API) is the size of every stage, known from the plan
        # before the first round of a stage asks for it.
        spec = self.ghost.specs.get(r.candidate.revision)
        traffic = spec.rollout.traffic if spec is not None else None
        want = (traffic.canary_replicas if traffic else None) or r.canary_replicas
        if canary.serves(r.candidate.revision, want):
            key = (r.attempt, r.candidate.revision, r.stage_index)
            self.ghost.evidence.setdefault(
                key, StageEvidence()
            ).ready_seconds += advance.total_seconds()

    def _note_truth(self) -> None:
        """What served, as decide() could see it: a version Ready only between two
        observations (deleted before the operator looked) never served as far as any
        controller can tell."""
        stable = self.world.last_inputs.observed.stable
        truly_serving = stable is not None and stable.rolled_out and stable.replicas > 0
        if truly_serving and (not self.ghost.served or self.ghost.served[-1] != stable.revision):
            self.ghost.served.append(stable.revision)
        r = self.world.status.rollout
        if r is not None and r.attempt not in self.ghost.served_at_start:
            self.ghost.served_at_start[r.attempt] = (
                self.world.status.serving.revision if self.world.status.serving else None
            )

    # ---- invariants checked after every step -------------------------------------------

    def _check_stage_progress(self, before, after, annotations) -> None:
        """A stage counts as passed only with the ghost's own evidence: ready for its
        duration, every metric's last served verdict Pass (inconclusive never passes),
        enough passes, and for a manual stage a promote naming it."""
        r0 = before.rollout
        if r0 is None or before.phase not in CANARY_PHASES:
            return
        r1 = after.rollout
        advanced = after.phase == "Promoting" or (
            r1 is not None and r1.attempt == r0.attempt and r1.stage_index > r0.stage_index
        )
        if not advanced:
            return
        spec = self.ghost.specs[r0.candidate.revision]
        stage = spec.rollout.stages[r0.stage_index]
        evidence = self.ghost.evidence.get(
            (r0.attempt, r0.candidate.revision, r0.stage_index), StageEvidence()
        )
        duration = parse_duration(stage.duration)
        needed = min_passing(spec.rollout.analysis, duration)
        assert evidence.ready_seconds >= duration.total_seconds(), (stage.name, evidence)
        for metric in spec.rollout.analysis.metrics:
            assert evidence.last_verdicts.get(metric.name) == "Pass", (stage.name, evidence)
            assert evidence.passes.get(metric.name, 0) >= needed, (stage.name, evidence)
        if stage.manual_promotion:
            value = annotations.get("aigate.dev/promote", "")
            request = Request("promote", value)
            assert request.stage == stage.name and request.names_revision(r0.candidate.revision), (
                f"stage {stage.name} passed without a promote for it ({value!r})"
            )
            assert request.digest not in before.handled_requests, "promote used twice"
        self.ghost.passed_stages.setdefault((r0.attempt, r0.candidate.revision), set()).add(
            r0.stage_index
        )

    def _check_stable_applies(self, before, decision, annotations) -> None:
        """No revision's template reaches stable unless it already served (a restore, with
        the same template) or its gate was open and it is the first version or it passed
        every stage of its own plan in that rollout."""
        for action in self.world.applied:
            if isinstance(action, rollout.DeleteDeployment):
                assert action.track == "canary", "the operator deleted stable"
            if not isinstance(action, rollout.ApplyDeployment) or action.track != "stable":
                continue
            revision = action.revision
            if revision in self.ghost.served:
                spec = self.ghost.specs.get(revision)
                if spec is not None:
                    expected = spec.template.model_dump(
                        mode="json", by_alias=True, exclude_unset=True
                    )
                    assert action.template == expected, "restored with another template"
                continue
            spec = self.ghost.specs[revision]
            if not self.ghost.served:
                assert self._authorised(revision, before, annotations), "first version unapproved"
                continue
            attempt = decision.status.rollout.attempt if decision.status.rollout else None
            passed = {
                key: stages
                for key, stages in self.ghost.passed_stages.items()
                if key[1] == revision
            }
            full = set(range(len(spec.rollout.stages)))
            assert any(stages >= full for stages in passed.values()), (
                f"revision {revision} reached stable without passing its stages "
                f"(attempt {attempt}, passed {passed})"
            )
        if decision.status.phase in CANARY_PHASES:
            serving = decision.status.serving
            for action in decision.actions:
                if isinstance(action, rollout.ApplyDeployment) and action.track == "stable":
                    assert serving is not None and action.revision == serving.revision
                    assert action.replicas == self.world.spec.replicas

    def _check_without_policy(self, before, after) -> None:
        """While the approval policy does not enforce (docs/decisions/0009): no rollout
        starts, no stage advances, no promote or retry is acted on."""
        if not self.world.last_inputs.policy_problem:
            return
        r0, r1 = before.rollout, after.rollout
        if r1 is not None:
            assert r0 is not None and r1.attempt == r0.attempt, "a rollout started"
            assert r1.stage_index <= r0.stage_index, "a stage advanced"
        if before.phase in CANARY_PHASES:
            assert after.phase != "Promoting", "promoted without the policy"
        for kind in ("promote", "retry"):
            handled = getattr(after.requests, kind)
            if handled is not None and handled != getattr(before.requests, kind):
                # never acted on: refused for the policy, or ignored for its shape first
                never = ("refused: the approval policy", "ignored: expected")
                assert handled.outcome.startswith(never), handled

    def _authorised(self, revision, before, annotations) -> bool:
        inputs = dataclasses.replace(self.world.last_inputs, status=before, annotations=annotations)
        d = Draft(classify(inputs))
        return d.authorised() or (
            before.approval is not None and before.approval.revision == revision
        )

    def _check_rollback(self, before, after) -> None:
        if after.phase == "RollingBack" and before.phase != "RollingBack":
            target = after.rollback.target.revision
            if before.phase == "Verifying":
                expected = self.ghost.before_promotion.get(before.serving.revision)
            else:
                attempt = before.rollout.attempt if before.rollout else None
                expected = self.ghost.served_at_start.get(attempt, target)
            assert target == expected, f"rollback to {target}, but {expected} served last"
        if after.phase == "Verifying" and before.phase != "Verifying":
            r = before.rollout
            self.ghost.before_promotion[after.serving.revision] = (
                self.ghost.served_at_start.get(r.attempt) if r else None
            )
        if after.phase == "RolledBack" and before.phase == "RollingBack":
            target = before.rollback.target
            stable, world = self.world.stable, self.world
            assert world.canary is None, "a canary survived the rollback"
            assert stable is not None and stable.revision == target.revision
            assert (
                stable.rolled_out and stable.replicas == world.last_inputs.spec.replicas
                if (world.last_inputs.spec)
                else True
            )
            spec = self.ghost.specs.get(target.revision)
            if spec is not None:
                assert stable.template == spec.template.model_dump(
                    mode="json", by_alias=True, exclude_unset=True
                )
                if world.service is not None:
                    assert world.service[1] == spec.service.port

    def _check_drift_reverted(self, decision) -> None:
        """A child found changed by someone else is written again (or, a canary, deleted)
        by the same decision, unless a refused write of it is backing off; each drifted
        content is reported once."""
        inputs = self.world.last_inputs
        touched = {rollout.action_track(a) for a in decision.actions}
        error = inputs.status.apply_error
        for drift in inputs.observed.drift:
            backing_off = error is not None and error.track == drift.child
            assert backing_off or drift.child in touched, (
                f"drifted {drift.child} left as it is in {inputs.status.phase}: {decision.actions}"
            )
        noted = [h for h in decision.new_history if h.reason == "DriftDetected"]
        records = inputs.status.children
        for drift in inputs.observed.drift:
            record = getattr(records, drift.child) if records is not None else None
            if record is not None and record.drift_noted == drift.digest:
                assert not any(drift.child in h.message for h in noted), "reported twice"

    def _check_traffic(self, decision) -> None:
        """A rolled-back, aborted or promoted canary never keeps weight; the route is at 0
        for the canary before the canary is deleted; a canary gets weight only with Ready
        pods of its candidate; a route edited by someone else is reverted by the same
        decision and reported once per content found."""
        s, world, inputs = decision.status, self.world, self.world.last_inputs
        if s.phase not in ("Progressing", "Paused", "Promoting"):
            assert s.traffic.canary_weight == 0, (s.phase, s.traffic)
            assert decision.route is None or decision.route.canary_weight == 0
        if s.traffic.router == "Replicas":
            assert decision.route is None
            return
        intent = decision.route
        assert intent is not None
        if intent.canary_weight:
            canary, rollout_ = inputs.observed.canary, s.rollout
            assert canary is not None and rollout_ is not None
            assert canary.revision == rollout_.candidate.revision and canary.updated_ready >= 1
        deleting = any(isinstance(a, rollout.DeleteDeployment) for a in decision.actions)
        if deleting and world.route is not None:
            assert world.weight_at_actions == 0, "the canary went while the route gave it weight"
        view = inputs.route
        noted = [h for h in decision.new_history if h.reason == "TrafficRouteDrift"]
        written = inputs.status.traffic.written
        if view is not None and not view.problem and written is not None:
            foreign = (view.stable, view.canary) not in (
                (written.stable, written.canary),
                intent.weights,
            )
            if foreign and inputs.status.traffic.drift_noted != view.found:
                assert noted, f"foreign weights {view.found} not reported"
            else:
                assert not noted, "route drift reported without a foreign edit, or twice"
        if view is not None and view.problem:
            assert (
                s.phase not in ("Progressing", "Paused")
                or s.stage == ""
                or not any(h.reason == "StagePassed" for h in decision.new_history)
            ), "a stage passed while the route was missing"

    def _check_records(self, decision) -> None:
        for entry in decision.new_history:
            if entry.from_phase != entry.to_phase:
                assert table.declared(entry.from_phase, entry.to_phase, entry.reason)
            if entry.reason == "RequestHandled":
                match = HANDLED.match(entry.message)
                assert match, entry.message
                key = (match.group(1), ast.literal_eval(match.group(2)))
                self.ghost.handled[key] = self.ghost.handled.get(key, 0) + 1
                assert self.ghost.handled[key] == 1, f"request {key} handled twice"

    def _check_idempotent(self, decision) -> None:
        inputs, caught = self.world.last_inputs, self.world.last_caught
        again = caught.then(rollout.decide(inputs))
        assert again == decision, "decide() is not a function of its inputs"
        # A measurement taken while the round waited counts once, never again.
        offered = self.world.offered
        counted_again = rollout.catch_up(
            dataclasses.replace(inputs, status=decision.status, measurements=None), offered
        ).counted
        assert counted_again == 0, f"{counted_again} taken measurement(s) counted twice"
        replay = rollout.decide(dataclasses.replace(inputs, status=decision.status))
        assert replay.new_history == (), [h.reason for h in replay.new_history]
        assert replay.new_measurements == ()

    @invariant()
    def status_is_coherent(self):
        s = self.world.status
        assert (s.rollout is not None) == (
            s.phase in ("Deploying", "Progressing", "Paused", "Promoting")
        ), s.phase
        assert (s.watch is not None) == (s.phase == "Verifying"), s.phase
        assert (s.rollback is not None) == (s.phase == "RollingBack"), s.phase
        if s.phase in ("Stable", "Verifying", "RolledBack", "Progressing", "Paused", "Promoting"):
            assert s.serving is not None, s.phase


TestRolloutModel = RolloutModel.TestCase
TestRolloutModel.settings = settings.get_profile(PROFILE)
