"""Durable audit records (AIRecord, aigate.api.records): sealing and checking the chain.

Pure: no crypto and no I/O. A record's digest is the SHA-256 of its canonical content
(every field but `digest` and `signature`, camelCase keys, sorted, compact JSON); the
operator signs the digest (adapters/signing.py) and checkers pass the signature check in.
Per AIDeployment UID the records form one chain: sequence 1, 2, 3... without gaps, each
naming the digest of the one before (sequence 1: 64 zeros). While the AIDeployment exists
its status names the last sequence; after it is deleted the chain ends with
DeploymentDeleted. So a removed record (start, middle or end), an altered one, a copy under
another name or sequence and a replayed request are each told apart below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from aigate.api.records import (
    GENESIS_DIGEST,
    AIRecordSpec,
    ApprovalRecorded,
    DeploymentDeleted,
    RecordSignature,
    RequestHandled,
)
from aigate.core.revision import canonical_digest

GENESIS = GENESIS_DIGEST
SIGNED_PREFIX = "aigate.dev/record/v1\n"
UNSIGNED = RecordSignature(key_id="", value="")
NAME_PREFIX_LENGTH = 40
_NOT_CONTENT = {"digest", "signature"}


def record_digest(record: AIRecordSpec) -> str:
    return canonical_digest(record.model_dump(mode="json", by_alias=True, exclude=_NOT_CONTENT))


def signed_message(digest: str) -> bytes:
    """What the operator's Ed25519 key signs: the digest's hex text behind a fixed prefix,
    so the signature can never be taken for one over anything else."""
    return (SIGNED_PREFIX + digest).encode()


def record_name(name: str, uid: str, sequence: int) -> str:
    """The object name of a record: deterministic, so a repeated create is a 409, never a
    second record; the UID part tells apart resources that had the same name."""
    prefix = name[:NAME_PREFIX_LENGTH].rstrip("-.")
    return f"{prefix}-{uid[:8]}-{sequence:08d}"


@dataclass(frozen=True)
class ChainHead:
    sequence: int = 0
    digest: str = GENESIS


def seal(record: AIRecordSpec, head: ChainHead) -> AIRecordSpec:
    """The record as the next one after `head`, with its digest (signed later)."""
    placed = record.model_copy(
        update={
            "sequence": head.sequence + 1,
            "previous_digest": head.digest or GENESIS,
            "signature": UNSIGNED,
        }
    )
    return placed.model_copy(update={"digest": record_digest(placed)})


# ---- checking -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainCheck:
    intact: bool
    problems: tuple[str, ...]


@dataclass(frozen=True)
class StoredRecord:
    """A record as found: its object name and its spec."""

    name: str
    spec: AIRecordSpec


# Returns "" when the record's signature verifies, else what is wrong with it.
SignatureCheck = Callable[[AIRecordSpec], str]


@dataclass(frozen=True)
class End:
    """What is known of where the chain ends: `last_sequence` from the AIDeployment's
    status while it exists (None: unknown, e.g. deleted, or exported without it)."""

    last_sequence: int | None = None


def _label(stored: StoredRecord) -> str:
    return f"sequence {stored.spec.sequence} ({stored.spec.reason}, object {stored.name})"


def check_record(stored: StoredRecord, uid: str, check_signature: SignatureCheck) -> list[str]:
    """What is wrong with one record on its own."""
    spec, label, problems = stored.spec, _label(stored), []
    if spec.subject.uid != uid:
        problems.append(f"{label}: subject.uid is {spec.subject.uid}, not {uid}")
    expected = record_name(spec.subject.name, spec.subject.uid, spec.sequence)
    if stored.name != expected:
        problems.append(
            f"{label}: object name should be {expected}: a copy of a record under another name"
        )
    actual = record_digest(spec)
    if actual != spec.digest:
        problems.append(
            f"{label}: altered after it was recorded: field digest says {spec.digest}, its "
            f"content hashes to {actual}"
        )
    signature_problem = check_signature(spec)
    if signature_problem:
        problems.append(f"{label}: field signature: {signature_problem}")
    return problems


def _by_sequence(records: Sequence[StoredRecord]) -> tuple[dict[int, StoredRecord], list[str]]:
    kept: dict[int, StoredRecord] = {}
    problems: list[str] = []
    for stored in sorted(records, key=lambda r: (r.spec.sequence, r.name)):
        first = kept.get(stored.spec.sequence)
        if first is None:
            kept[stored.spec.sequence] = stored
        elif first.spec.digest == stored.spec.digest:
            problems.append(
                f"sequence {stored.spec.sequence}: recorded twice (objects {first.name} and "
                f"{stored.name}): a replayed copy"
            )
        else:
            problems.append(
                f"sequence {stored.spec.sequence}: two different records claim it (objects "
                f"{first.name} and {stored.name})"
            )
    return kept, problems


def _missing(numbers: list[int], where: str) -> str:
    span = f"{numbers[0]}" if len(numbers) == 1 else f"{numbers[0]}..{numbers[-1]}"
    return f"sequence {span} missing ({where}): removed"


def _links_and_gaps(kept: dict[int, StoredRecord]) -> list[str]:
    problems: list[str] = []
    sequences = sorted(kept)
    if sequences and sequences[0] != 1:
        problems.append(_missing(list(range(1, sequences[0])), "at the start"))
    for before, after in pairwise(sequences):
        if after != before + 1:
            problems.append(_missing(list(range(before + 1, after)), "in the middle"))
        elif kept[after].spec.previous_digest != kept[before].spec.digest:
            problems.append(
                f"{_label(kept[after])}: field previousDigest {kept[after].spec.previous_digest} "
                f"is not the digest of sequence {before} ({kept[before].spec.digest})"
            )
    if 1 in kept and kept[1].spec.previous_digest != GENESIS:
        problems.append(f"{_label(kept[1])}: field previousDigest should be 64 zeros")
    return problems


def _end(kept: dict[int, StoredRecord], end: End) -> list[str]:
    last = max(kept) if kept else 0
    if end.last_sequence is not None:
        if last < end.last_sequence:
            gap = list(range(last + 1, end.last_sequence + 1))
            return [_missing(gap, f"at the end: status says the last is {end.last_sequence}")]
        if last > end.last_sequence:
            return [f"sequence {last}: beyond the last sequence in status ({end.last_sequence})"]
        return []
    if not kept:
        return ["no records found"]
    if kept[last].spec.reason != DeploymentDeleted:
        return [
            f"the end cannot be proven: the last record found is {_label(kept[last])}, not "
            f"{DeploymentDeleted}, and no AIDeployment status names the last sequence "
            f"(records after it may have been removed)"
        ]
    return []


def _replayed_requests(kept: dict[int, StoredRecord]) -> list[str]:
    """The operator acts on a request value once, ever: a second record of one is a replay."""
    seen: dict[tuple[str, str], int] = {}
    problems = []
    for sequence in sorted(kept):
        spec = kept[sequence].spec
        if spec.reason != RequestHandled or spec.request is None:
            continue
        key = (spec.request.kind, spec.request.value)
        if key in seen:
            problems.append(
                f"sequence {sequence}: request aigate.dev/{key[0]}={key[1]!r} was already "
                f"recorded at sequence {seen[key]}: a replayed request"
            )
        seen.setdefault(key, sequence)
    return problems


def vouches_for(
    record: AIRecordSpec, uid: str, revision: str, reason: str = ApprovalRecorded
) -> str:
    """Why `record` does not vouch for `revision` of the AIDeployment `uid` ("" when it
    does): a record of that subject with that reason (ApprovalRecorded: was approved;
    Promoted: served) naming that revision; an approval's content must still hash to it.
    Its signature is checked by the caller (crypto stays out of core)."""
    if record.subject.uid != uid:
        return f"record {record.sequence} is about uid {record.subject.uid}, not {uid}"
    if record.reason != reason:
        return f"record {record.sequence} is {record.reason}, not {reason}"
    if record.revision != revision:
        return f"record {record.sequence} names revision {record.revision}, not {revision}"
    if reason == ApprovalRecorded and canonical_digest(record.content or {}) != revision:
        return f"record {record.sequence}'s approved content does not hash to {revision}"
    return ""


def check_chain(
    records: Sequence[StoredRecord],
    uid: str,
    check_signature: SignatureCheck,
    end: End = End(),
) -> ChainCheck:
    """Every problem of the chain of AIDeployment `uid`, each naming the sequence and field."""
    problems: list[str] = []
    for stored in sorted(records, key=lambda r: (r.spec.sequence, r.name)):
        problems.extend(check_record(stored, uid, check_signature))
    kept, duplicates = _by_sequence(records)
    problems.extend(duplicates)
    problems.extend(_links_and_gaps(kept))
    problems.extend(_end(kept, end))
    problems.extend(_replayed_requests(kept))
    return ChainCheck(intact=not problems, problems=tuple(problems))
