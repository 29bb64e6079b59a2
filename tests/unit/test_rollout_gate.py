"""decide() for the governance slice: refuse, record, deploy, keep serving, scale."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from aigate.api.v1alpha1 import AIDeploymentStatus, ApplyError, ApprovalRecord
from aigate.core import gate, rollout
from aigate.core.conditions import get_condition
from aigate.core.revision import compute_revision
from aigate.core.rollout.ledger import MAX_HISTORY, MAX_HISTORY_BYTES
from support.factories import approval_annotations, approved_for, spec_dict, spec_model

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def workload(revision: str, replicas: int = 4, ready: int | None = None, version: str = "2.4.0"):
    ready = replicas if ready is None else ready
    return rollout.WorkloadState(
        revision=revision,
        version=version,
        replicas=replicas,
        ready_replicas=ready,
        updated_replicas=replicas,
        total_replicas=replicas,
        observed_current=True,
    )


def inputs(spec=None, annotations=None, status=None, observed=None, now=NOW, generation=1):
    spec = spec if spec is not None else spec_model()
    return rollout.Inputs(
        generation=generation,
        spec=spec,
        spec_error="",
        annotations=annotations or {},
        status=status or AIDeploymentStatus(),
        observed=observed or rollout.Observed(),
        now=now,
    )


def condition(decision, type_):
    found = get_condition(decision.status.conditions, type_)
    assert found is not None, f"no {type_} condition"
    return found


def test_unapproved_spec_awaits_approval_with_no_actions_and_names_annotations():
    decision = rollout.decide(inputs())
    assert decision.status.phase == "AwaitingApproval"
    assert decision.actions == ()
    assert condition(decision, "Authorized").status == "False"
    stalled = condition(decision, "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "ApprovalRequired")
    assert condition(decision, "Ready").status == "False"
    for annotation in gate.REQUIRED_ANNOTATIONS:
        assert annotation in stalled.message
    assert decision.status.revision in stalled.message
    (event,) = decision.events
    assert (event.type, event.reason) == ("Warning", "ApprovalRequired")
    assert decision.status.history[-1].to_phase == "AwaitingApproval"


def test_repeating_the_same_refusal_adds_no_event_and_no_history():
    first = rollout.decide(inputs())
    second = rollout.decide(inputs(status=first.status, now=NOW + timedelta(minutes=5)))
    assert second.events == ()
    assert second.status.history == first.status.history
    assert second.status.conditions == first.status.conditions


def test_a_different_refusal_reason_is_announced_again():
    first = rollout.decide(inputs())
    spec = spec_model()
    wrong = approval_annotations("000000000000", NOW - timedelta(hours=1))
    second = rollout.decide(inputs(spec=spec, annotations=wrong, status=first.status))
    assert [e.reason for e in second.events] == ["ApprovalRequired"]
    assert "approves another revision" in second.events[0].message
    assert len(second.status.history) == 2


def test_valid_approval_records_it_and_deploys_stable_and_service():
    spec = spec_model()
    revision = compute_revision(spec)
    decision = rollout.decide(inputs(spec=spec, annotations=approved_for(spec, NOW)))
    assert decision.status.phase == "Deploying"
    assert decision.actions == (
        rollout.ApplyDeployment("stable", revision, "2.4.0", 4),
        rollout.ApplyService(revision, 8080, 8080),
    )
    approval = decision.status.approval
    assert approval is not None
    assert (
        approval.approved_by,
        approval.revision,
        approval.risk_acceptance,
        approval.risk_accepted_by,
    ) == (
        "jane@example.com",
        revision,
        "RISK-1234",
        "ciso@example.com",
    )
    assert approval.recorded_at == "2026-11-23T12:00:00Z"
    assert [e.reason for e in decision.events] == ["Approved", "FirstVersion"]
    assert condition(decision, "Authorized").status == "True"
    assert condition(decision, "Reconciling").status == "True"
    assert condition(decision, "Stalled").status == "False"
    assert decision.requeue_after == rollout.REQUEUE_WHILE_CHANGING


def test_stable_only_when_every_replica_of_the_revision_is_ready():
    spec = spec_model()
    revision = compute_revision(spec)
    annotations = approved_for(spec, NOW)
    first = rollout.decide(inputs(spec=spec, annotations=annotations))
    partial = rollout.decide(
        inputs(
            spec=spec,
            annotations=annotations,
            status=first.status,
            observed=rollout.Observed(stable=workload(revision, ready=3)),
        )
    )
    assert partial.status.phase == "Deploying"
    assert "3/4" in condition(partial, "Reconciling").message
    assert partial.events == ()
    done = rollout.decide(
        inputs(
            spec=spec,
            annotations=annotations,
            status=partial.status,
            observed=rollout.Observed(stable=workload(revision)),
        )
    )
    assert done.status.phase == "Stable"
    assert condition(done, "Ready").status == "True"
    assert condition(done, "Reconciling").status == "False"
    assert [e.reason for e in done.events] == ["Promoted"]
    assert done.status.stable_revision == revision
    assert done.status.ready_replicas == 4


def test_not_rolled_out_while_the_deployment_controller_lags():
    revision = compute_revision(spec_model())
    lagging = rollout.WorkloadState(
        revision=revision,
        version="2.4.0",
        replicas=4,
        ready_replicas=4,
        updated_replicas=4,
        total_replicas=4,
        observed_current=False,
    )
    old_pods_left = rollout.WorkloadState(
        revision=revision,
        version="2.4.0",
        replicas=4,
        ready_replicas=4,
        updated_replicas=4,
        total_replicas=5,
        observed_current=True,
    )
    assert not lagging.rolled_out
    assert not old_pods_left.rolled_out
    assert workload(revision).rolled_out


def _stable_state(spec):
    """Status and observation of `spec` approved, deployed and Stable."""
    annotations = approved_for(spec, NOW)
    revision = compute_revision(spec)
    first = rollout.decide(inputs(spec=spec, annotations=annotations))
    observed = rollout.Observed(stable=workload(revision))
    done = rollout.decide(
        inputs(spec=spec, annotations=annotations, status=first.status, observed=observed)
    )
    return annotations, done.status, observed


def test_new_unapproved_revision_leaves_the_serving_version_untouched():
    spec = spec_model()
    annotations, status, observed = _stable_state(spec)
    assert status.phase == "Stable"
    raw = spec_dict()
    raw["model"]["version"] = "2.5.0"
    new_spec = spec_model(raw)
    decision = rollout.decide(
        inputs(
            spec=new_spec, annotations=annotations, status=status, observed=observed, generation=2
        )
    )
    assert decision.status.phase == "AwaitingApproval"
    assert decision.actions == ()  # nothing applied: the old Deployment is not even re-applied
    assert decision.status.stable_revision == compute_revision(spec)
    assert "keeps serving" in condition(decision, "Stalled").message
    assert "approves another revision" in condition(decision, "Authorized").message


def test_scaling_an_approved_revision_needs_no_new_approval():
    spec = spec_model()
    annotations, status, observed = _stable_state(spec)
    scaled = spec_model(spec_dict(replicas=6))
    decision = rollout.decide(
        inputs(spec=scaled, annotations=annotations, status=status, observed=observed, generation=2)
    )
    assert decision.status.phase == "Stable"  # scaling is no phase change
    assert rollout.ApplyDeployment("stable", compute_revision(spec), "2.4.0", 6) in decision.actions
    assert condition(decision, "Reconciling").reason == "Scaling"


def test_recorded_approval_keeps_authorising_its_revision_after_ttl():
    spec = spec_model()
    annotations, status, observed = _stable_state(spec)
    later = NOW + timedelta(days=30)  # the approval annotations are long expired now
    decision = rollout.decide(
        inputs(spec=spec, annotations=annotations, status=status, observed=observed, now=later)
    )
    assert decision.status.phase == "Stable"
    authorized = condition(decision, "Authorized")
    assert (authorized.status, authorized.reason) == ("True", "ApprovalRecorded")


def test_a_new_approval_for_the_same_revision_is_recorded_once():
    spec = spec_model()
    annotations, status, observed = _stable_state(spec)
    reapproved = annotations | {gate.APPROVED_BY: "joe@example.com"}
    decision = rollout.decide(
        inputs(spec=spec, annotations=reapproved, status=status, observed=observed)
    )
    assert decision.status.approval is not None
    assert decision.status.approval.approved_by == "joe@example.com"
    assert [e.reason for e in decision.events] == ["Approved"]
    again = rollout.decide(
        inputs(spec=spec, annotations=reapproved, status=decision.status, observed=observed)
    )
    assert again.events == ()


def test_invalid_spec_fails_with_the_reason_and_acts_on_nothing():
    decision = rollout.decide(
        rollout.Inputs(
            generation=3,
            spec=None,
            spec_error="spec.replicas: must be >= 1",
            annotations={},
            status=AIDeploymentStatus(),
            observed=rollout.Observed(),
            now=NOW,
        )
    )
    assert decision.status.phase == "Failed"
    assert decision.actions == ()
    stalled = condition(decision, "Stalled")
    assert (stalled.reason, stalled.status) == ("InvalidSpec", "True")
    assert "spec.replicas" in stalled.message
    assert decision.status.observed_generation == 3


def test_children_owned_by_someone_else_are_never_touched():
    spec = spec_model()
    observed = rollout.Observed(conflicts=("Deployment fraud-scorer-stable",))
    decision = rollout.decide(
        inputs(spec=spec, annotations=approved_for(spec, NOW), observed=observed)
    )
    assert decision.actions == ()
    assert condition(decision, "Stalled").reason == "ChildConflict"
    assert "fraud-scorer-stable" in condition(decision, "Stalled").message
    assert any("fraud-scorer-stable" in e.message for e in decision.events)


def test_apply_failure_is_sticky_until_the_spec_changes():
    spec = spec_model()
    annotations = approved_for(spec, NOW)
    first = rollout.decide(inputs(spec=spec, annotations=annotations))
    refused = first.status.model_copy(deep=True)  # what the reconciler writes back on a 4xx
    refused.apply_error = ApplyError(
        generation=1,
        phase="Deploying",
        track="stable",
        message="apply Deployment x: HTTP 422: bad port",
    )
    failed = rollout.decide(inputs(spec=spec, annotations=annotations, status=refused))
    assert failed.status.phase == "Failed"
    assert failed.actions == ()
    assert "bad port" in condition(failed, "Stalled").message
    same = rollout.decide(inputs(spec=spec, annotations=annotations, status=failed.status))
    assert same.actions == () and same.events == () and same.status.phase == "Failed"
    changed = rollout.decide(
        inputs(spec=spec, annotations=annotations, status=failed.status, generation=2)
    )
    assert changed.actions and changed.status.apply_error is None


def test_observed_generation_and_revision_are_always_reported():
    spec = spec_model()
    decision = rollout.decide(inputs(spec=spec, generation=7))
    assert decision.status.observed_generation == 7
    assert decision.status.revision == compute_revision(spec)
    assert all(c.observed_generation == 7 for c in decision.status.conditions)


def test_condition_transition_time_is_kept_while_status_holds():
    first = rollout.decide(inputs())
    later = rollout.decide(inputs(status=first.status, now=NOW + timedelta(hours=1)))
    assert (
        condition(later, "Stalled").last_transition_time
        == condition(first, "Stalled").last_transition_time
    )


def test_history_is_bounded():
    status = AIDeploymentStatus()
    spec = spec_model()
    for i in range(MAX_HISTORY + 20):
        wrong = approval_annotations(f"rev{i}", NOW - timedelta(hours=1))
        status = rollout.decide(inputs(spec=spec, annotations=wrong, status=status)).status
    assert len(status.history) <= MAX_HISTORY
    history = [e.model_dump(mode="json", by_alias=True) for e in status.history]
    assert len(json.dumps(history)) <= MAX_HISTORY_BYTES
    # Nothing is lost: every entry is a record, and the chain head moved with each.
    assert status.records.last_sequence == len(status.records.outbox) >= MAX_HISTORY + 20


# ---- properties -------------------------------------------------------------------------

annotation_sets = st.dictionaries(
    st.sampled_from(gate.REQUIRED_ANNOTATIONS),
    st.one_of(st.text(max_size=30), st.sampled_from(["2026-11-23T11:00:00Z", "RISK-1", "a@b"])),
)


@settings(max_examples=200, deadline=None)  # a property of decisions, not of speed
@given(annotations=annotation_sets, replicas=st.integers(1, 50), recorded_for_other=st.booleans())
def test_never_deploys_a_revision_whose_gate_is_closed_and_that_was_never_approved(
    annotations, replicas, recorded_for_other
):
    spec = spec_model(spec_dict(replicas=replicas))
    revision = compute_revision(spec)
    status = AIDeploymentStatus()
    if recorded_for_other:
        status.approval = ApprovalRecord(
            approved_by="x",
            approved_at="2026-01-01T00:00:00Z",
            revision="other",
            risk_acceptance="R",
            risk_accepted_by="y",
        )
    decision = rollout.decide(inputs(spec=spec, annotations=annotations, status=status))
    gate_open = gate.evaluate_gate(annotations, revision, timedelta(hours=168), NOW).is_open
    if not gate_open:
        assert decision.actions == ()
        assert decision.status.phase == "AwaitingApproval"
        assert decision.status.approval == status.approval
    else:
        assert any(
            isinstance(a, rollout.ApplyDeployment) and a.revision == revision
            for a in decision.actions
        )


@settings(max_examples=100, deadline=None)
@given(annotations=annotation_sets, minutes=st.integers(0, 10_000))
def test_decide_is_idempotent(annotations, minutes):
    now = NOW + timedelta(minutes=minutes)
    first = rollout.decide(inputs(annotations=annotations, now=now))
    second = rollout.decide(inputs(annotations=annotations, status=first.status, now=now))
    assert second.status == first.status
    assert second.events == ()
    assert second.actions == first.actions


def _managed(manager: str) -> list[dict]:
    fields = {f"f:{a}": {} for a in gate.REQUIRED_ANNOTATIONS}
    return [
        {
            "manager": "kubectl-client-side-apply",
            "time": "2026-11-23T09:00:00Z",
            "fieldsV1": {"f:spec": {}},
        },
        {
            "manager": manager,
            "time": "2026-11-23T10:00:00Z",
            "fieldsV1": {"f:metadata": {"f:annotations": fields}},
        },
    ]


def test_approval_records_the_writing_client_and_whether_git_asserted_it():
    """ "Asserted through Git" comes from the marker only the GitOps identity may set (the
    chart's policy), never from the field manager, which any client may name."""
    spec = spec_model()

    def decided_with(manager: str, marker: str | None) -> rollout.Decision:
        annotations = approved_for(spec, NOW)
        if marker is not None:
            annotations = {**annotations, gate.APPROVAL_SOURCE: marker}
        written = dataclasses.replace(
            inputs(spec=spec, annotations=annotations), managed_fields=_managed(manager)
        )
        return rollout.decide(written)

    by_hand = decided_with("kubectl-annotate", None)
    assert by_hand.status.approval.written_by == "kubectl-annotate"
    assert by_hand.status.approval.asserted_through_git is False
    claimed = decided_with("argocd-controller", None)
    assert claimed.status.approval.asserted_through_git is False
    from_git = decided_with("argocd-controller", "git")
    assert from_git.status.approval.asserted_through_git is True
    assert "asserted through Git by argocd-controller" in from_git.events[0].message
    assert decided_with("kubectl-annotate", "yes").status.approval.asserted_through_git is False
