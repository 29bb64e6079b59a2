"""Which evidence in the report answers which control: ISO/IEC 42001:2023 Annex A and the EU
AI Act (Regulation (EU) 2024/1689). See docs/decisions/0013-evidence-report.md for why each
row is there and what the report does not cover (the organisation's own processes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ControlRow:
    framework: str
    control: str
    title: str
    evidence: str
    sections: tuple[str, ...]  # anchors of the report's sections


ISO = "ISO/IEC 42001:2023"
EU = "EU AI Act"

CONTROLS: tuple[ControlRow, ...] = (
    ControlRow(
        ISO,
        "A.6.2.5",
        "AI system deployment",
        "The deployment plan (stages, weights, durations, thresholds, limits) approved before "
        "deployment, and for each revision the approval naming its full digest: nothing ran "
        "without it.",
        ("plan", "approvals", "attempts"),
    ),
    ControlRow(
        ISO,
        "A.6.2.6",
        "AI system operation and monitoring",
        "Every canary and post-promotion measurement against its threshold, over time; "
        "promotions, rollbacks with their triggers, drift of the running workload.",
        ("attempts", "drift"),
    ),
    ControlRow(
        ISO,
        "A.6.2.8",
        "AI system recording of event logs",
        "The records this report is built from: one per decision, sequence-numbered, chained "
        "and signed by the operator, kept after the AIDeployment is deleted; their "
        "verification result.",
        ("verification", "attempts"),
    ),
    ControlRow(
        ISO,
        "A.6.2.4",
        "AI system verification and validation",
        "The predefined progression criteria (metrics, thresholds, failure and inconclusive "
        "limits) and the evidence each stage passed on.",
        ("plan", "attempts"),
    ),
    ControlRow(
        ISO,
        "A.9.4",
        "Intended use of the AI system",
        "The intended use and known limitations recorded with the approved version.",
        ("model",),
    ),
    ControlRow(
        ISO,
        "A.3.2",
        "AI roles and responsibilities",
        "Owner of the model; who approved and who accepted the risk of each version, "
        "separately, with signature verification; who asked for each promote, abort, retry.",
        ("model", "approvals", "requests"),
    ),
    ControlRow(
        EU,
        "Art. 12",
        "Record-keeping",
        "Automatically recorded events over the system's operation: changes of version "
        "(12(2)(a)), the data for post-market monitoring (12(2)(b)) and for monitoring "
        "operation (12(2)(c)).",
        ("verification", "attempts", "drift"),
    ),
    ControlRow(
        EU,
        "Art. 14",
        "Human oversight",
        "People decide: approval and risk acceptance before any deployment, manual promotion "
        "gates, and abort requests (the 'stop' of 14(4)(e)) with who made them and what "
        "followed.",
        ("approvals", "requests", "attempts"),
    ),
    ControlRow(
        EU,
        "Art. 72",
        "Post-market monitoring",
        "Measurements of the serving version in the post-promotion watch, breaches and the "
        "rollbacks they caused.",
        ("attempts",),
    ),
    ControlRow(
        EU,
        "Art. 19",
        "Automatically generated logs (retention)",
        "Records are kept for the configured retention (default 400 days, at least the six "
        "months of Art. 19(1)) and outlive the AIDeployment.",
        ("verification",),
    ),
)
