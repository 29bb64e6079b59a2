"""Reading AIRecords for `verify` (and `report`), from the cluster or from an export.

An export (`kubectl aigate records NAME -o json`) is a `kind: List` holding the AIRecord
objects of one AIDeployment and the ConfigMap of the operator's public keys, so it can be
checked offline years later; `--public-key` pins the key instead of trusting the export's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from aigate.adapters import signing
from aigate.api.records import RECORD_KIND, AIRecordSpec
from aigate.core import records
from aigate.core.records import ChainCheck, End, StoredRecord


@dataclass(frozen=True)
class Verification:
    check: ChainCheck
    uid: str
    count: int
    head: str  # digest of the highest sequence found


def records_of(items: Sequence[Mapping[str, Any]]) -> tuple[list[StoredRecord], list[str]]:
    """The AIRecords among `items`, and a problem for each one that is not a valid record."""
    found: list[StoredRecord] = []
    problems: list[str] = []
    for item in items:
        if item.get("kind") != RECORD_KIND:
            continue
        name = str((item.get("metadata") or {}).get("name", "?"))
        try:
            found.append(StoredRecord(name, AIRecordSpec.model_validate(item.get("spec") or {})))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            problems.append(f"object {name}: spec.{where}: {first['msg']}")
    return found, problems


def keys_of(items: Sequence[Mapping[str, Any]]) -> dict[str, Ed25519PublicKey]:
    """The public keys from the export's ConfigMap (aigate-record-keys)."""
    for item in items:
        if (
            item.get("kind") == "ConfigMap"
            and (item.get("metadata") or {}).get("name") == signing.PUBLIC_KEYS_CONFIGMAP
        ):
            return signing.public_keys_from(item.get("data"))
    return {}


def verify(
    items: Sequence[Mapping[str, Any]],
    uid: str,
    public_keys: Mapping[str, Ed25519PublicKey],
    end: End,
) -> Verification:
    found, unreadable = records_of(items)
    found = [r for r in found if r.spec.subject.uid == uid] if uid else found
    check = records.check_chain(found, uid, signing.signature_checker(public_keys), end)
    if unreadable:
        check = ChainCheck(False, (*unreadable, *check.problems))
    head = max(found, key=lambda r: r.spec.sequence).spec.digest if found else records.GENESIS
    return Verification(check=check, uid=uid, count=len(found), head=head)


FULLY_CHECKED = (
    "every record's digest and the operator's Ed25519 signature, the chain (each record "
    "naming the digest of the one before), sequence numbers from 1 without a gap or a "
    "repeat, and the chain's end"
)


def for_report(
    items: Sequence[Mapping[str, Any]], name: str, namespace: str, end: End
) -> tuple[ChainCheck, str] | None:
    """The full verification of the records of `namespace/name` for a report, or None
    when `items` carry no public key to check signatures with."""
    keys = keys_of(items)
    found, _ = records_of(items)
    uids = {
        r.spec.subject.uid
        for r in found
        if r.spec.subject.name == name and (not namespace or r.spec.subject.namespace == namespace)
    }
    if not keys or len(uids) != 1:
        return None
    return verify(items, uids.pop(), keys, end).check, FULLY_CHECKED


def the_uid(items: Sequence[Mapping[str, Any]]) -> str:
    """The one subject UID of an export's records ("" when none or several)."""
    found, _ = records_of(items)
    uids = {r.spec.subject.uid for r in found}
    return uids.pop() if len(uids) == 1 else ""


def render(result: Verification, what: str) -> str:
    if result.check.intact:
        return (
            f"{what}: records intact: {result.count} record(s) of uid {result.uid}, every "
            f"signature verified, no sequence missing, chain head {result.head}"
        )
    lines = "\n  ".join(result.check.problems)
    return f"{what}: records NOT intact ({result.count} found, uid {result.uid}):\n  {lines}"
