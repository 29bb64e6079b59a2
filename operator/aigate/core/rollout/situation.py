"""classify(): the facts of one reconcile, worked out once from the inputs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from aigate.api.durations import parse_duration
from aigate.api.v1alpha1 import AIDeploymentSpec
from aigate.core.gate import GateDecision, evaluate_gate, signatures_required_by
from aigate.core.requests import Kind, Request, pending_requests
from aigate.core.revision import compute_revision
from aigate.core.rollout.model import Inputs, WorkloadState


@dataclass(frozen=True)
class Situation:
    inputs: Inputs
    spec: AIDeploymentSpec | None  # None when the spec cannot be used (inputs.spec_error)
    revision: str  # the spec's revision, "" when the spec cannot be used
    gate: GateDecision | None
    requests: dict[Kind, Request]  # request values never handled

    @property
    def stable(self) -> WorkloadState | None:
        return self.inputs.observed.stable

    @property
    def canary(self) -> WorkloadState | None:
        return self.inputs.observed.canary


def classify(inputs: Inputs) -> Situation:
    spec = inputs.spec
    revision = compute_revision(spec) if spec is not None else ""
    gate = (
        evaluate_gate(
            inputs.annotations,
            revision,
            parse_duration(spec.governance.approval_ttl),
            inputs.now,
            policy_problem=inputs.policy_problem or None,
            signatures=dataclasses.replace(
                inputs.signatures, required_by=signatures_required_by(spec, inputs.signed_tiers)
            ),
        )
        if spec is not None
        else None
    )
    requests = pending_requests(inputs.annotations, inputs.status.handled_requests)
    return Situation(inputs, spec, revision, gate, requests)
