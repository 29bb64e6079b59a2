"""AIRecord objects on the API server: created once under a deterministic name, listed for
`verify`, deleted after their expiresAt.

Records live in one records namespace (`aigate run --records-namespace`), not beside the
AIDeployment: deleting the application's namespace (or the AIDeployment) leaves them, and
the operator needs no write access to records in anyone's namespace
(docs/decisions/0012-durable-signed-records.md).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from aigate.adapters import signing
from aigate.adapters.kube import FIELD_MANAGER, RejectedError, TransientError, _translate
from aigate.adapters.signing import Signer
from aigate.api.records import RECORD_KIND, RECORD_PLURAL, AIRecordSpec, ApprovalRecorded
from aigate.api.v1alpha1 import GROUP, VERSION
from aigate.core import records
from aigate.core.gate import parse_rfc3339
from aigate.core.revision import short

log = logging.getLogger("aigate.records")

LABEL_SUBJECT_UID = "aigate.dev/subject-uid"
LABEL_SUBJECT_NAMESPACE = "aigate.dev/subject-namespace"
LABEL_REASON = "aigate.dev/record-reason"
LABEL_REVISION = "aigate.dev/revision"  # its 12-character prefix, to find approval records
# Records saying a revision passed its analysis (or was the first version) and served.
SERVED_REASONS = ("FirstVersion", "AllStagesPassed", "Promoted")


def manifest(spec: AIRecordSpec, namespace: str) -> dict[str, Any]:
    subject = spec.subject
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": RECORD_KIND,
        "metadata": {
            "name": records.record_name(subject.name, subject.uid, spec.sequence),
            "namespace": namespace,
            "labels": {
                LABEL_SUBJECT_UID: subject.uid,
                LABEL_SUBJECT_NAMESPACE: subject.namespace,
                **_finding_labels(spec),
            },
        },
        "spec": spec.model_dump(mode="json", by_alias=True),
    }


def _finding_labels(spec: AIRecordSpec) -> dict[str, str]:
    """Labels to find approval records by (a lookup aid only: what vouches is the signed
    spec, checked in full)."""
    labels = {LABEL_REVISION: short(spec.revision)} if spec.revision else {}
    if LABEL_VALUE.match(spec.reason):
        labels[LABEL_REASON] = spec.reason
    return labels


LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")


class RecordConflictError(RejectedError):
    """A record's name is taken by an object with other content: never overwritten."""


class RecordStore:
    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace = namespace

    def create(self, spec: AIRecordSpec) -> None:
        """Creates the record; a 409 with identical content means already delivered."""
        body = manifest(spec, self.namespace)
        name = body["metadata"]["name"]
        try:
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, RECORD_PLURAL, body, field_manager=FIELD_MANAGER
            )
            return
        except ApiException as error:
            if error.status != 409:
                raise _translate(error, f"create AIRecord {self.namespace}/{name}") from error
        existing = self.get(name)
        if existing is None or existing.get("spec") != body["spec"]:
            raise RecordConflictError(
                f"AIRecord {self.namespace}/{name} exists with other content than sequence "
                f"{spec.sequence} of {spec.subject.namespace}/{spec.subject.name}: not overwritten"
            )

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, RECORD_PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise _translate(error, f"get AIRecord {self.namespace}/{name}") from error

    def list(self, uid: str | None = None, **labels: str) -> list[dict[str, Any]]:
        selectors = [f"{LABEL_SUBJECT_UID}={uid}"] if uid else []
        selectors += [f"{key}={value}" for key, value in labels.items()]
        selector = ",".join(selectors)
        items: list[dict[str, Any]] = []
        token = None
        while True:
            try:
                page = self.custom.list_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.namespace,
                    RECORD_PLURAL,
                    label_selector=selector,
                    limit=500,
                    _continue=token,
                )
            except ApiException as error:
                raise _translate(error, f"list AIRecords in {self.namespace}") from error
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    def delete_expired(self, now: datetime) -> int:
        """Deletes every record whose spec.expiresAt has passed; returns how many."""
        deleted = 0
        for item in self.list():
            expires = parse_rfc3339(str((item.get("spec") or {}).get("expiresAt", "")))
            if expires is None or expires > now:
                continue
            name = item["metadata"]["name"]
            try:
                self.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, RECORD_PLURAL, name
                )
            except ApiException as error:
                if error.status != 404:
                    raise _translate(error, f"delete AIRecord {self.namespace}/{name}") from error
            deleted += 1
            log.info(
                "expired record deleted",
                extra={"record": name, "expiresAt": item["spec"].get("expiresAt")},
            )
        return deleted


@dataclass
class Recorder:
    """What the reconciler needs to write records: the store, the key and the retention."""

    store: RecordStore
    signer: Signer
    retention: timedelta
    # (uid, revision) pairs already vouched for: records are immutable, so it stays true
    _vouched: set[tuple[str, str, str]] = field(default_factory=set)

    def sign_outbox(self, outbox: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The outbox with every record not yet signed signed (before its status write)."""
        signed = []
        for raw in outbox:
            spec = AIRecordSpec.model_validate(raw)
            done = spec.signature.key_id
            signed.append(
                raw if done else self.signer.sign(spec).model_dump(mode="json", by_alias=True)
            )
        return signed

    def vouched(self, uid: str, revision: str, served: bool = False) -> str:
        """Why AIRecords signed by this operator do not vouch that `revision` was approved
        for the AIDeployment `uid` (and, with `served`, that it passed its analysis and was
        promoted: FirstVersion, AllStagesPassed or Promoted) — "" when they do. A template
        is applied only on that evidence, never on the strength of status alone: a status
        snapshot (a rollback target, a recreated stable) can be written by whoever gets past
        the status policy; a record needs the operator's key."""
        needed = [(ApprovalRecorded,), SERVED_REASONS] if served else [(ApprovalRecorded,)]
        for reasons in needed:
            if any((uid, revision, reason) in self._vouched for reason in reasons):
                continue
            problem = self._find(uid, revision, reasons)
            if problem:
                return problem
        return ""

    def _find(self, uid: str, revision: str, reasons: tuple[str, ...]) -> str:
        found = self.store.list(uid, **{LABEL_REVISION: short(revision)})
        problems = []
        for item in found:
            try:
                spec = AIRecordSpec.model_validate(item.get("spec") or {})
            except ValueError:
                continue
            if spec.reason not in reasons:
                continue
            problem = records.vouches_for(spec, uid, revision, spec.reason) or self._unsigned(spec)
            if not problem:
                self._vouched.add((uid, revision, spec.reason))
                return ""
            problems.append(problem)
        return (
            f"no {' / '.join(reasons)} record signed by the operator vouches for revision "
            f"{revision} (AIRecords in {self.store.namespace}: "
            f"{'; '.join(problems[:3]) or 'none found'}): a template is applied only when "
            f"signed records say it was approved"
            f"{', and for the stable track that it passed its analysis' if len(reasons) > 1 else ''}"
        )

    def _unsigned(self, spec: AIRecordSpec) -> str:
        """Why the record is not this operator's, unaltered ("" when it is)."""
        if records.record_digest(spec) != spec.digest:
            return f"record {spec.sequence} was altered after it was signed"
        own = {self.signer.key_id: self.signer.private.public_key()}
        problem = signing.signature_checker(own)(spec)
        return f"record {spec.sequence}: signature {problem}" if problem else ""

    def deliver(self, outbox: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
        """Creates the outbox's records in order; returns those not created and why (the
        first failure stops delivery, so records always appear in sequence)."""
        for index, raw in enumerate(outbox):
            try:
                spec = AIRecordSpec.model_validate(raw)
                if not spec.signature.key_id:
                    spec = self.signer.sign(spec)
                self.store.create(spec)
            except (RejectedError, TransientError, ValueError) as error:
                return list(outbox[index:]), str(error)[:512]
            self._learn(spec)
        return [], ""

    def _learn(self, spec: AIRecordSpec) -> None:
        """A record this operator just signed and created vouches as one listed later
        would (the same checks), so applying its revision needs no read of the records."""
        if spec.reason not in (ApprovalRecorded, *SERVED_REASONS) or not spec.revision:
            return
        uid = spec.subject.uid
        if not records.vouches_for(spec, uid, spec.revision, spec.reason):
            self._vouched.add((uid, spec.revision, spec.reason))
