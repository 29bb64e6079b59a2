"""The governance gate: may this revision be deployed? (DESIGN.md section 3)

A pure function of the annotations, the current revision, the approval TTL and the time.
It fails closed: anything missing, empty, malformed, expired, in the future or for another
revision closes the gate, and every problem is reported with the annotation, what was
expected and what was found.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from aigate.api.durations import format_duration
from aigate.api.v1alpha1 import AIDeploymentSpec, SignatureCheck

PREFIX = "aigate.dev/"
APPROVED_BY = PREFIX + "approved-by"
APPROVED_AT = PREFIX + "approved-at"
APPROVED_REVISION = PREFIX + "approved-revision"
RISK_ACCEPTANCE = PREFIX + "risk-acceptance"
RISK_ACCEPTED_BY = PREFIX + "risk-accepted-by"
APPROVAL_CONDITIONS = PREFIX + "approval-conditions"
# Set (to "git") only by the GitOps identity, which the chart's policy enforces: the
# approvals were asserted through Git (docs/decisions/0008-who-may-write-what.md).
APPROVAL_SOURCE = PREFIX + "approval-source"
FROM_GIT = "git"
# Armored SSH signatures (SSHSIG) over the canonical statements of core/statements.py
# (docs/decisions/0011-signed-approvals.md).
APPROVAL_SIGNATURE = PREFIX + "approval-signature"
RISK_SIGNATURE = PREFIX + "risk-acceptance-signature"

REQUIRED_ANNOTATIONS = (
    APPROVED_BY,
    APPROVED_AT,
    APPROVED_REVISION,
    RISK_ACCEPTANCE,
    RISK_ACCEPTED_BY,
)

# Approvers' clocks and the cluster's differ by seconds; an approval stamped a little
# "ahead" of the cluster is not a forgery. Anything beyond this is refused as future.
CLOCK_SKEW_ALLOWANCE = timedelta(seconds=60)

RFC3339_PATTERN = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_MAX_SHOWN = 80

Problem = Literal[
    "Missing",
    "Empty",
    "Malformed",
    "InFuture",
    "Expired",
    "RevisionMismatch",
    "ShortRevision",
    "Unverified",
]


@dataclass(frozen=True)
class GateReason:
    """One precise reason the gate is closed."""

    annotation: str
    problem: Problem
    expected: str
    found: str | None

    def describe(self) -> str:
        found = "nothing" if self.found is None else repr(_shorten(self.found))
        if self.problem == "Unverified" and self.found is not None:
            found = self.found  # aigate's own words on why, never cut
        return f"{self.annotation}: {_PROBLEM_TEXT[self.problem]}: expected {self.expected}, found {found}"


_PROBLEM_TEXT: dict[Problem, str] = {
    "Missing": "missing",
    "Empty": "empty",
    "Malformed": "malformed",
    "InFuture": "in the future",
    "Expired": "expired",
    "RevisionMismatch": "approves another revision",
    "ShortRevision": "names a short revision; approvals name the full 64-hex digest",
    "Unverified": "does not verify",
}


@dataclass(frozen=True)
class Approval:
    """A valid approval and risk acceptance, as read from the annotations."""

    approved_by: str
    approved_at: datetime
    revision: str
    risk_acceptance: str
    risk_accepted_by: str
    conditions: str
    # What the reconciler found checking the signature annotations (None: not signed).
    approval_signature: SignatureCheck | None = None
    risk_signature: SignatureCheck | None = None


@dataclass(frozen=True)
class Signatures:
    """Input to the gate: the reconciler's verification of the signature annotations
    (None: that annotation is absent) and why signatures are required ("": they are not)."""

    approval: SignatureCheck | None = None
    risk: SignatureCheck | None = None
    required_by: str = ""


def signatures_required_by(
    spec: AIDeploymentSpec, platform_tiers: frozenset[str] = frozenset()
) -> str:
    """Why unsigned approvals are insufficient for this spec, or "" when they suffice: the
    platform's floor for the spec's risk tier (`aigate run --require-signed-approval TIER`,
    which no spec can lower), spec.governance.requireSignedApproval, or riskTier high when
    it is unset."""
    if spec.model.risk_tier in platform_tiers:
        return (
            f"the platform for riskTier {spec.model.risk_tier} "
            f"(aigate run --require-signed-approval {spec.model.risk_tier})"
        )
    required = spec.governance.require_signed_approval
    if required is None:
        return (
            "riskTier high (spec.governance.requireSignedApproval unset)"
            if (spec.model.risk_tier == "high")
            else ""
        )
    return "spec.governance.requireSignedApproval" if required else ""


# The gate's reasons (condition reasons): annotations not good enough, or no approval can be
# trusted because the cluster does not enforce who may approve (core/admission.py).
APPROVAL_REQUIRED = "ApprovalRequired"
APPROVAL_POLICY_MISSING = "ApprovalPolicyMissing"


@dataclass(frozen=True)
class GateDecision:
    approval: Approval | None
    reasons: tuple[GateReason, ...]
    # Set when `aigate run --require-approval-policy` found the policy not enforcing: the
    # gate stays closed whatever the annotations say.
    policy_problem: str | None = None

    @property
    def is_open(self) -> bool:
        return self.approval is not None and not self.reasons and not self.policy_problem

    @property
    def reason(self) -> str:
        return APPROVAL_POLICY_MISSING if self.policy_problem else APPROVAL_REQUIRED

    def describe(self) -> str:
        if self.is_open:
            return "approved"
        text = "; ".join(reason.describe() for reason in self.reasons)
        if self.policy_problem:
            policy = (
                f"approval policy not enforcing ({self.policy_problem}): no approval is "
                f"trusted until it is"
            )
            text = f"{policy}; {text}" if text else policy
        return text


def parse_rfc3339(text: str) -> datetime | None:
    """A timezone-aware datetime, or None if text is not RFC 3339 with a timezone."""
    if not RFC3339_PATTERN.match(text):
        return None
    normalised = text.upper().replace("Z", "+00:00")
    # Python < 3.12 accepts at most 6 fractional digits; RFC 3339 allows more.
    normalised = re.sub(r"(\.\d{6})\d+", r"\1", normalised)
    try:
        return datetime.fromisoformat(normalised)
    except ValueError:
        return None


def evaluate_gate(
    annotations: Mapping[str, str],
    revision: str,
    approval_ttl: timedelta,
    now: datetime,
    policy_problem: str | None = None,
    signatures: Signatures | None = None,
) -> GateDecision:
    """Decides whether `revision` is authorised for deployment at `now`; `policy_problem`
    (why the approval policy does not enforce) closes it whatever the annotations say;
    `signatures` close it when they are required and missing or do not verify."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    signatures = signatures or Signatures()
    reasons: list[GateReason] = []
    values: dict[str, str] = {}
    for name in REQUIRED_ANNOTATIONS:
        raw = annotations.get(name)
        if raw is None:
            reasons.append(GateReason(name, "Missing", _EXPECTED[name](revision), None))
        elif not raw.strip():
            reasons.append(GateReason(name, "Empty", _EXPECTED[name](revision), raw))
        else:
            values[name] = raw.strip()

    approved_at = _approved_at(values, revision, approval_ttl, now, reasons)

    named = values.get(APPROVED_REVISION)
    if named is not None and named != revision:
        problem: Problem = (
            "ShortRevision"
            if len(named) < len(revision) and revision.startswith(named)
            else "RevisionMismatch"
        )
        reasons.append(GateReason(APPROVED_REVISION, problem, repr(revision), named))
    if signatures.required_by:
        reasons.extend(_signature_reasons(values, signatures))

    if reasons or approved_at is None or policy_problem:
        return GateDecision(approval=None, reasons=tuple(reasons), policy_problem=policy_problem)
    return GateDecision(
        approval=Approval(
            approved_by=values[APPROVED_BY],
            approved_at=approved_at,
            revision=revision,
            risk_acceptance=values[RISK_ACCEPTANCE],
            risk_accepted_by=values[RISK_ACCEPTED_BY],
            conditions=annotations.get(APPROVAL_CONDITIONS, "").strip(),
            approval_signature=signatures.approval,
            risk_signature=signatures.risk,
        ),
        reasons=(),
    )


def _signature_reasons(values: Mapping[str, str], signatures: Signatures) -> list[GateReason]:
    """Required signatures that are missing or do not verify."""
    reasons = []
    for annotation, check, signer, command in (
        (APPROVAL_SIGNATURE, signatures.approval, APPROVED_BY, "approve"),
        (RISK_SIGNATURE, signatures.risk, RISK_ACCEPTED_BY, "accept-risk"),
    ):
        who = values.get(signer, f"the {signer} identity")
        expected = (
            f"an SSH signature (namespace aigate.dev) by a key registered for {who} over "
            f"the statement of these annotations (kubectl aigate {command} --sign), required "
            f"by {signatures.required_by}"
        )
        if check is None:
            reasons.append(GateReason(annotation, "Missing", expected, None))
        elif not check.verified:
            reasons.append(GateReason(annotation, "Unverified", expected, check.problem))
    return reasons


def _approved_at(
    values: Mapping[str, str],
    revision: str,
    approval_ttl: timedelta,
    now: datetime,
    reasons: list[GateReason],
) -> datetime | None:
    """approved-at as a time, if present and well-formed; adds why it does not hold."""
    approved_at: datetime | None = None
    if APPROVED_AT in values:
        raw = values[APPROVED_AT]
        approved_at = parse_rfc3339(raw)
        if approved_at is None:
            reasons.append(
                GateReason(APPROVED_AT, "Malformed", _EXPECTED[APPROVED_AT](revision), raw)
            )
        elif approved_at > now + CLOCK_SKEW_ALLOWANCE:
            reasons.append(
                GateReason(
                    APPROVED_AT,
                    "InFuture",
                    "a time not after the cluster's clock "
                    f"(allowing {int(CLOCK_SKEW_ALLOWANCE.total_seconds())}s of clock skew)",
                    raw,
                )
            )
        elif now - approved_at > approval_ttl:
            reasons.append(
                GateReason(
                    APPROVED_AT,
                    "Expired",
                    f"an approval younger than approvalTTL {format_duration(approval_ttl)} "
                    f"(this one expired at {format_rfc3339(approved_at + approval_ttl)})",
                    raw,
                )
            )

    return approved_at


_EXPECTED = {
    APPROVED_BY: lambda revision: "the approver's identity (e.g. jane@example.com)",
    APPROVED_AT: lambda revision: "an RFC 3339 time with timezone (e.g. 2026-11-20T10:00:00Z)",
    APPROVED_REVISION: lambda revision: f"the full revision in status.revision, {revision!r}",
    RISK_ACCEPTANCE: lambda revision: "a reference to the accepted risk record (e.g. RISK-1234)",
    RISK_ACCEPTED_BY: lambda revision: "the risk acceptor's identity",
}


def format_rfc3339(moment: datetime) -> str:
    """Seconds resolution, "Z" for UTC: the form status and annotations use."""
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"
