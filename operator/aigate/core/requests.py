"""Requests people make through annotations: promote, abort, retry (DESIGN.md section 3).

The annotation's value identifies the request. The operator acts on a value at most once,
ever: it remembers a digest of every value it handled (status.handledRequests, bounded), so
a value that comes back (a Git revert, a re-applied manifest) is not acted on again. It
never deletes the annotation, so GitOps tools that put it there do not fight the operator.

Values bind a request to the full revision it is for and to the requesting user (the
chart's policy checks that `by=` is the user admission saw; docs/decisions/0008):
- promote: `<stage>@<revision> by=<user>[ <text>]`: counts only for that revision's
  rollout and only at the stage it names; when that rollout ends unused, it is recorded
  as expired.
- retry: `@<revision> by=<user>[ <text>]`: clears that revision from the rolled-back list
  when it is the spec's revision.
- abort: `[@<revision> ]by=<user>[ <text>]`: stopping is the safe direction, so the
  revision may be left out; if named, it must be the revision in flight.
A value of another shape (a 12-character prefix, no revision, no `by=`) is recorded as
ignored, never acted on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aigate.api.v1alpha1 import HandledRequest
from aigate.core.gate import PREFIX

Kind = Literal["promote", "abort", "retry"]
KINDS: tuple[Kind, ...] = ("promote", "abort", "retry")
MAX_HANDLED = 512
# The shapes the chart's policy admits (charts/aigate/templates/approval-policy.yaml).
SHAPES: dict[Kind, re.Pattern[str]] = {
    "promote": re.compile(r"[^ @]+@[0-9a-f]{64} by=[^ ]+( .*)?"),
    "retry": re.compile(r"@[0-9a-f]{64} by=[^ ]+( .*)?"),
    "abort": re.compile(r"(@[0-9a-f]{64} )?by=[^ ]+( .*)?"),
}
FORMATS: dict[Kind, str] = {
    "promote": "<stage>@<full 64-hex revision> by=<user> [text]",
    "retry": "@<full 64-hex revision> by=<user> [text]",
    "abort": "[@<full 64-hex revision>] by=<user> [text]",
}


def annotation(kind: Kind) -> str:
    return PREFIX + kind


def value_digest(kind: Kind, value: str) -> str:
    return hashlib.sha256(f"{kind}={value}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Request:
    kind: Kind
    value: str

    @property
    def digest(self) -> str:
        return value_digest(self.kind, self.value)

    @property
    def well_formed(self) -> bool:
        return SHAPES[self.kind].fullmatch(self.value) is not None

    def malformed(self) -> str:
        """Why the operator ignores this value, or '' when it has the expected shape."""
        if self.well_formed:
            return ""
        return f"ignored: expected {FORMATS[self.kind]!r} (the full revision, and who asks)"

    @property
    def _tokens(self) -> list[str]:
        return self.value.split(" ")

    @property
    def _target(self) -> str:
        """`<stage>@<revision>` or `@<revision>`, or '' when the value starts with `by=`."""
        head = self._tokens[0]
        return "" if head.startswith("by=") else head

    @property
    def stage(self) -> str:
        """The stage a promote names: the text before '@'."""
        return self._target.split("@", 1)[0]

    @property
    def revision(self) -> str:
        """The full revision named after '@', or ''."""
        target = self._target
        return target.split("@", 1)[1] if "@" in target else ""

    @property
    def by(self) -> str:
        """The requesting user the value names (checked against admission by the policy)."""
        return next((t[3:] for t in self._tokens[:2] if t.startswith("by=")), "")

    def names_revision(self, revision: str) -> bool:
        """True when the request is for this revision; an abort naming none is for any."""
        if not self.well_formed:
            return False
        return self.revision == revision if self.revision else self.kind == "abort"


def pending_requests(
    annotations: Mapping[str, str], handled_digests: Sequence[str]
) -> dict[Kind, Request]:
    """Requests whose value was never handled."""
    done = set(handled_digests)
    pending: dict[Kind, Request] = {}
    for kind in KINDS:
        value = (annotations.get(annotation(kind)) or "").strip()
        if value and value_digest(kind, value) not in done:
            pending[kind] = Request(kind, value)
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
