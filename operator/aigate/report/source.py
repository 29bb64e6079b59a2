"""Where records come from: an export in kubectl's list shape, or a list call's items.

`kubectl get airecords -o json` and `aigate report --from records.json` share the shape
{"apiVersion": "v1", "kind": "List", "items": [AIRecord objects]} (other top-level fields,
such as the operator's public keys, are tolerated). A record that cannot be read is not
dropped silently: it becomes a verification problem in the report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from aigate.api.records import GENESIS_DIGEST, RECORD_KIND, AIRecordSpec
from aigate.core.records import ChainCheck

LINKS_CHECKED = (
    "sequence numbers (from 1, no gaps) and each record naming the digest of the one before; "
    "record digests and the operator's signatures are checked by `kubectl aigate verify`"
)


@dataclass(frozen=True)
class Loaded:
    records: list[AIRecordSpec]
    problems: list[str]


def read_items(items: Iterable[Mapping[str, Any]], name: str = "", namespace: str = "") -> Loaded:
    """AIRecord objects -> specs of the subject `name` (in `namespace`, when given)."""
    records: list[AIRecordSpec] = []
    problems: list[str] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping) or item.get("kind", RECORD_KIND) != RECORD_KIND:
            continue
        meta = item.get("metadata") or {}
        spec = item.get("spec") or {}
        subject = spec.get("subject") or {} if isinstance(spec, Mapping) else {}
        if name and subject.get("name") != name:
            continue
        if namespace and subject.get("namespace") != namespace:
            continue
        try:
            records.append(AIRecordSpec.model_validate(spec))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            problems.append(
                f"item {index} ({meta.get('name', '?')}) cannot be read: spec.{where}: {first['msg']}"
            )
    return Loaded(records, problems)


def subjects(items: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(namespace, name) of every subject in an export, in first-seen order."""
    found = {}
    for item in items:
        subject = ((item or {}).get("spec") or {}).get("subject") or {}
        if subject.get("name"):
            found[(subject.get("namespace", ""), subject["name"])] = None
    return list(found)


def check_links(records: Sequence[AIRecordSpec], problems: Sequence[str] = ()) -> ChainCheck:
    """Per subject UID: sequences 1..N without a gap or a repeat, and each record's
    previousDigest equal to the digest of the record before (the first: 64 zeros)."""
    found = list(problems)
    by_uid: dict[str, list[AIRecordSpec]] = {}
    for record in records:
        by_uid.setdefault(record.subject.uid, []).append(record)
    for uid, chain in by_uid.items():
        chain.sort(key=lambda r: r.sequence)
        previous, expected = GENESIS_DIGEST, 1
        for record in chain:
            if record.sequence < expected:
                found.append(f"subject {uid}: record sequence {record.sequence} is repeated")
                continue
            if record.sequence > expected:
                last = record.sequence - 1
                gap = f"{expected}" if last == expected else f"{expected} to {last}"
                found.append(f"subject {uid}: record sequence {gap} missing")
            elif record.previous_digest != previous:
                found.append(
                    f"subject {uid}: record {record.sequence} ({record.time} {record.reason}) does "
                    f"not name the digest of record {record.sequence - 1}"
                )
            previous, expected = record.digest, record.sequence + 1
    return ChainCheck(intact=not found, problems=tuple(found))
