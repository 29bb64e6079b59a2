"""Valid AIDeployment specs and approvals to start tests from."""

from __future__ import annotations

import copy
import hashlib
from datetime import datetime, timedelta
from typing import Any

from aigate.api.v1alpha1 import AIDeploymentSpec
from aigate.core import gate
from aigate.core.revision import compute_revision


def image_for(version: str) -> str:
    """A fake model server image pinned by digest (riskTier high requires it)."""
    return f"fake-model@sha256:{hashlib.sha256(version.encode()).hexdigest()}"


BASE_SPEC: dict[str, Any] = {
    "model": {
        "name": "fraud-scorer",
        "version": "2.4.0",
        "riskTier": "high",
        "owner": "team-risk-ml",
        "intendedUse": "Score transactions for fraud review.",
        "limitations": ["Not validated for gambling merchants."],
    },
    "replicas": 4,
    "template": {"spec": {"containers": [{"name": "server", "image": image_for("2.4.0")}]}},
    "service": {"port": 8080},
    # riskTier high requires signed approvals unless said otherwise; the suites that are
    # not about signatures approve with annotations alone (tests/unit/test_signatures.py,
    # tests/integration/test_signed_approvals.py sign).
    "governance": {"approvalTTL": "168h", "requireSignedApproval": False},
    "rollout": {
        "progressDeadline": "10m",
        "stages": [
            {"name": "canary-10", "weight": 10, "duration": "1m"},
            {"name": "full", "weight": 100},
        ],
        "analysis": {
            "prometheus": {"url": "http://127.0.0.1:9090"},
            "interval": "30s",
            "metrics": [{"name": "error-rate", "query": "error_rate", "max": 0.01}],
        },
    },
}


def spec_dict(**overrides: Any) -> dict[str, Any]:
    """A deep copy of BASE_SPEC with top-level keys replaced."""
    spec = copy.deepcopy(BASE_SPEC)
    spec.update(copy.deepcopy(overrides))
    return spec


def spec_model(raw: dict[str, Any] | None = None) -> AIDeploymentSpec:
    return AIDeploymentSpec.model_validate(raw if raw is not None else spec_dict())


iso = gate.format_rfc3339


def approval_annotations(revision: str, at: datetime, **overrides: str | None) -> dict[str, str]:
    """Complete, valid approval annotations; an override of None removes that annotation."""
    annotations = {
        gate.APPROVED_BY: "jane@example.com",
        gate.APPROVED_AT: iso(at),
        gate.APPROVED_REVISION: revision,
        gate.RISK_ACCEPTANCE: "RISK-1234",
        gate.RISK_ACCEPTED_BY: "ciso@example.com",
    }
    for key, value in overrides.items():
        name = gate.PREFIX + key.replace("_", "-")
        if value is None:
            annotations.pop(name, None)
        else:
            annotations[name] = value
    return annotations


def approved_for(
    spec: AIDeploymentSpec, now: datetime, age: timedelta = timedelta(hours=1)
) -> dict[str, str]:
    return approval_annotations(compute_revision(spec), now - age)


def request(
    kind: str, revision: str = "", stage: str = "", text: str = "", by: str = "approver"
) -> str:
    """A request value in the shape the chart's policy admits: `<stage>@<revision> by=<user>
    [text]` for promote, `@<revision> by=<user> [text]` for retry and abort (an abort may
    name no revision)."""
    target = f"{stage}@{revision}" if revision or stage else ""
    return " ".join(part for part in (target, f"by={by}", text) if part)
