"""The governance gate: every reason it closes, and that it never opens by mistake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aigate.core import gate
from support.factories import approval_annotations

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
TTL = timedelta(hours=168)
REV = "7f3a9c2e1b04"


def evaluate(
    annotations: dict[str, str], revision: str = REV, now: datetime = NOW
) -> gate.GateDecision:
    return gate.evaluate_gate(annotations, revision, TTL, now)


def valid() -> dict[str, str]:
    return approval_annotations(REV, NOW - timedelta(hours=1))


def only_reason(decision: gate.GateDecision) -> gate.GateReason:
    assert not decision.is_open
    assert len(decision.reasons) == 1, decision.reasons
    return decision.reasons[0]


def test_complete_valid_approval_opens_the_gate_and_reads_every_field():
    annotations = valid() | {gate.APPROVAL_CONDITIONS: "only EU traffic"}
    decision = evaluate(annotations)
    assert decision.is_open
    assert decision.reasons == ()
    assert decision.approval == gate.Approval(
        approved_by="jane@example.com",
        approved_at=NOW - timedelta(hours=1),
        revision=REV,
        risk_acceptance="RISK-1234",
        risk_accepted_by="ciso@example.com",
        conditions="only EU traffic",
    )
    assert decision.describe() == "approved"


def test_no_annotations_names_all_five_missing():
    decision = evaluate({})
    assert not decision.is_open
    assert [r.annotation for r in decision.reasons] == list(gate.REQUIRED_ANNOTATIONS)
    assert all(r.problem == "Missing" and r.found is None for r in decision.reasons)
    assert "found nothing" in decision.describe()


@pytest.mark.parametrize("annotation", gate.REQUIRED_ANNOTATIONS)
def test_each_missing_annotation_is_named(annotation):
    annotations = valid()
    del annotations[annotation]
    reason = only_reason(evaluate(annotations))
    assert reason.annotation == annotation
    assert reason.problem == "Missing"


@pytest.mark.parametrize("annotation", gate.REQUIRED_ANNOTATIONS)
@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_each_empty_annotation_is_named(annotation, blank):
    annotations = valid() | {annotation: blank}
    reason = only_reason(evaluate(annotations))
    assert (reason.annotation, reason.problem, reason.found) == (annotation, "Empty", blank)


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2026-11-20",  # a date, no time
        "2026-11-20T10:00:00",  # no timezone: ambiguous, refused
        "2026-11-20 10:00:00Z",  # space instead of T
        "2026-13-20T10:00:00Z",  # month 13
        "2026-11-31T10:00:00Z",  # 31 November
        "2026-11-20T25:00:00Z",
        "1700000000",
    ],
)
def test_malformed_timestamp_is_refused_with_what_was_found(value):
    reason = only_reason(evaluate(valid() | {gate.APPROVED_AT: value}))
    assert reason.annotation == gate.APPROVED_AT
    assert reason.problem == "Malformed"
    assert reason.found == value
    assert "RFC 3339" in reason.expected


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-23T11:00:00Z",
        "2026-11-23T11:00:00z",
        "2026-11-23t11:00:00Z",
        "2026-11-23T13:00:00+02:00",
        "2026-11-23T06:00:00-05:00",
        "2026-11-23T11:00:00.123456789Z",  # nanoseconds, as Go writes them
    ],
)
def test_rfc3339_variants_are_accepted(value):
    assert evaluate(valid() | {gate.APPROVED_AT: value}).is_open


def test_approval_in_the_future_is_refused():
    future = "2026-11-24T12:00:00Z"
    reason = only_reason(evaluate(valid() | {gate.APPROVED_AT: future}))
    assert (reason.annotation, reason.problem, reason.found) == (
        gate.APPROVED_AT,
        "InFuture",
        future,
    )


def test_clock_skew_allowance_is_the_boundary_for_the_future():
    at_limit = NOW + gate.CLOCK_SKEW_ALLOWANCE
    just_past = at_limit + timedelta(seconds=1)
    assert evaluate(valid() | {gate.APPROVED_AT: at_limit.isoformat()}).is_open
    assert (
        only_reason(evaluate(valid() | {gate.APPROVED_AT: just_past.isoformat()})).problem
        == "InFuture"
    )


def test_approval_older_than_ttl_is_refused_and_says_when_it_expired():
    old = NOW - TTL - timedelta(seconds=1)
    reason = only_reason(evaluate(valid() | {gate.APPROVED_AT: old.isoformat()}))
    assert reason.problem == "Expired"
    assert "168h" in reason.expected
    assert "expired at 2026-11-23T11:59:59Z" in reason.expected


def test_approval_exactly_ttl_old_is_still_valid():
    assert evaluate(valid() | {gate.APPROVED_AT: (NOW - TTL).isoformat()}).is_open


def test_approval_for_another_revision_is_refused_naming_both():
    reason = only_reason(evaluate(valid() | {gate.APPROVED_REVISION: "000000000000"}))
    assert reason.annotation == gate.APPROVED_REVISION
    assert reason.problem == "RevisionMismatch"
    assert reason.found == "000000000000"
    assert REV in reason.expected
    assert "000000000000" in reason.describe() and REV in reason.describe()


def test_an_approval_naming_the_short_prefix_is_refused_with_the_full_revision():
    full = "7f3a9c2e1b04" + "5d" * 26
    decision = evaluate(approval_annotations(full[:12], NOW - timedelta(hours=1)), revision=full)
    reason = only_reason(decision)
    assert (reason.annotation, reason.problem) == (gate.APPROVED_REVISION, "ShortRevision")
    assert full in reason.describe() and "64-hex" in reason.describe()
    assert not decision.is_open


def test_several_problems_are_all_reported():
    annotations = valid() | {gate.APPROVED_AT: "nope", gate.APPROVED_REVISION: "other"}
    del annotations[gate.RISK_ACCEPTANCE]
    decision = evaluate(annotations)
    assert {(r.annotation, r.problem) for r in decision.reasons} == {
        (gate.RISK_ACCEPTANCE, "Missing"),
        (gate.APPROVED_AT, "Malformed"),
        (gate.APPROVED_REVISION, "RevisionMismatch"),
    }


def test_values_are_trimmed_and_unrelated_annotations_ignored():
    annotations = {k: f"  {v} " for k, v in valid().items()} | {"other.io/x": "y"}
    decision = evaluate(annotations)
    assert decision.is_open
    assert decision.approval is not None and decision.approval.approved_by == "jane@example.com"


def test_a_very_long_found_value_is_shortened_in_messages():
    reason = only_reason(evaluate(valid() | {gate.APPROVED_REVISION: "x" * 5000}))
    assert len(reason.describe()) < 400


def test_naive_now_is_a_programming_error():
    with pytest.raises(ValueError, match="timezone-aware"):
        gate.evaluate_gate(valid(), REV, TTL, datetime(2026, 1, 1))


# ---- properties -------------------------------------------------------------------------

annotation_values = st.one_of(
    st.none(), st.text(max_size=40), st.sampled_from([REV, "RISK-1", "a@b"])
)


@given(
    drop=st.sets(st.sampled_from(gate.REQUIRED_ANNOTATIONS), min_size=1),
    extra=st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=5),
)
def test_never_open_when_any_required_annotation_is_absent(drop, extra):
    annotations = {k: v for k, v in (extra | valid()).items() if k not in drop}
    decision = evaluate(annotations)
    assert not decision.is_open
    assert {r.annotation for r in decision.reasons} >= drop


@given(revision=st.text(min_size=1, max_size=20).filter(lambda r: r.strip() != REV))
def test_never_open_for_a_revision_other_than_the_approved_one(revision):
    assert not evaluate(valid() | {gate.APPROVED_REVISION: revision}).is_open


@given(
    values=st.fixed_dictionaries({name: annotation_values for name in gate.REQUIRED_ANNOTATIONS}),
    age=st.timedeltas(min_value=timedelta(days=-30), max_value=timedelta(days=30)),
)
def test_open_only_when_every_rule_holds(values, age):
    annotations = {k: v for k, v in values.items() if v is not None}
    annotations[gate.APPROVED_AT] = (NOW - age).isoformat()
    decision = evaluate(annotations)
    every_rule_holds = (
        all(annotations.get(k, "").strip() for k in gate.REQUIRED_ANNOTATIONS)
        and annotations[gate.APPROVED_REVISION].strip() == REV
        and -gate.CLOCK_SKEW_ALLOWANCE <= age <= TTL
    )
    assert decision.is_open == every_rule_holds
    assert decision.is_open == (decision.reasons == ())
