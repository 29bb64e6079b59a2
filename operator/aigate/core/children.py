"""Which children are aigate's, and whether they still hold what aigate wrote (pure).

DESIGN.md: "what runs is what was approved": every child's content is digested as the API
server stored it after aigate's last write (status.children), so any later change, by
`kubectl set image`, `kubectl edit` or a controller nobody asked for, shows as a different
digest and is reverted. A child is aigate's only if its UID is the one aigate recorded when
it created it: an ownerReference is just a field anyone with edit rights can write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aigate.api.v1alpha1 import ChildRecord, ChildRecords
from aigate.core.revision import canonical_digest

Child = Literal["stable", "canary", "service"]
CHILDREN: tuple[Child, ...] = ("stable", "canary", "service")
OWN_MANAGER = "aigate"
MAX_FIELDS_SHOWN = 5


@dataclass(frozen=True)
class LiveChild:
    """One object with a child's name, as the API server returned it."""

    child: Child
    kind: str
    name: str
    uid: str
    controller_uid: str  # the uid of its controller ownerReference, "" when none
    revision: str  # aigate.dev/revision annotation
    digest: str  # content_digest of the object
    changed_fields: tuple[str, ...] = ()  # fields other clients wrote (from managedFields)
    deleting: bool = False  # metadata.deletionTimestamp is set


@dataclass(frozen=True)
class Drift:
    """A child of aigate's whose content is not what aigate last wrote."""

    child: Child
    digest: str
    what: str
    # False when aigate has no digest to compare with (its record of the write was lost
    # in a crash, or the status predates records): re-applied whole, not reported.
    recorded: bool = True


@dataclass(frozen=True)
class Claim:
    ours: bool
    drift: Drift | None = None
    conflict: str = ""


# Written by the controllers or by kubectl itself, never meaning anything for what runs.
BOOKKEEPING_ANNOTATIONS = frozenset(
    {"deployment.kubernetes.io/revision", "kubectl.kubernetes.io/last-applied-configuration"}
)


def content_digest(obj: Mapping[str, Any]) -> str:
    """SHA-256 over what decides what runs, where traffic goes and who owns it: the spec,
    the ownerReferences, the finalizers, and every label and annotation but the
    controllers' bookkeeping (deny by default: a label such as
    service.kubernetes.io/service-proxy-name changes routing)."""
    metadata = obj.get("metadata") or {}
    annotations = {
        k: v
        for k, v in (metadata.get("annotations") or {}).items()
        if k not in BOOKKEEPING_ANNOTATIONS
    }
    content = {
        "spec": obj.get("spec") or {},
        "ownerReferences": metadata.get("ownerReferences") or [],
        "finalizers": metadata.get("finalizers") or [],
        "labels": metadata.get("labels") or {},
        "annotations": annotations,
    }
    return canonical_digest(content)


def changed_fields(managed_fields: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """Spec fields that a client other than aigate owns (managedFields), with the client:
    `spec.template.spec.containers[name=server].image (kubectl-set)`. A hint only: a
    client can rewrite managedFields, the digest is what decides."""
    found: list[str] = []
    for entry in managed_fields or ():
        manager = str(entry.get("manager") or "")
        if manager == OWN_MANAGER or entry.get("subresource"):
            continue
        spec = ((entry.get("fieldsV1") or {}).get("f:spec")) or {}
        found.extend(f"{path} ({manager})" for path in _leaf_paths(spec, "spec"))
    return tuple(found)


def _leaf_paths(fields: Mapping[str, Any], prefix: str) -> list[str]:
    paths: list[str] = []
    for key, value in fields.items():
        if key == ".":
            continue
        step = _step(key)
        path = f"{prefix}{step}" if step.startswith("[") else f"{prefix}.{step}"
        children = value if isinstance(value, Mapping) else {}
        below = _leaf_paths(children, path) if any(k != "." for k in children) else []
        paths.extend(below or [path])
    return paths


def _step(key: str) -> str:
    """`f:image` → `image`; `k:{"name":"server"}` → `[name=server]`."""
    if key.startswith("f:"):
        return key[2:]
    if key.startswith("k:"):
        try:
            selector = json.loads(key[2:])
        except ValueError:
            return f"[{key[2:]}]"
        return "[" + ",".join(f"{k}={v}" for k, v in selector.items()) + "]"
    if key.startswith("v:"):
        return f"[{key[2:]}]"
    return key


def record_of(records: ChildRecords | None, child: Child) -> ChildRecord | None:
    return getattr(records, child) if records is not None else None


def claim(
    live: LiveChild,
    records: ChildRecords | None,
    owner_uid: str,
    known_revisions: frozenset[str],
) -> Claim:
    """Whether `live` is aigate's child, and if so whether it drifted.

    Ours: its UID is the recorded one. Also taken (and re-applied whole, since nothing says
    what aigate last wrote) when aigate's own ownerReference is on it and either the record
    says aigate was creating exactly this revision (a crash between the create and the
    record) or the status predates records and names this revision. The canary aigate
    itself deleted is waited for while it goes. Anything else is a conflict: aigate never
    touches it."""
    record = record_of(records, live.child)
    if record is not None and record.uid and record.uid == live.uid:
        if record.digest and record.digest == live.digest:
            return Claim(ours=True)
        return Claim(ours=True, drift=_drift(live, recorded=bool(record.digest)))
    if live.controller_uid == owner_uid and _was_creating(live, record, records, known_revisions):
        return Claim(ours=True, drift=_drift(live, recorded=False))
    if live.deleting and _own_canary_going(live, records, owner_uid):
        return Claim(ours=True)  # the canary aigate deleted (its record went with it)
    created = f"; aigate created uid {record.uid}" if record is not None and record.uid else ""
    return Claim(
        ours=False,
        conflict=f"{live.kind} {live.name} (uid {live.uid}) was not created by aigate{created}",
    )


def _was_creating(
    live: LiveChild,
    record: ChildRecord | None,
    records: ChildRecords | None,
    known_revisions: frozenset[str],
) -> bool:
    if record is not None and record.creating:
        return record.creating == (live.revision or live.child)
    legacy = records is None or (records.legacy and record is None)
    if not legacy or not known_revisions:
        return False
    # The Service carries no revision: in a status that names what it deployed, it is the
    # Service of those revisions.
    return live.child == "service" or live.revision in known_revisions


def _own_canary_going(live: LiveChild, records: ChildRecords | None, owner_uid: str) -> bool:
    """A canary being deleted with no record is the one aigate deleted (deleting clears its
    record): waited for until it is gone. Anything else being deleted is claimed like any
    object, so a deletion held by someone's finalizer hides no edit."""
    return (
        live.child == "canary"
        and records is not None
        and records.canary is None
        and live.controller_uid == owner_uid
    )


def _drift(live: LiveChild, *, recorded: bool) -> Drift:
    if not recorded:
        return Drift(live.child, live.digest, "no record of aigate's last write", recorded=False)
    fields = live.changed_fields
    if fields:
        shown = ", ".join(fields[:MAX_FIELDS_SHOWN])
        more = (
            f" and {len(fields) - MAX_FIELDS_SHOWN} more" if len(fields) > MAX_FIELDS_SHOWN else ""
        )
        what = f"changed: {shown}{more}"
    else:
        what = "its content differs from what aigate wrote (no other client named)"
    return Drift(live.child, live.digest, f"{what}; content digest {live.digest[:12]}")
