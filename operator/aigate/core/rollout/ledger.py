"""The decision's side of the audit trail: seals AIRecords into status.records.outbox and
keeps status' summary (history, pending measurements) bounded in bytes.

A record is sealed with the decision that took it (the same status write), so records exist
exactly for the decisions taken; the reconciler creates them and empties the outbox.
Measurements are batched into MeasurementsRecorded records, flushed before each transition
and whenever a batch reaches its size bound, so a month-long rollout makes a few thousand
records, none near etcd's object limit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aigate.api.records import (
    AIRecordSpec,
    ApprovalRecorded,
    DeploymentDeleted,
    MeasurementsRecorded,
    RecordSubject,
)
from aigate.api.v1alpha1 import AIDeploymentStatus, HistoryEntry, MeasurementRecord
from aigate.core import records
from aigate.core.gate import format_rfc3339

# Status is a summary the API server decodes, validates and encodes whole on every status
# write (about half of its CPU at 1,000 rollouts), and the operator holds one per resource:
# kept small. The records hold everything (`kubectl aigate history` reads them).
MAX_HISTORY = 40
MAX_HISTORY_BYTES = 12 * 1024
MEASUREMENT_BATCH = 25
MEASUREMENT_BATCH_BYTES = 16 * 1024


def _size(items: Sequence[Any]) -> int:
    return len(json.dumps([i.model_dump(mode="json", by_alias=True) for i in items]))


def _summary(entry: HistoryEntry) -> HistoryEntry:
    """The history entry as status keeps it: what was decided and its record's place."""
    if not entry.evidence and not entry.previous_digest:
        return entry
    return entry.model_copy(update={"evidence": [], "previous_digest": ""})


class Ledger:
    def __init__(
        self, status: AIDeploymentStatus, subject: RecordSubject, now_iso: str, expires_iso: str
    ) -> None:
        self.status = status
        self.subject = subject
        self.now_iso = now_iso
        self.expires_iso = expires_iso
        self.new: list[AIRecordSpec] = []
        self.new_history: list[HistoryEntry] = []

    def append(self, entry: HistoryEntry, keep: bool = True, **facts: Any) -> AIRecordSpec:
        """Seals the record of `entry` (plus `facts`: record_reason, content, approval, request)
        after the chain's head; `keep`: `entry`, naming the record, joins the history."""
        state = self.status.records
        record = records.seal(
            AIRecordSpec(
                subject=self.subject,
                sequence=1,
                time=entry.time,
                reason=facts.pop("record_reason", entry.reason),
                message=entry.message,
                from_phase=entry.from_phase,
                to_phase=entry.to_phase,
                revision=entry.revision,
                version=entry.version,
                stage=entry.stage,
                evidence=entry.evidence,
                expires_at=self.expires_iso,
                previous_digest=records.GENESIS,
                digest=records.GENESIS,
                signature=records.UNSIGNED,
                **facts,
            ),
            records.ChainHead(state.last_sequence, state.last_digest or records.GENESIS),
        )
        state.last_sequence, state.last_digest = record.sequence, record.digest
        if record.reason == ApprovalRecorded:
            state.last_approval_sequence = record.sequence
        if record.to_phase == "RollingBack":
            state.last_breach_sequence = record.sequence
        state.outbox.append(record.model_dump(mode="json", by_alias=True))
        self.new.append(record)
        if keep:
            self._keep(entry, record)
        return record

    def _keep(self, entry: HistoryEntry, record: AIRecordSpec) -> None:
        sealed = entry.model_copy(update={"sequence": record.sequence, "digest": record.digest})
        self.new_history.append(sealed)
        # In status, an entry names its record (sequence, digest) without the evidence the
        # record holds; entries an older aigate wrote with it are slimmed too.
        history = [*(_summary(e) for e in self.status.history), _summary(sealed)][-MAX_HISTORY:]
        while len(history) > 1 and _size(history) > MAX_HISTORY_BYTES:
            history = history[1:]
        self.status.history = history

    def measured(self, new: Sequence[MeasurementRecord], entry: HistoryEntry) -> None:
        """Adds measurements to the pending batch; a full batch becomes a record."""
        state = self.status.records
        state.pending_measurements = [*state.pending_measurements, *new]
        pending = state.pending_measurements
        if len(pending) >= MEASUREMENT_BATCH or _size(pending) >= MEASUREMENT_BATCH_BYTES:
            self.flush(entry)

    def flush(self, entry: HistoryEntry) -> None:
        """The pending measurements as one MeasurementsRecorded record (none: nothing)."""
        pending = self.status.records.pending_measurements
        if not pending:
            return
        self.status.records.pending_measurements = []
        batch = entry.model_copy(
            update={
                "reason": MeasurementsRecorded,
                "message": f"{len(pending)} measurement(s)",
                "evidence": list(pending),
            }
        )
        self.append(batch, keep=False)


def close_chain(
    status: AIDeploymentStatus, subject: RecordSubject, now: datetime, expires: datetime
) -> AIDeploymentStatus:
    """The status with the chain's last record sealed: the pending measurements, then
    DeploymentDeleted (the AIDeployment is gone; verify expects this end)."""
    closed = status.model_copy(deep=True)
    now_iso = format_rfc3339(now)
    ledger = Ledger(closed, subject, now_iso, format_rfc3339(expires))
    phase = closed.phase
    serving = closed.serving
    entry = HistoryEntry(
        time=now_iso,
        from_phase=phase,
        to_phase=phase,
        revision=serving.revision if serving else closed.revision,
        version=serving.version if serving else "",
    )
    ledger.flush(entry)
    message = f"AIDeployment {subject.namespace}/{subject.name} (uid {subject.uid}) deleted"
    ledger.append(
        entry.model_copy(update={"reason": DeploymentDeleted, "message": message}), keep=False
    )
    closed.records.closed = True
    return closed
