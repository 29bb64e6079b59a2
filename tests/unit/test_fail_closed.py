"""Fail closed without the approval policy (docs/decisions/0009-fail-closed-without-policy.md):
the pure check of the policy objects, the gate, and decide() at rest and in flight."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest

from aigate.core import gate
from aigate.core.admission import PolicyObjects, needs_namespace_labels, policy_problem
from aigate.core.verdict import QueryOutcome
from support.factories import approved_for
from support.sim import T0, World, plan_spec, serving, upgrade

NAME = "aigate-approvals"
POLICY = {
    "metadata": {"name": NAME, "resourceVersion": "1"},
    "spec": {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": ["aigate.dev"],
                    "apiVersions": ["*"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["aideployments"],
                }
            ]
        },
    },
}
BINDING = {
    "metadata": {"name": NAME, "resourceVersion": "2"},
    "spec": {"policyName": NAME, "validationActions": ["Deny"], "matchResources": {}},
}


def objects(policy=POLICY, *bindings, error="") -> PolicyObjects:
    return PolicyObjects(NAME, policy, bindings, error)


def binding(**spec) -> dict:
    b = copy.deepcopy(BINDING)
    b["spec"].update(spec)
    return b


def problem(objs: PolicyObjects, ns_labels=None, obj_labels=None) -> str | None:
    return policy_problem(objs, "team-a", {} if ns_labels is None else ns_labels, obj_labels or {})


def test_the_charts_policy_and_binding_enforce_everywhere():
    assert problem(objects(POLICY, BINDING)) is None
    assert not needs_namespace_labels(objects(POLICY, BINDING))


@pytest.mark.parametrize(
    ("objs", "expected"),
    [
        (objects(None, BINDING), f"ValidatingAdmissionPolicy {NAME} not found"),
        (objects(POLICY), f"no ValidatingAdmissionPolicyBinding with spec.policyName {NAME}"),
        (
            objects(POLICY, binding(policyName="another")),
            f"no ValidatingAdmissionPolicyBinding with spec.policyName {NAME}",
        ),
        (
            objects(POLICY, binding(validationActions=["Warn", "Audit"])),
            "spec.validationActions ['Warn', 'Audit'], expected one with Deny",
        ),
        (
            objects({"spec": {**POLICY["spec"], "failurePolicy": "Ignore"}}, BINDING),
            "spec.failurePolicy is 'Ignore', expected 'Fail'",
        ),
        (
            objects({"spec": {**POLICY["spec"], "matchConstraints": {}}}, BINDING),
            "resourceRules do not cover CREATE, UPDATE of aideployments.aigate.dev",
        ),
        (
            objects(POLICY, BINDING, error="forbidden: grant get/list/watch"),
            "cannot read ValidatingAdmissionPolicy aigate-approvals or its bindings: forbidden",
        ),
        (
            objects(
                POLICY,
                binding(
                    matchResources={
                        "excludeResourceRules": [
                            {
                                "apiGroups": ["*"],
                                "apiVersions": ["*"],
                                "operations": ["*"],
                                "resources": ["*"],
                            }
                        ]
                    }
                ),
            ),
            "excludeResourceRules exclude aideployments",
        ),
    ],
)
def test_what_is_missing_is_named(objs, expected):
    found = problem(objs)
    assert found is not None and expected in found, found


def test_a_policy_without_failure_policy_defaults_to_fail():
    spec = {k: v for k, v in POLICY["spec"].items() if k != "failurePolicy"}
    assert problem(objects({"spec": spec}, BINDING)) is None


def test_the_binding_must_select_the_resources_namespace():
    selected = binding(matchResources={"namespaceSelector": {"matchLabels": {"team": "a"}}})
    objs = objects(POLICY, selected)
    assert needs_namespace_labels(objs)
    assert problem(objs, {"team": "a", "other": "x"}) is None
    found = problem(objs, {"team": "b"})
    assert found is not None and "selectors do not select team-a" in found
    unknown = policy_problem(objs, "team-a", None, {})
    assert unknown is not None and "cannot read the labels of namespace team-a" in unknown


def test_one_enforcing_binding_is_enough_and_every_other_is_named_when_none_is():
    warn = binding(validationActions=["Warn"])
    warn["metadata"]["name"] = "warn-only"
    elsewhere = binding(matchResources={"namespaceSelector": {"matchLabels": {"team": "z"}}})
    assert problem(objects(POLICY, warn, BINDING)) is None
    found = problem(objects(POLICY, warn, elsewhere), {"team": "a"})
    assert found is not None and "warn-only" in found and "do not select team-a" in found


@pytest.mark.parametrize(
    ("expressions", "selected"),
    [
        ([{"key": "team", "operator": "In", "values": ["a", "b"]}], True),
        ([{"key": "team", "operator": "NotIn", "values": ["a"]}], False),
        ([{"key": "team", "operator": "Exists"}], True),
        ([{"key": "team", "operator": "DoesNotExist"}], False),
        ([{"key": "team", "operator": "Unknown"}], False),
    ],
)
def test_match_expressions(expressions, selected):
    sel = binding(matchResources={"namespaceSelector": {"matchExpressions": expressions}})
    assert (problem(objects(POLICY, sel), {"team": "a"}) is None) is selected


def test_an_object_selector_that_skips_the_resource_is_not_enforcing():
    sel = binding(matchResources={"objectSelector": {"matchLabels": {"governed": "yes"}}})
    assert problem(objects(POLICY, sel), obj_labels={"governed": "yes"}) is None
    assert problem(objects(POLICY, sel), obj_labels={}) is not None


def test_the_gate_stays_closed_whatever_the_annotations_say():
    spec = plan_spec()
    decision = gate.evaluate_gate(
        approved_for(spec, T0),
        "rev",
        timedelta(hours=1),
        T0,
        policy_problem="ValidatingAdmissionPolicy x not found",
    )
    assert not decision.is_open and decision.reason == "ApprovalPolicyMissing"
    assert "approval policy not enforcing (ValidatingAdmissionPolicy x not found)" in (
        decision.describe()
    )


def rolled_back(world: World) -> bool:
    return world.status.last_rollback is not None and world.canary is None


# ---- decide() ----------------------------------------------------------------------------

MISSING = f"ValidatingAdmissionPolicy {NAME} not found"


def test_a_first_version_is_not_deployed_and_the_condition_names_what_is_missing():
    spec = plan_spec()
    world = World(spec=spec, now=T0, annotations=approved_for(spec, T0), policy_problem=MISSING)
    for _ in range(5):
        world.step()
    assert world.status.phase == "AwaitingApproval" and not world.deployments
    stalled = next(c for c in world.status.conditions if c.type == "Stalled")
    assert stalled.reason == "ApprovalPolicyMissing" and MISSING in stalled.message
    authorized = next(c for c in world.status.conditions if c.type == "Authorized")
    assert (authorized.status, authorized.reason) == ("False", "ApprovalPolicyMissing")
    assert [e.reason for e in world.events()] == ["ApprovalPolicyMissing"]
    world.policy_problem = ""
    world.run_until(lambda w: w.status.phase == "Stable")


def test_a_new_revision_waits_and_the_serving_one_keeps_serving_and_scaling():
    world = serving()
    v1 = world.stable.revision
    world.policy_problem = MISSING
    upgrade(world)
    for _ in range(10):
        world.step()
    assert world.status.phase == "AwaitingApproval" and world.canary is None
    assert world.stable.revision == v1 and world.stable.replicas == 4
    world.policy_problem = ""
    world.run_until(lambda w: w.canary is not None)


def test_a_recorded_approval_does_not_start_a_rollout_while_the_policy_is_missing():
    world = serving()
    v2 = upgrade(world)
    world.step()  # approval recorded, rollout started
    assert world.status.approval.revision == v2
    # The spec goes back to v1 then forward to v2 again, with the approval annotations gone:
    # only the recorded approval could authorise v2.
    v1_spec = plan_spec()
    world.change_spec(v1_spec)
    world.run_until(lambda w: w.status.phase == "Stable" and w.canary is None)
    world.annotations = {}
    world.policy_problem = MISSING
    world.change_spec(plan_spec("2.5.0"))
    for _ in range(4):
        world.step()
    assert world.status.phase == "AwaitingApproval" and world.canary is None
    world.policy_problem = ""
    world.run_until(lambda w: w.status.phase == "Progressing")


def test_a_rollout_in_flight_is_held_not_rolled_back_and_resumes():
    world = serving()
    v2 = upgrade(world)
    world.run_until(lambda w: w.status.phase == "Progressing" and w.canary is not None)
    world.policy_problem = MISSING
    for _ in range(40):  # 200 s: far past the 1m stage
        world.step()
    assert world.status.phase == "Progressing" and world.status.stage == "canary-10"
    assert world.canary is not None and world.canary.revision == v2
    progressing = next(c for c in world.status.conditions if c.type == "Reconciling")
    assert progressing.reason == "ApprovalPolicyMissing" and MISSING in progressing.message
    world.policy_problem = ""
    world.run_until(lambda w: w.status.stage == "canary-50")


def test_in_flight_a_breach_still_rolls_back_and_abort_still_works():
    world = serving()
    v1 = world.stable.revision
    upgrade(world)
    world.run_until(lambda w: w.status.phase == "Progressing" and w.canary is not None)
    world.policy_problem = MISSING

    def failing(track, metric, at):
        return QueryOutcome(samples=(0.5 if track == "canary" else 0.001,))

    world.outcome = failing
    world.run_until(rolled_back)
    # Where it then rests: the revision is not approved (the policy is missing) and was
    # rolled back; the version that served before serves.
    assert world.status.phase == "AwaitingApproval" and world.stable.revision == v1


def test_promote_and_retry_written_without_the_policy_are_refused_for_good():
    world = serving()
    v2 = upgrade(world, manual=True)
    world.run_until(lambda w: w.status.phase == "Paused")
    world.policy_problem = MISSING
    world.annotations = world.annotations | {"aigate.dev/promote": f"canary-50@{v2} by=approver"}
    world.step()
    outcome = world.status.requests.promote.outcome
    assert (
        outcome.startswith("refused: the approval policy does not enforce") and MISSING in outcome
    )
    world.policy_problem = ""
    for _ in range(5):
        world.step()
    assert world.status.phase == "Paused"  # the refused value never counts later
    world.annotations = world.annotations | {"aigate.dev/abort": "by=sre stop"}
    world.policy_problem = MISSING
    world.run_until(rolled_back)
    assert world.status.requests.abort.outcome and world.status.last_rollback.reason == (
        "AbortRequested"
    )


# ---- the adapter's cache -------------------------------------------------------------------


class FakeAdmissionApi:
    def __init__(self) -> None:
        self.calls = 0
        self.policy: dict | None = POLICY
        self.bindings: list[dict] = [BINDING]

    def read_validating_admission_policy(self, name):
        from kubernetes.client.rest import ApiException

        self.calls += 1
        if self.policy is None:
            raise ApiException(status=404, reason="Not Found")
        return self.policy

    def list_validating_admission_policy_binding(self):
        self.calls += 1
        return type("List", (), {"items": list(self.bindings)})()


def test_the_adapter_reads_once_per_ttl_and_refresh_notices_a_deleted_policy():
    from aigate.adapters.admission import ApprovalPolicyCheck

    now = [0.0]
    check = ApprovalPolicyCheck(NAME, ttl=10.0, clock=lambda: now[0])
    fake = FakeAdmissionApi()
    check.admission = fake  # type: ignore[assignment]
    for _ in range(20):
        assert check.problem("team-a", {}) is None
    assert fake.calls == 2  # one GET, one LIST for twenty reconciles
    seen = check.refresh()
    fake.policy = None
    assert check.problem("team-a", {}) is None  # cached until the TTL or a refresh
    assert check.refresh() != seen
    assert check.problem("team-a", {}) == MISSING
    now[0] = 11.0
    fake.policy = POLICY
    assert check.problem("team-a", {}) is None
