"""AIRecord objects on the API server: created once under a deterministic name, listed for
`verify`, deleted after their expiresAt.

Records live in one records namespace (`aigate run --records-namespace`), not beside the
AIDeployment: deleting the application's namespace (or the AIDeployment) leaves them, and
the operator needs no write access to records in anyone's namespace
(docs/decisions/0012-durable-signed-records.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from aigate.adapters.kube import FIELD_MANAGER, RejectedError, TransientError, _translate
from aigate.adapters.signing import Signer
from aigate.api.records import RECORD_KIND, RECORD_PLURAL, AIRecordSpec
from aigate.api.v1alpha1 import GROUP, VERSION
from aigate.core import records
from aigate.core.gate import parse_rfc3339

log = logging.getLogger("aigate.records")

LABEL_SUBJECT_UID = "aigate.dev/subject-uid"
LABEL_SUBJECT_NAMESPACE = "aigate.dev/subject-namespace"


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
            },
        },
        "spec": spec.model_dump(mode="json", by_alias=True),
    }


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

    def list(self, uid: str | None = None) -> list[dict[str, Any]]:
        selector = f"{LABEL_SUBJECT_UID}={uid}" if uid else ""
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
        return [], ""
