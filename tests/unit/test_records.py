"""The AIRecord chain (core/records.py): sealed by a real rollout, signed with a real
Ed25519 key, and every kind of tampering check_chain reports, each as a row of a table."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest

from aigate.adapters import signing
from aigate.api.records import AIRecordSpec, RecordedRequest, RecordSubject
from aigate.core import records, rollout
from aigate.core.records import End, StoredRecord, check_chain
from aigate.core.rollout.ledger import MEASUREMENT_BATCH_BYTES
from support.sim import serving, upgrade

SIGNER = signing.generate()
CHECK = signing.signature_checker({SIGNER.key_id: SIGNER.private.public_key()})
UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


def rolled_out() -> list[AIRecordSpec]:
    world = serving()
    v2 = upgrade(world)
    world.run_until(
        lambda w: w.status.phase == "Stable" and w.stable.revision == v2,
        advance=timedelta(seconds=10),
    )
    return world.delivered


def stored(specs: list[AIRecordSpec]) -> list[StoredRecord]:
    return [
        StoredRecord(records.record_name(s.subject.name, s.subject.uid, s.sequence), SIGNER.sign(s))
        for s in specs
    ]


def chain() -> list[StoredRecord]:
    return stored(rolled_out())


def test_a_rollout_seals_an_intact_signed_chain():
    found = chain()
    assert len(found) > 8
    assert found[0].spec.previous_digest == records.GENESIS
    assert [r.spec.sequence for r in found] == list(range(1, len(found) + 1))
    check = check_chain(found, UID, CHECK, End(last_sequence=len(found)))
    assert check.intact, check.problems
    reasons = {r.spec.reason for r in found}
    assert {"ApprovalRecorded", "MeasurementsRecorded", "StagePassed"} <= reasons
    approval = next(r.spec for r in found if r.spec.reason == "ApprovalRecorded")
    assert approval.approval is not None and approval.approval.approved_by
    assert approval.content is not None and "model" in approval.content


def test_the_record_name_is_deterministic_and_a_valid_object_name():
    name = records.record_name("a" * 39 + "-" + "b" * 200, UID, 7)
    assert name == "a" * 39 + "-0f1e2d3c-00000007" and len(name) <= 253


def _alter_message(rs: list[StoredRecord]) -> None:
    rs[3] = StoredRecord(rs[3].name, rs[3].spec.model_copy(update={"message": "nothing here"}))


def _alter_evidence(rs: list[StoredRecord]) -> None:
    i = next(i for i, r in enumerate(rs) if r.spec.evidence)
    evidence = [e.model_copy(update={"value": "0.0001"}) for e in rs[i].spec.evidence]
    rs[i] = StoredRecord(rs[i].name, rs[i].spec.model_copy(update={"evidence": evidence}))


def _forge_and_rehash(rs: list[StoredRecord]) -> None:
    """Content changed and the digest recomputed: only the signature can tell."""
    spec = rs[3].spec.model_copy(update={"message": "forged"})
    rs[3] = StoredRecord(
        rs[3].name, spec.model_copy(update={"digest": records.record_digest(spec)})
    )


def _sign_with_another_key(rs: list[StoredRecord]) -> None:
    rs[2] = StoredRecord(rs[2].name, signing.generate().sign(rs[2].spec))


def _bad_signature_value(rs: list[StoredRecord]) -> None:
    signature = rs[2].spec.signature.model_copy(update={"value": "AAAA" * 22})
    rs[2] = StoredRecord(rs[2].name, rs[2].spec.model_copy(update={"signature": signature}))


def _copy_under_another_name(rs: list[StoredRecord]) -> None:
    rs.append(StoredRecord("fraud-scorer-copy", rs[4].spec))


def _remove(index: int) -> Callable[[list[StoredRecord]], None]:
    return lambda rs: rs.pop(index)


CASES = [
    ("altered message", _alter_message, ["sequence 4", "altered", "field digest"]),
    ("altered evidence", _alter_evidence, ["altered after it was recorded"]),
    (
        "forged and rehashed",
        _forge_and_rehash,
        ["sequence 4", "field signature", "does not verify"],
    ),
    ("signed by another key", _sign_with_another_key, ["sequence 3", "not a published"]),
    ("bad signature", _bad_signature_value, ["sequence 3", "does not verify"]),
    ("removed at the start", _remove(0), ["sequence 1 missing (at the start)"]),
    ("removed in the middle", _remove(4), ["sequence 5 missing (in the middle)"]),
    ("copy under another name", _copy_under_another_name, ["object name should be", "twice"]),
]


@pytest.mark.parametrize(("what", "tamper", "expected"), CASES, ids=[c[0] for c in CASES])
def test_check_chain_reports_each_problem_exactly(what, tamper, expected):
    found = chain()
    last = len(found)
    tamper(found)
    check = check_chain(found, UID, CHECK, End(last_sequence=last))
    assert not check.intact, what
    text = "\n".join(check.problems)
    for part in expected:
        assert part in text, (what, check.problems)


def test_a_removed_last_record_is_caught_by_the_status_summary():
    found = chain()
    check = check_chain(found[:-1], UID, CHECK, End(last_sequence=len(found)))
    assert check.problems == (
        f"sequence {len(found)} missing (at the end: status says the last is {len(found)}): removed",
    )


def test_without_status_the_end_must_be_the_deletion_record():
    found = chain()
    check = check_chain(found, UID, CHECK)
    assert not check.intact and "the end cannot be proven" in check.problems[0]
    last = found[-1].spec
    closing = records.seal(
        last.model_copy(update={"reason": "DeploymentDeleted", "evidence": []}),
        records.ChainHead(last.sequence, last.digest),
    )
    found = [*found, *stored([closing])]
    assert check_chain(found, UID, CHECK).intact


def test_a_replayed_request_is_caught_even_when_resealed_by_the_key_holder():
    """A request value the operator handled once, ever, appearing twice in the chain."""
    found = chain()
    last = found[-1].spec
    request = RecordedRequest(kind="promote", value="canary-50@abc by=jane t", by="jane")
    first = records.seal(
        last.model_copy(update={"reason": "RequestHandled", "request": request}),
        records.ChainHead(last.sequence, last.digest),
    )
    replay = records.seal(first, records.ChainHead(first.sequence, first.digest))
    found = [*found, *stored([first, replay])]
    check = check_chain(found, UID, CHECK, End(last_sequence=replay.sequence))
    assert check.problems == (
        f"sequence {replay.sequence}: request aigate.dev/promote='canary-50@abc by=jane t' was "
        f"already recorded at sequence {first.sequence}: a replayed request",
    )


def test_a_record_of_another_deployment_is_reported():
    found = chain()
    subject = RecordSubject(namespace="x", name="fraud-scorer", uid="other-uid")
    found[1] = StoredRecord(found[1].name, found[1].spec.model_copy(update={"subject": subject}))
    problems = "\n".join(check_chain(found, UID, CHECK, End(len(found))).problems)
    assert "subject.uid is other-uid" in problems


def test_measurements_are_batched_and_no_record_nears_the_object_limit():
    found = chain()
    batches = [r.spec for r in found if r.spec.reason == "MeasurementsRecorded"]
    assert batches and all(b.evidence for b in batches)
    largest = max(len(json.dumps(r.spec.model_dump(mode="json", by_alias=True))) for r in found)
    assert largest < 2 * MEASUREMENT_BATCH_BYTES


def test_decisions_report_the_records_they_seal():
    world = serving()
    upgrade(world)
    decision = world.step()
    assert decision.new_records
    sequences = [r.sequence for r in decision.new_records]
    assert sequences == sorted(sequences)
    assert world.status.records.last_sequence == sequences[-1]
    assert isinstance(decision, rollout.Decision)


def test_only_an_approval_record_of_the_subject_with_matching_content_vouches():
    approval = next(r for r in rolled_out() if r.reason == "ApprovalRecorded")
    uid, revision = approval.subject.uid, approval.revision
    assert records.vouches_for(approval, uid, revision) == ""
    other_content = {**(approval.content or {}), "service": {"port": 1}}
    cases = {
        "about uid": (approval, "another-uid", revision),
        "not ApprovalRecorded": (approval.model_copy(update={"reason": "Promoted"}), uid, revision),
        "names revision": (approval, uid, "f" * 64),
        "does not hash": (approval.model_copy(update={"content": other_content}), uid, revision),
    }
    for expected, (record, for_uid, for_revision) in cases.items():
        assert expected in records.vouches_for(record, for_uid, for_revision)
