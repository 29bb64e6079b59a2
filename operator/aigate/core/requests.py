"""Requests people make through annotations: promote, abort, retry (DESIGN.md section 3).

The annotation's value identifies the request (a stage name, a timestamp, a ticket). The
operator acts once per new value and remembers the value in status.requests; it never
deletes the annotation, so GitOps tools that put it there do not fight the operator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aigate.api.v1alpha1 import HandledRequest, Requests
from aigate.core.gate import PREFIX

Kind = Literal["promote", "abort", "retry"]
KINDS: tuple[Kind, ...] = ("promote", "abort", "retry")


def annotation(kind: Kind) -> str:
    return PREFIX + kind


@dataclass(frozen=True)
class Request:
    kind: Kind
    value: str
    by: str  # the field manager that last wrote the annotation, when it can be told


def pending_requests(
    annotations: Mapping[str, str], handled: Requests, managed_fields: Sequence[Mapping[str, Any]]
) -> dict[Kind, Request]:
    """Requests whose value differs from the one last acted on."""
    pending: dict[Kind, Request] = {}
    for kind in KINDS:
        value = (annotations.get(annotation(kind)) or "").strip()
        done: HandledRequest | None = getattr(handled, kind)
        if value and (done is None or done.value != value):
            pending[kind] = Request(kind, value, writer_of(annotation(kind), managed_fields))
    return pending


def handled(request: Request, at_iso: str, outcome: str) -> HandledRequest:
    return HandledRequest(value=request.value, handled_at=at_iso, by=request.by, outcome=outcome)


def writer_of(key: str, managed_fields: Sequence[Mapping[str, Any]]) -> str:
    """The field manager (e.g. kubectl-annotate, argocd-controller) that owns an annotation.

    managedFields name the client, not the user: the user is known to admission control,
    which is where approver identity is enforced (DESIGN.md section 3)."""
    field_key = f"f:{key}"
    latest = ""
    latest_time = ""
    for entry in managed_fields or ():
        annotations = ((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get(
            "f:annotations"
        ) or {}
        if field_key in annotations:
            when = str(entry.get("time") or "")
            if when >= latest_time:
                latest, latest_time = str(entry.get("manager") or ""), when
    return latest
