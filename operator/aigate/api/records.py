"""AIRecord (aigate.dev/v1alpha1): one decision about one AIDeployment, kept outside it.

Records are the audit trail an auditor reads (`kubectl aigate verify`, `kubectl aigate
report`). They are deliberately not owned by the AIDeployment (no ownerReference), so
deleting it leaves them; the operator deletes a record only after its `expiresAt`.

Per AIDeployment (by UID) records form one chain: `sequence` counts from 1 without gaps,
`previousDigest` names the digest of the record before (sequence 1: 64 zeros), `digest` is
the SHA-256 of the record's canonical content (everything but `digest` and `signature`),
and `signature` is the operator's Ed25519 signature over that digest. A record is created
once and never changed (chart policy); its object name is deterministic
(aigate.core.records.record_name), so a repeated create is harmless.

The pydantic classes here are the contract between the writer (the operator), `verify`
and `report`; the CRD schema is generated from them like the AIDeployment's.
"""

from __future__ import annotations

from typing import Literal

from kube_custom_resource import CustomResource, schema
from pydantic import ConfigDict, Field

# SignatureCheck lives with the status it is first written to; re-exported here.
from aigate.api.v1alpha1 import MeasurementRecord, SignatureCheck

RECORD_KIND = "AIRecord"
RECORD_PLURAL = "airecords"
GENESIS_DIGEST = "0" * 64

# Why a record was written. A transition's reason is the state machine's (e.g.
# RolloutStarted, StageStarted, AllStagesPassed, Promoted, AnalysisFailed,
# RollbackCompleted, WatchCompleted); these are the facts recorded besides transitions.
ApprovalRecorded = "ApprovalRecorded"
MeasurementsRecorded = "MeasurementsRecorded"
RequestHandled = "RequestHandled"
DriftDetected = "DriftDetected"
DeploymentDeleted = "DeploymentDeleted"  # the last record of a chain


class RecordSubject(schema.BaseModel):
    """The AIDeployment a record is about. The UID tells apart two resources that had the
    same name at different times."""

    namespace: str
    name: str
    uid: str


class RecordedApproval(schema.BaseModel):
    """An approval and risk acceptance as the operator accepted them."""

    approved_by: str
    approved_at: str
    revision: str = Field(..., description="The full revision (SHA-256) the approval names.")
    conditions: str = ""
    risk_acceptance: str
    risk_accepted_by: str
    written_by: str = Field("", description="The client (field manager) that wrote approved-by.")
    asserted_through_git: bool = False
    approval_signature: schema.Optional[SignatureCheck] = None
    risk_signature: schema.Optional[SignatureCheck] = None


class RecordedRequest(schema.BaseModel):
    """A promote/abort/retry request value, who wrote it, and what the operator did."""

    kind: Literal["promote", "abort", "retry"]
    value: str
    by: str = ""
    outcome: str = ""


class AIRecordSpec(schema.BaseModel):
    """One decision. Everything but `signature` is covered by `digest`."""

    model_config = ConfigDict(extra="forbid")

    subject: RecordSubject
    sequence: int = Field(..., ge=1, description="1, 2, 3... per subject UID, no gaps.")
    time: str = Field(..., description="When the decision was made (RFC 3339, UTC).")
    reason: str = Field(..., min_length=1)
    message: str = ""
    from_phase: str = ""
    to_phase: str = ""
    revision: str = Field("", description="The full revision the decision is about.")
    version: str = ""
    stage: str = ""
    content: schema.Optional[schema.Dict[str, schema.Any]] = Field(
        None,
        description="On ApprovalRecorded: the approved content (spec.model, template, "
        "service, rollout, governance) that hashes to `revision`; the model's facts and "
        "the plan an auditor reads.",
    )
    approval: schema.Optional[RecordedApproval] = None
    request: schema.Optional[RecordedRequest] = None
    evidence: list[MeasurementRecord] = Field(default_factory=list)
    expires_at: str = Field(..., description="The operator deletes the record after this.")
    previous_digest: str = Field(..., pattern=r"^[0-9a-f]{64}$")
    digest: str = Field(..., pattern=r"^[0-9a-f]{64}$")
    signature: RecordSignature


class RecordSignature(schema.BaseModel):
    """The operator's signature over `digest` (the ASCII hex string, prefixed with
    `aigate.dev/record/v1\\n`)."""

    algorithm: Literal["Ed25519"] = "Ed25519"
    key_id: str = Field(..., description="SHA256 fingerprint of the operator's public key.")
    value: str = Field(..., description="Base64 of the 64-byte signature.")


AIRecordSpec.model_rebuild()


class AIRecord(
    CustomResource,
    version="v1alpha1",
    kind=RECORD_KIND,
    plural_name=RECORD_PLURAL,
    short_names=["airec"],
    printer_columns=[
        {"name": "Deployment", "type": "string", "jsonPath": ".spec.subject.name"},
        {"name": "Seq", "type": "integer", "jsonPath": ".spec.sequence"},
        {"name": "Reason", "type": "string", "jsonPath": ".spec.reason"},
        {"name": "Revision", "type": "string", "jsonPath": ".spec.revision"},
        {"name": "Time", "type": "string", "jsonPath": ".spec.time"},
    ],
):
    """An append-only, signed audit record of one aigate decision (written by the operator
    only; kept after its AIDeployment is deleted, until spec.expiresAt)."""

    spec: AIRecordSpec
