"""Where a resource with nothing in flight goes next, from the spec, the approval, what
serves and what was rolled back (the ROUTES of the transition table)."""

from __future__ import annotations

from typing import NamedTuple

from aigate.api.records import ApprovalRecorded, RecordedApproval
from aigate.api.v1alpha1 import ApprovalRecord, Phase, SignatureCheck
from aigate.core import conditions as cond
from aigate.core.children import record_of
from aigate.core.gate import APPROVAL_SOURCE, APPROVED_BY, FROM_GIT, format_rfc3339
from aigate.core.requests import writer_of
from aigate.core.revision import vouched_content
from aigate.core.rollout.draft import Draft


class Route(NamedTuple):
    phase: Phase
    reason: str
    message: str


# A refused apply of the candidate's own workload (its stable Deployment while it deploys
# as the first version, its canary during the stages): that revision is unusable as written.
CANDIDATE_WORKLOADS = {
    ("Deploying", "stable"),
    ("Progressing", "canary"),
    ("Paused", "canary"),
}


def route(d: Draft) -> Route:
    s, sit = d.status, d.sit
    if sit.spec is None:
        return Route("Failed", "InvalidSpec", f"spec is invalid: {d.inputs.spec_error}")
    conflict = _child_conflict(d)
    if conflict is not None:
        return conflict
    error = s.apply_error
    if (
        error is not None
        and error.generation == d.inputs.generation
        and (error.phase, error.track) in CANDIDATE_WORKLOADS
    ):
        return Route(
            "Failed",
            "ApplyRejected",
            f"the API server refused the {error.track} workload of revision {sit.revision} "
            f"({error.message}); fix the spec",
        )
    version = sit.spec.model.version
    if s.serving is not None and s.serving.revision == sit.revision:
        return Route("Stable", "Serving", f"version {version} (revision {sit.revision}) serves")
    if not d.authorised():
        gate = sit.gate.describe() if sit.gate else ""
        return Route(
            "AwaitingApproval",
            sit.gate.reason if sit.gate else "ApprovalRequired",
            f"revision {sit.revision} is not approved: {gate}; {serving_text(d)}",
        )
    if sit.revision in s.rolled_back_revisions:
        return Route(
            "RolledBack",
            "RevisionRolledBack",
            f"revision {sit.revision} was rolled back; annotate aigate.dev/retry='@{sit.revision} "
            f"by=<you> <why>' to try it again, or change the spec",
        )
    if s.serving is None:
        return Route(
            "Deploying",
            "FirstVersion",
            f"deploying version {version} (revision {sit.revision}) as the first stable version",
        )
    return Route(
        "Progressing",
        "RolloutStarted",
        f"rolling out version {version} (revision {sit.revision}) through "
        f"{len(sit.spec.rollout.stages)} stage(s) beside version {s.serving.version}",
    )


def _child_conflict(d: Draft) -> Route | None:
    """Objects with aigate's child names that aigate did not create: never touched."""
    conflicts, s = d.inputs.observed.conflicts, d.status
    if conflicts:
        return Route(
            "Failed",
            "ChildConflict",
            f"{', '.join(conflicts)} already exist(s) and aigate did not create them; it will "
            f"not touch them: rename this AIDeployment or remove them",
        )
    if s.serving is None and d.sit.stable is not None and record_of(s.children, "stable") is None:
        return Route(
            "Failed",
            "ChildConflict",
            f"Deployment {d.inputs.name}-stable exists but aigate has no record of creating "
            f"it or of what it serves; it will not touch it: remove it (aigate then deploys "
            f"the approved revision) or rename this AIDeployment",
        )
    return None


def serving_text(d: Draft) -> str:
    serving = d.status.serving
    if serving is None:
        return "no workload is created until then"
    return f"version {serving.version} (revision {serving.revision}) keeps serving"


def record_approval(d: Draft) -> None:
    """Records a valid approval of the spec's revision (once) and sets Authorized."""
    gate, s = d.sit.gate, d.status
    if gate is not None and gate.is_open and gate.approval is not None:
        approval = gate.approval
        record = ApprovalRecord(
            approved_by=approval.approved_by,
            approved_at=format_rfc3339(approval.approved_at),
            revision=d.sit.revision,
            risk_acceptance=approval.risk_acceptance,
            risk_accepted_by=approval.risk_accepted_by,
            conditions=approval.conditions,
            recorded_at=d.now_iso,
            written_by=writer_of(APPROVED_BY, d.inputs.managed_fields),
            approval_signature=approval.approval_signature,
            risk_signature=approval.risk_signature,
        )
        # From the marker only the GitOps identity may set, never from a field-manager name.
        record.asserted_through_git = d.inputs.annotations.get(APPROVAL_SOURCE) == FROM_GIT
        old = s.approval
        same = old is not None and old.model_dump(exclude={"recorded_at"}) == record.model_dump(
            exclude={"recorded_at"}
        )
        if not same:
            s.approval = record
            # The record carries the approved content (the model's facts, the plan) and
            # the approval field by field, signatures included when the gate checked them.
            d.note(
                "Approved",
                approval_text(record),
                subject=d.subject_of_spec(),
                record_reason=ApprovalRecorded,
                content=vouched_content(d.spec) if d.spec is not None else None,
                approval=RecordedApproval.model_validate(record.model_dump()),
            )
    authorised = d.authorised()
    if gate is not None and gate.is_open:
        reason = "Approved"
    elif authorised:
        reason = "ApprovalRecorded"
    else:
        reason = gate.reason if gate is not None else "ApprovalRequired"
    if authorised and s.approval is not None and s.approval.revision == d.sit.revision:
        message = approval_text(s.approval)
    elif authorised:
        message = f"revision {d.sit.revision} is the revision serving"
    else:
        message = gate.describe() if gate is not None else f"spec is invalid: {d.inputs.spec_error}"
    s.conditions = cond.set_condition(
        s.conditions, cond.AUTHORIZED, authorised, reason, message, d.now_iso, d.inputs.generation
    )


def approval_text(record: ApprovalRecord) -> str:
    text = (
        f"revision {record.revision} approved by {record.approved_by} at {record.approved_at}; "
        f"risk acceptance {record.risk_acceptance} by {record.risk_accepted_by}"
    )
    if record.asserted_through_git:
        text += f" (asserted through Git by {record.written_by})"
    text += f"; conditions: {record.conditions}" if record.conditions else ""
    for what, check in (("approval", record.approval_signature), ("risk", record.risk_signature)):
        text += signature_text(what, check)
    return text


def signature_text(what: str, check: SignatureCheck | None) -> str:
    if check is None:
        return ""
    if check.verified:
        return f"; {what} signed by {check.signer} with key {check.key_fingerprint} (verified)"
    return f"; {what} signature NOT verified: {check.problem}"
