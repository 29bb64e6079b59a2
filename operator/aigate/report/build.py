"""build_report(records, check, current) -> Report: the whole evidence pack as data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aigate.api import records as api
from aigate.api.records import AIRecordSpec
from aigate.report.model import (
    Plan,
    Report,
    Subject,
    approval_facts,
    attempt_of,
    current_state,
    event_of,
    model_facts,
    parse_time,
    plan_of,
    sort_key,
    split_attempts,
    verification_of,
)

CHECKED_DEFAULT = "as reported by the caller"


def _in_window(record: AIRecordSpec, since: datetime | None) -> bool:
    if since is None:
        return True
    when = parse_time(record.time)
    return when is None or when >= since  # an unreadable time is shown, never hidden


def _subject(records: Sequence[AIRecordSpec], current: Mapping[str, Any] | None) -> Subject:
    meta = (current or {}).get("metadata") or {}
    uids = tuple(dict.fromkeys(r.subject.uid for r in records))
    if records:
        return Subject(records[-1].subject.namespace, records[-1].subject.name, uids)
    return Subject(str(meta.get("namespace", "")), str(meta.get("name", "")), uids)


def ordered(records: Sequence[AIRecordSpec]) -> list[AIRecordSpec]:
    """By subject UID (oldest first), then sequence; one record per (uid, sequence)."""
    first_seen: dict[str, float] = {}
    for record in records:
        first_seen[record.subject.uid] = min(
            first_seen.get(record.subject.uid, float("inf")), sort_key(record.time)
        )
    unique = {(r.subject.uid, r.sequence): r for r in reversed(records)}
    return sorted(
        unique.values(), key=lambda r: (first_seen[r.subject.uid], r.subject.uid, r.sequence)
    )


def build_report(
    records: Sequence[AIRecordSpec],
    check: Any,
    current: Mapping[str, Any] | None = None,
    since: datetime | None = None,
    now: datetime | None = None,
    checked: str = CHECKED_DEFAULT,
    looked_up: bool = False,
) -> Report:
    """`check` is an aigate.core.records.ChainCheck (intact, problems) over all `records`;
    `since` limits what is shown (the verification always covers every record). `current`
    is the AIDeployment as it is now; None with `looked_up` means it no longer exists."""
    everything = ordered(records)
    window = [r for r in everything if _in_window(r, since)]
    approvals_recorded = [r for r in everything if r.reason == api.ApprovalRecorded]
    latest_approval = {r.revision: r for r in approvals_recorded}
    plans = {rev: plan_of(r) for rev, r in latest_approval.items()}

    attempts = []
    for number, group in enumerate(split_attempts(everything), start=1):
        shown = [group[0], *(r for r in group[1:] if _in_window(r, since))]
        if len(shown) > 1 or _in_window(group[0], since):
            attempts.append(attempt_of(number, shown, plans.get(group[0].revision)))

    revisions = {a.revision for a in attempts}
    approvals = [r for r in approvals_recorded if _in_window(r, since) or r.revision in revisions]
    facts_from = (
        approvals[-1] if approvals else (approvals_recorded[-1] if approvals_recorded else None)
    )
    shown_plans: list[Plan] = [plans[rev] for rev in dict.fromkeys(r.revision for r in approvals)]
    times = [r.time for r in window]
    return Report(
        subject=_subject(everything, current),
        generated_at=(now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        since=since.strftime("%Y-%m-%dT%H:%M:%SZ") if since else "",
        period=(times[0], times[-1]) if times else ("", ""),
        current=current_state(current, everything, looked_up or current is not None),
        model=model_facts(facts_from) if facts_from else None,
        approvals=tuple(f for f in (approval_facts(r) for r in approvals) if f is not None),
        plans=tuple(shown_plans),
        attempts=tuple(attempts),
        requests=tuple(event_of(r) for r in window if r.reason == api.RequestHandled),
        drift=tuple(event_of(r) for r in window if r.reason == api.DriftDetected),
        verification=verification_of(check, everything, checked),
    )
