"""Report -> Markdown (for a ticket, a wiki or a pull request) and JSON (for tools).

Markdown has no charts: each metric is summarised (measurements, failures, lowest and
highest value against the threshold); the JSON keeps every measurement. Every string from a
record is escaped so it renders as the text it is, never as markup or a table cell break.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Sequence

from aigate.report.model import Event, Report, Series, SignatureFacts

REPORT_FORMAT = "aigate.dev/report/v1"
_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md(value: object) -> str:
    """Text safe in a Markdown paragraph or table cell: HTML special characters as
    entities, Markdown punctuation backslash-escaped, line breaks as spaces."""
    text = _SPECIAL.sub(r"\\\1", "" if value is None else str(value))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"\s*[\r\n]+\s*", " ", text)


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _signature(check: SignatureFacts | None) -> str:
    if check is None:
        return "unsigned"
    if check.verified:
        return f"verified ({check.signer}, key {check.key_fingerprint})"
    return f"NOT verified: {check.problem or 'no reason recorded'}"


def _series_rows(series: Sequence[Series]) -> list[list[object]]:
    rows = []
    for s in series:
        values = [p.value for p in s.points if p.value is not None]
        rows.append(
            [
                s.metric,
                s.threshold or "-",
                len(s.points),
                s.failures,
                s.inconclusive,
                f"{min(values):g}" if values else "-",
                f"{max(values):g}" if values else "-",
                s.points[-1].text if s.points else "-",
            ]
        )
    return rows


def _events(title: str, events: Sequence[Event], requests: bool = False) -> list[str]:
    if not events:
        return []
    if requests:
        return [
            f"**{title}**",
            "",
            *_table(
                ["#", "Time", "Request", "By", "Value", "Outcome"],
                (
                    [
                        e.sequence,
                        e.time,
                        e.request,
                        e.by or "unknown",
                        e.value,
                        e.outcome or e.message,
                    ]
                    for e in events
                ),
            ),
        ]
    lines = [
        f"**{title}**",
        "",
        *_table(
            ["#", "Time", "Reason", "To", "Message"],
            ([e.sequence, e.time, e.reason, e.to_phase, e.message] for e in events),
        ),
    ]
    breaches = [
        f"- #{e.sequence} {md(p.time)} {md(p.stage)} {md(p.track)} {md(p.metric)}: value "
        f"{md(p.text or 'none')} ({md(p.verdict)}, pass when {md(p.threshold)}) {md(p.reason)}"
        for e in events
        for p in e.evidence
    ]
    return [*lines, *breaches, ""] if breaches else lines


def _head(r: Report) -> list[str]:
    v = r.verification
    state = (
        f"The AIDeployment exists: phase {md(r.current.phase or '-')}, serving version "
        f"{md(r.current.serving_version or '-')}."
        if r.current.exists
        else "The AIDeployment's current state is not part of this report (built offline from "
        "exported records)."
        if r.current.exists is None
        else "The AIDeployment no longer exists"
        + (f" (deleted {md(r.current.deleted_at)})" if r.current.deleted_at else "")
        + "; its records remain."
    )
    return [
        f"# Evidence report: AIDeployment {md(r.subject.namespace)}/{md(r.subject.name)}",
        "",
        f"Generated {md(r.generated_at)} by aigate from its signed decision records. "
        + (
            f"Shows records from {md(r.since)} on (the verification covers every record). "
            if r.since
            else ""
        )
        + f"Period shown: {md(r.period[0] or '-')} to {md(r.period[1] or '-')}.",
        "",
        f"Record verification: **{'intact' if v.intact else 'NOT intact'}** ({v.records} records, "
        f"sequence {v.first_sequence} to {v.last_sequence}). {state}",
        "",
    ]


def _model(r: Report) -> list[str]:
    lines = ["## 1. The model", ""]
    if r.model is None:
        return [*lines, "No approval was recorded, so no model facts are on record.", ""]
    m = r.model
    lines += _table(
        ["Fact", "Recorded"],
        [
            ["Model", f"{m.name} {m.version}"],
            ["Risk tier", m.risk_tier or "not recorded"],
            ["Owner", m.owner or "not recorded"],
            ["Intended use", m.intended_use or "not recorded"],
            ["Known limitations", "; ".join(m.limitations) or "none recorded"],
            ["As approved", f"revision {m.revision}, recorded {m.recorded_at}"],
        ],
    )
    return lines


def _approvals(r: Report) -> list[str]:
    lines = ["## 2. Approvals and risk acceptances", ""]
    if not r.approvals:
        return [*lines, "No approval recorded in this period.", ""]
    return lines + _table(
        [
            "Version",
            "Revision",
            "Approved by",
            "Approved at",
            "Conditions",
            "Approval signature",
            "Risk acceptance",
            "Accepted by",
            "Risk signature",
            "Written by",
        ],
        (
            [
                a.version,
                a.revision,
                a.approved_by,
                a.approved_at,
                a.conditions or "none",
                _signature(a.approval_signature),
                a.risk_acceptance,
                a.risk_accepted_by,
                _signature(a.risk_signature),
                (a.written_by or "-")
                + (" (asserted through Git)" if a.asserted_through_git else ""),
            ]
            for a in r.approvals
        ),
    )


def _plans(r: Report) -> list[str]:
    lines = ["## 3. Approved plans", ""]
    for p in r.plans:
        lines += [
            f"### Version {md(p.version)} (revision {md(p.revision)})",
            "",
            f"Analysis every {md(p.interval)}; failure limit {md(p.failure_limit)}, consecutive "
            f"failure limit {md(p.consecutive_failure_limit)}, inconclusive limit "
            f"{md(p.inconclusive_limit)}; progress deadline {md(p.progress_deadline)}; "
            f"post-promotion watch {md(p.monitor_for)}; approval valid for {md(p.approval_ttl)}.",
            "",
            *_table(
                ["Stage", "Traffic weight", "Duration", "Manual promotion"],
                (
                    [s.name, f"{s.weight}%", s.duration, "yes" if s.manual_promotion else "no"]
                    for s in p.stages
                ),
            ),
            *_table(
                ["Metric", "Min", "Max", "No data", "Error", "Query"],
                (
                    [
                        m.name,
                        "-" if m.min is None else f"{m.min:g}",
                        "-" if m.max is None else f"{m.max:g}",
                        m.on_no_data,
                        m.on_error,
                        m.query,
                    ]
                    for m in p.metrics
                ),
            ),
        ]
    return lines if r.plans else [*lines, "No approved plan on record in this period.", ""]


def _attempts(r: Report) -> list[str]:
    lines = ["## 4. Rollouts", ""]
    for a in r.attempts:
        end = (
            f"ended {md(a.ended_at)}: **{md(a.outcome)}**"
            if a.outcome
            else "still running at the last record"
        )
        lines += [
            f"### Rollout {a.number}: version {md(a.version)} (revision {md(a.revision)})",
            "",
            f"Started {md(a.started_at)} ({md(a.started_by)}); {end}.",
            "",
            *_table(
                ["Stage", "Started", "Ended", "Ended by"],
                ([s.name, s.started_at, s.ended_at or "-", s.ended_by or "-"] for s in a.stages),
            ),
            *_table(
                [
                    "Metric",
                    "Pass when",
                    "Measurements",
                    "Failed",
                    "Inconclusive",
                    "Lowest",
                    "Highest",
                    "Last",
                ],
                _series_rows(a.series),
            ),
            *_events("Rollbacks and their triggers", a.rollbacks),
            *_events("Promotions", a.promotions),
            *_events("Requests", a.requests, requests=True),
            *_events("Drift", a.drift),
        ]
    return lines if r.attempts else [*lines, "No rollout in this period.", ""]


def _tail(r: Report) -> list[str]:
    v = r.verification
    lines = ["## 5. Requests (promote, abort, retry)", ""]
    lines += _events("Requests", r.requests, requests=True) or ["No request in this period.", ""]
    lines += ["## 6. Drift of the running workload", ""]
    lines += _events("Drift", r.drift) or ["No drift detected in this period.", ""]
    lines += [
        "## 7. Verification of the records",
        "",
        f"**{'Intact' if v.intact else 'NOT intact'}.** {v.records} records, sequence "
        f"{v.first_sequence} to {v.last_sequence}, subject UID(s) "
        f"{', '.join(md(u) for u in r.subject.uids) or '-'}. Checked: {md(v.checked)}.",
        "",
        *[f"- {md(p)}" for p in v.problems],
        *([""] if v.problems else []),
        "## 8. Control mapping",
        "",
        *_table(
            ["Framework", "Control", "Title", "Evidence in this report", "Sections"],
            (
                [c.framework, c.control, c.title, c.evidence, ", ".join(c.sections)]
                for c in r.controls
            ),
        ),
    ]
    return lines


def render_markdown(report: Report) -> str:
    parts = [
        _head(report),
        _model(report),
        _approvals(report),
        _plans(report),
        _attempts(report),
        _tail(report),
    ]
    return "\n".join(line for part in parts for line in part).rstrip() + "\n"


def render_json(report: Report) -> str:
    data = {"format": REPORT_FORMAT, **dataclasses.asdict(report)}
    return json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
