"""The gate with spec.governance.requireSignedApproval: on, off, and the riskTier high
default; signatures are input (the reconciler verifies them), the gate stays pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aigate.api.v1alpha1 import AIDeploymentStatus, SignatureCheck
from aigate.core import gate, rollout
from aigate.core.conditions import get_condition
from aigate.core.revision import compute_revision
from support.factories import approval_annotations, spec_dict, spec_model

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
GOOD = SignatureCheck(signer="jane@example.com", key_fingerprint="SHA256:abc", verified=True)
RISK_GOOD = SignatureCheck(signer="ciso@example.com", key_fingerprint="SHA256:def", verified=True)
BAD = SignatureCheck(
    signer="jane@example.com",
    key_fingerprint="SHA256:xyz",
    problem="key SHA256:xyz is not registered in the approver key registry",
)


def spec_with(tier: str, required: bool | None):
    governance = {"approvalTTL": "168h"}
    if required is not None:
        governance["requireSignedApproval"] = required
    raw = spec_dict(governance=governance)
    raw["model"]["riskTier"] = tier
    return spec_model(raw)


@pytest.mark.parametrize(
    ("tier", "required", "expected"),
    [
        ("high", None, "riskTier high (spec.governance.requireSignedApproval unset)"),
        ("high", True, "spec.governance.requireSignedApproval"),
        ("high", False, ""),
        ("limited", None, ""),
        ("minimal", None, ""),
        ("limited", True, "spec.governance.requireSignedApproval"),
    ],
)
def test_who_requires_signatures(tier, required, expected):
    assert gate.signatures_required_by(spec_with(tier, required)) == expected


def test_require_signed_approval_is_inside_the_revision():
    assert compute_revision(spec_with("high", None)) != compute_revision(spec_with("high", False))


def evaluate(signatures: gate.Signatures) -> gate.GateDecision:
    annotations = approval_annotations("a" * 64, NOW - timedelta(hours=1))
    return gate.evaluate_gate(annotations, "a" * 64, timedelta(hours=168), NOW, None, signatures)


REQUIRED = "spec.governance.requireSignedApproval"

# (approval signature, risk signature, required) -> the annotations named, in order
TABLE = [
    (None, None, "", ()),
    (GOOD, RISK_GOOD, "", ()),
    (BAD, BAD, "", ()),  # recorded, not required
    (
        None,
        None,
        REQUIRED,
        ((gate.APPROVAL_SIGNATURE, "Missing"), (gate.RISK_SIGNATURE, "Missing")),
    ),
    (GOOD, None, REQUIRED, ((gate.RISK_SIGNATURE, "Missing"),)),
    (BAD, RISK_GOOD, REQUIRED, ((gate.APPROVAL_SIGNATURE, "Unverified"),)),
    (GOOD, RISK_GOOD, REQUIRED, ()),
]


@pytest.mark.parametrize(("approval", "risk", "required", "named"), TABLE)
def test_the_gate_weighs_signatures_only_when_required(approval, risk, required, named):
    decision = evaluate(gate.Signatures(approval, risk, required))
    assert tuple((r.annotation, r.problem) for r in decision.reasons) == named
    assert decision.is_open is (not named)
    if decision.is_open:
        assert decision.approval is not None
        assert (decision.approval.approval_signature, decision.approval.risk_signature) == (
            approval,
            risk,
        )


def test_refusals_say_what_was_expected_and_what_was_found():
    text = evaluate(gate.Signatures(BAD, None, REQUIRED)).describe()
    assert (
        "aigate.dev/approval-signature: does not verify: expected an SSH signature (namespace "
        "aigate.dev) by a key registered for jane@example.com over the statement of these "
        "annotations (kubectl aigate approve --sign), required by "
        "spec.governance.requireSignedApproval, found key SHA256:xyz is not registered in the "
        "approver key registry" in text
    )
    assert (
        "aigate.dev/risk-acceptance-signature: missing: expected an SSH signature (namespace "
        "aigate.dev) by a key registered for ciso@example.com" in text
    )
    assert "kubectl aigate accept-risk --sign" in text


def decide(spec, signatures: gate.Signatures, signed_tiers: frozenset[str] = frozenset()):
    revision = compute_revision(spec)
    return rollout.decide(
        rollout.Inputs(
            generation=1,
            spec=spec,
            spec_error="",
            annotations=approval_annotations(revision, NOW - timedelta(hours=1)),
            status=AIDeploymentStatus(),
            observed=rollout.Observed(),
            now=NOW,
            signatures=signatures,
            signed_tiers=signed_tiers,
        )
    )


def test_high_tier_unsigned_approval_stays_awaiting_approval_naming_the_annotation():
    decision = decide(spec_with("high", None), gate.Signatures())
    assert decision.status.phase == "AwaitingApproval"
    assert decision.actions == ()
    stalled = get_condition(decision.status.conditions, "Stalled")
    assert stalled is not None and (stalled.status, stalled.reason) == ("True", "ApprovalRequired")
    assert "aigate.dev/approval-signature: missing" in stalled.message
    assert any("aigate.dev/approval-signature" in e.message for e in decision.events)


def test_signed_approval_opens_the_gate_and_status_records_the_keys():
    decision = decide(spec_with("high", None), gate.Signatures(GOOD, RISK_GOOD))
    assert decision.status.phase != "AwaitingApproval"
    record = decision.status.approval
    assert record is not None and record.approval_signature == GOOD
    assert record.risk_signature == RISK_GOOD
    authorized = get_condition(decision.status.conditions, "Authorized")
    assert authorized is not None and authorized.status == "True"
    assert "approval signed by jane@example.com with key SHA256:abc (verified)" in (
        authorized.message
    )


def test_a_failing_signature_that_is_not_required_is_recorded_not_enforced():
    decision = decide(spec_with("limited", None), gate.Signatures(BAD, None))
    assert decision.status.phase != "AwaitingApproval"
    record = decision.status.approval
    assert record is not None and record.approval_signature == BAD
    assert record.risk_signature is None
    authorized = get_condition(decision.status.conditions, "Authorized")
    assert authorized is not None
    assert "approval signature NOT verified: key SHA256:xyz is not registered" in (
        authorized.message
    )


@pytest.mark.parametrize("required", [None, True, False])
def test_the_platform_floor_cannot_be_lowered_by_the_spec(required):
    spec = spec_with("high", required)
    expected = "the platform for riskTier high (aigate run --require-signed-approval high)"
    assert gate.signatures_required_by(spec, frozenset({"high"})) == expected
    decision = decide(spec, gate.Signatures(), signed_tiers=frozenset({"high"}))
    assert decision.status.phase == "AwaitingApproval"
    stalled = get_condition(decision.status.conditions, "Stalled")
    assert stalled is not None and "aigate.dev/approval-signature" in stalled.message
    assert "--require-signed-approval high" in stalled.message


def test_the_platform_floor_covers_only_its_tiers():
    assert gate.signatures_required_by(spec_with("limited", None), frozenset({"high"})) == ""
    decision = decide(spec_with("limited", None), gate.Signatures(), frozenset({"high"}))
    assert decision.status.phase != "AwaitingApproval"
