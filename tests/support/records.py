"""Synthetic AIRecords for report tests and the report-size benchmark.

Records are chained (sequence, previousDigest) but their digests and signatures are dummies:
the report takes the verification result as given, so nothing here needs the operator key.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from aigate.api import records as api
from aigate.api.records import AIRecordSpec
from aigate.api.v1alpha1 import MeasurementRecord
from aigate.core.revision import compute_revision
from support.factories import iso, spec_dict, spec_model

UID = "0b5c1f9e-3d2a-4c4e-9a51-6f0e8d7c2b10"

FOUR_METRICS = [
    {"name": "error-rate", "query": "error_rate", "max": 0.01},
    {"name": "p99-latency-seconds", "query": "p99_latency", "max": 0.25},
    {"name": "mean-confidence", "query": "mean_confidence", "min": 0.7},
    {"name": "input-drift-psi", "query": "psi", "max": 0.2},
]
THREE_STAGES = [
    {"name": "canary-10", "weight": 10, "duration": "10m"},
    {"name": "canary-50", "weight": 50, "duration": "20m", "manualPromotion": True},
    {"name": "full", "weight": 100},
]


def content_for(version: str, **model: Any) -> dict[str, Any]:
    """The vouched content of a spec (what ApprovalRecorded carries) and its revision."""
    raw = spec_dict()
    raw["model"].update(version=version, **model)
    raw["template"]["spec"]["containers"][0]["image"] = f"fake-model:{version}"
    raw["rollout"]["stages"] = copy.deepcopy(THREE_STAGES)
    raw["rollout"]["analysis"]["metrics"] = copy.deepcopy(FOUR_METRICS)
    raw["rollout"]["postPromotion"] = {"monitorFor": "30m"}
    raw.pop("replicas")
    return raw


def revision_of(content: dict[str, Any]) -> str:
    """The revision of valid content; for content no spec could have (a forged export), a
    digest of it all the same."""
    try:
        return compute_revision(spec_model({**content, "replicas": 1}))
    except ValidationError:
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def threshold_text(metric: dict[str, Any]) -> str:
    parts = ([f">= {metric['min']:g}"] if "min" in metric else []) + (
        [f"<= {metric['max']:g}"] if "max" in metric else []
    )
    return ", ".join(parts)


class RecordLog:
    """Appends records for one AIDeployment, as the operator would write them."""

    def __init__(self, name: str = "fraud-scorer", namespace: str = "ml", uid: str = UID) -> None:
        self.subject = api.RecordSubject(namespace=namespace, name=name, uid=uid)
        self.records: list[AIRecordSpec] = []
        self.revision = ""
        self.version = ""

    def add(self, at: datetime, reason: str, **fields: Any) -> AIRecordSpec:
        sequence = len(self.records) + 1
        previous = self.records[-1].digest if self.records else api.GENESIS_DIGEST
        digest = hashlib.sha256(f"{self.subject.uid}/{sequence}/{reason}".encode()).hexdigest()
        fields.setdefault("revision", self.revision)
        fields.setdefault("version", self.version)
        record = AIRecordSpec(
            subject=self.subject,
            sequence=sequence,
            time=iso(at),
            reason=reason,
            expires_at=iso(at + timedelta(days=400)),
            previous_digest=previous,
            digest=digest,
            signature=api.RecordSignature(key_id="SHA256:dummy", value="ZHVtbXk="),
            **fields,
        )
        self.records.append(record)
        return record

    def approve(
        self,
        at: datetime,
        version: str,
        by: str = "jane@example.com",
        conditions: str = "Review after 30 days.",
        signed: bool | None = True,
        **model: Any,
    ) -> AIRecordSpec:
        content = content_for(version, **model)
        self.revision, self.version = revision_of(content), version
        signature = None
        if signed is not None:
            signature = api.SignatureCheck(
                signer=by,
                signature="-----BEGIN SSH SIGNATURE-----dummy",
                key_fingerprint="SHA256:approverkey",
                verified=signed,
                problem="" if signed else "no registered key of jane@example.com matches",
            )
        approval = api.RecordedApproval(
            approved_by=by,
            approved_at=iso(at - timedelta(minutes=5)),
            revision=self.revision,
            conditions=conditions,
            risk_acceptance="RISK-1234",
            risk_accepted_by="ciso@example.com",
            written_by="kubectl-aigate",
            approval_signature=signature,
        )
        return self.add(at, api.ApprovalRecorded, content=content, approval=approval)

    def transition(
        self,
        at: datetime,
        from_phase: str,
        to_phase: str,
        reason: str,
        stage: str = "",
        message: str = "",
        evidence: list[MeasurementRecord] | None = None,
    ) -> AIRecordSpec:
        return self.add(
            at,
            reason,
            from_phase=from_phase,
            to_phase=to_phase,
            stage=stage,
            message=message or reason,
            evidence=evidence or [],
        )

    def measure(
        self,
        at: datetime,
        stage: str,
        values: dict[str, float | None],
        track: str = "canary",
        verdicts: dict[str, str] | None = None,
    ) -> AIRecordSpec:
        evidence = [
            measurement(at, name, value, track, (verdicts or {}).get(name))
            for name, value in values.items()
        ]
        return self.add(at, api.MeasurementsRecorded, stage=stage, evidence=evidence)

    def request(
        self, at: datetime, kind: str, by: str, outcome: str, stage: str = ""
    ) -> AIRecordSpec:
        target = f"{stage}@{self.revision}" if kind == "promote" else f"@{self.revision}"
        value = f"{target} by={by} {iso(at)}"
        return self.add(
            at,
            api.RequestHandled,
            stage=stage,
            message=outcome,
            request=api.RecordedRequest(kind=kind, value=value, by=by, outcome=outcome),
        )

    def drift(self, at: datetime, message: str) -> AIRecordSpec:
        return self.add(at, api.DriftDetected, message=message)

    def export(self, **extra: Any) -> dict[str, Any]:
        """kubectl's list shape, as `kubectl get airecords -o json` writes it."""
        items = [
            {
                "apiVersion": "aigate.dev/v1alpha1",
                "kind": api.RECORD_KIND,
                "metadata": {
                    "name": f"{self.subject.name}-{r.sequence:08d}",
                    "namespace": "aigate-system",
                },
                "spec": r.model_dump(mode="json", by_alias=True, exclude_none=True),
            }
            for r in self.records
        ]
        return {"apiVersion": "v1", "kind": "List", "items": items, **extra}


def measurement(
    at: datetime, name: str, value: float | None, track: str = "canary", verdict: str | None = None
) -> MeasurementRecord:
    metric = next(m for m in FOUR_METRICS if m["name"] == name)
    if verdict is None:
        if value is None:
            verdict = "Inconclusive"
        else:
            ok = metric.get("min", float("-inf")) <= value <= metric.get("max", float("inf"))
            verdict = "Pass" if ok else "Fail"
    return MeasurementRecord(
        metric=name,
        track=track,
        query=metric["query"],
        value="" if value is None else f"{value:g}",
        threshold=threshold_text(metric),
        verdict=verdict,
        reason="" if value is not None else "empty result",
        time=iso(at),
    )


GOOD = {
    "error-rate": 0.002,
    "p99-latency-seconds": 0.12,
    "mean-confidence": 0.86,
    "input-drift-psi": 0.05,
}


def rollout(
    log: RecordLog,
    start: datetime,
    interval: timedelta = timedelta(seconds=30),
    stage_minutes: tuple[int, ...] = (10, 20, 0),
    breach_at: int | None = None,
    approver: str = "jane@example.com",
) -> datetime:
    """One canary rollout of log's approved revision through THREE_STAGES with GOOD values
    (wobbling), a manual promotion of canary-50, the post-promotion watch; or, with
    breach_at (a measurement index in the first stage), an error-rate breach and rollback.
    Returns the time of its last record."""
    at = start
    log.transition(at, "Stable", "Progressing", "RolloutStarted", stage="canary-10")
    stages = [s["name"] for s in THREE_STAGES]
    for index, (stage, minutes) in enumerate(zip(stages, stage_minutes, strict=True)):
        for step in range(max(1, int(minutes * 60 / interval.total_seconds()))):
            at += interval
            values = {k: v * (1 + 0.03 * ((step * 7 + index) % 5 - 2)) for k, v in GOOD.items()}
            if breach_at is not None and index == 0 and step >= breach_at:
                values["error-rate"] = 0.03
            log.measure(at, stage, values)
            if breach_at is not None and index == 0 and step >= breach_at + 2:
                log.transition(
                    at,
                    "Progressing",
                    "RollingBack",
                    "AnalysisFailed",
                    stage=stage,
                    message="error-rate failed 3 times (failureLimit 2): 0.03 > 0.01",
                    evidence=[measurement(at, "error-rate", 0.03)],
                )
                log.transition(
                    at + interval,
                    "RollingBack",
                    "RolledBack",
                    "RollbackCompleted",
                    message="stable serves at full strength",
                )
                return at + interval
        if stage == "canary-50":
            log.transition(at, "Progressing", "Paused", "AwaitingPromotion", stage=stage)
            at += timedelta(minutes=3)
            log.request(at, "promote", approver, "promoted past canary-50", stage=stage)
        if index + 1 < len(stages):
            log.transition(
                at, "Progressing", "Progressing", "StageStarted", stage=stages[index + 1]
            )
    log.transition(at, "Progressing", "Promoting", "AllStagesPassed", stage="full")
    at += timedelta(minutes=1)
    log.transition(
        at, "Promoting", "Verifying", "Promoted", message="new version serving; watch starts"
    )
    for _ in range(int(30 * 60 / interval.total_seconds())):
        at += interval
        log.measure(at, "", GOOD, track="stable")
    log.transition(at, "Verifying", "Stable", "WatchCompleted")
    return at


T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def two_rollouts() -> RecordLog:
    """2.4.0 approved and promoted; 2.5.0 approved, breaches, rolled back; drift; abort."""
    log = RecordLog()
    log.approve(T0, "2.4.0")
    end = rollout(log, T0 + timedelta(minutes=1))
    log.approve(end + timedelta(days=2), "2.5.0", by="omar@example.com", signed=False)
    rollout(log, end + timedelta(days=2, minutes=5), breach_at=4)
    log.drift(
        end + timedelta(days=3), "stable: spec.template.spec.containers[server].image differed"
    )
    return log
