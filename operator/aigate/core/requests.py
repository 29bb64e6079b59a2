"""Requests people make through annotations: promote, abort, retry (DESIGN.md section 3).

The annotation's value identifies the request. The operator acts on a value at most once,
ever: it remembers a digest of every value it handled (status.handledRequests, bounded), so
a value that comes back (a Git revert, a re-applied manifest) is not acted on again. It
never deletes the annotation, so GitOps tools that put it there do not fight the operator.

Values bind a request to what it is for:
- promote: `<stage>[@<revision>][ free text]`, e.g. `canary-50@7f3a9c2e1b04 looks good`.
  It counts only for the rollout in flight when it is first seen (or, with `@revision`, for
  that revision's rollout) and only at the stage it names; when that rollout ends unused,
  it is recorded as expired.
- abort: any value; `@<revision>` in it, if present, must name the revision in flight.
- retry: any value; it clears the spec's revision from the rolled-back list.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aigate.api.v1alpha1 import HandledRequest
from aigate.core.gate import PREFIX

Kind = Literal["promote", "abort", "retry"]
KINDS: tuple[Kind, ...] = ("promote", "abort", "retry")
MAX_HANDLED = 512
MIN_REVISION_PREFIX = 12


def annotation(kind: Kind) -> str:
    return PREFIX + kind


def value_digest(kind: Kind, value: str) -> str:
    return hashlib.sha256(f"{kind}={value}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Request:
    kind: Kind
    value: str
    by: str  # the field manager that last wrote the annotation, when it can be told

    @property
    def digest(self) -> str:
        return value_digest(self.kind, self.value)

    @property
    def stage(self) -> str:
        """The stage a promote names: the text before '@' or the first space."""
        return self.value.split(" ", 1)[0].split("@", 1)[0].strip()

    @property
    def revision(self) -> str:
        """The revision (or prefix) named after '@', or ''."""
        head = self.value.split(" ", 1)[0]
        return head.split("@", 1)[1].strip() if "@" in head else ""

    def names_revision(self, revision: str) -> bool:
        """True when the request names no revision or names this one (a prefix of at least
        MIN_REVISION_PREFIX characters counts)."""
        named = self.revision
        if not named:
            return True
        return len(named) >= min(MIN_REVISION_PREFIX, len(revision)) and revision.startswith(named)


def pending_requests(
    annotations: Mapping[str, str],
    handled_digests: Sequence[str],
    managed_fields: Sequence[Mapping[str, Any]],
) -> dict[Kind, Request]:
    """Requests whose value was never handled."""
    done = set(handled_digests)
    pending: dict[Kind, Request] = {}
    for kind in KINDS:
        value = (annotations.get(annotation(kind)) or "").strip()
        if value and value_digest(kind, value) not in done:
            pending[kind] = Request(kind, value, writer_of(annotation(kind), managed_fields))
    return pending


def remember(handled_digests: Sequence[str], request: Request) -> list[str]:
    """The bounded digest list with this request added (oldest forgotten first)."""
    kept = [d for d in handled_digests if d != request.digest]
    return [*kept, request.digest][-MAX_HANDLED:]


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
