"""The exact text an approver (or risk acceptor) signs: a canonical statement.

A signed approval is an SSH signature (`ssh-keygen -Y sign -n aigate.dev`, the SSHSIG
format) over one of these statements, so anyone can check it offline, years later, with
nothing but the manifest, the signature and OpenSSH (docs/decisions/0011-signed-approvals.md):

    aigate.dev approval v1
    revision: <full 64-hex revision>
    model: <spec.model.name>
    version: <spec.model.version>
    approved-by: <aigate.dev/approved-by>
    approved-at: <aigate.dev/approved-at, as written>
    risk-acceptance: <aigate.dev/risk-acceptance>
    conditions: <aigate.dev/approval-conditions, empty when none>

and, signed separately by the risk acceptor:

    aigate.dev risk-acceptance v1
    revision: ...
    model: ...
    version: ...
    risk-accepted-by: <aigate.dev/risk-accepted-by>
    risk-acceptance: <aigate.dev/risk-acceptance>

UTF-8, LF line endings, one LF after the last line, fields in this order. Values are taken
as the gate reads them (surrounding whitespace stripped) and escaped, so no value can
smuggle a line (a field) into the statement: a backslash becomes `\\\\`, LF `\\n`, CR `\\r`,
and every other control or line-separator character `\\u{XXXX}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from aigate.core import gate

# The SSHSIG namespace: a signature made for git commits (or any other purpose) never
# verifies as an aigate approval, and the reverse.
SSHSIG_NAMESPACE = "aigate.dev"
APPROVAL_HEADER = "aigate.dev approval v1"
RISK_HEADER = "aigate.dev risk-acceptance v1"

_FULL_REVISION = re.compile(r"^[0-9a-f]{64}$")
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_ESCAPED = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\\]")
_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}


class StatementError(ValueError):
    """A statement cannot be made (e.g. the revision is not a full digest)."""


def escape(value: str) -> str:
    """One line, always: see the module docstring."""
    return _ESCAPED.sub(lambda m: _NAMED.get(m.group(), f"\\u{{{ord(m.group()):04X}}}"), value)


def _statement(header: str, fields: tuple[tuple[str, str], ...]) -> str:
    revision = dict(fields)["revision"]
    if not _FULL_REVISION.match(revision):
        raise StatementError(
            f"revision: expected the full 64-hex revision, found {revision[:80]!r}"
        )
    return "".join([header, "\n", *(f"{key}: {escape(value)}\n" for key, value in fields)])


def approval_statement(
    *,
    revision: str,
    model: str,
    version: str,
    approved_by: str,
    approved_at: str,
    risk_acceptance: str,
    conditions: str,
) -> str:
    return _statement(
        APPROVAL_HEADER,
        (
            ("revision", revision),
            ("model", model),
            ("version", version),
            ("approved-by", approved_by.strip()),
            ("approved-at", approved_at.strip()),
            ("risk-acceptance", risk_acceptance.strip()),
            ("conditions", conditions.strip()),
        ),
    )


def risk_statement(
    *, revision: str, model: str, version: str, risk_accepted_by: str, risk_acceptance: str
) -> str:
    return _statement(
        RISK_HEADER,
        (
            ("revision", revision),
            ("model", model),
            ("version", version),
            ("risk-accepted-by", risk_accepted_by.strip()),
            ("risk-acceptance", risk_acceptance.strip()),
        ),
    )


def statements_of(
    annotations: Mapping[str, str], revision: str, model: str, version: str
) -> tuple[str, str]:
    """(approval statement, risk statement) for the spec's revision and the annotations as
    written: what a valid signature of each must cover. A signature over another revision,
    approver, time, risk reference or conditions does not verify."""
    approval = approval_statement(
        revision=revision,
        model=model,
        version=version,
        approved_by=annotations.get(gate.APPROVED_BY, ""),
        approved_at=annotations.get(gate.APPROVED_AT, ""),
        risk_acceptance=annotations.get(gate.RISK_ACCEPTANCE, ""),
        conditions=annotations.get(gate.APPROVAL_CONDITIONS, ""),
    )
    risk = risk_statement(
        revision=revision,
        model=model,
        version=version,
        risk_accepted_by=annotations.get(gate.RISK_ACCEPTED_BY, ""),
        risk_acceptance=annotations.get(gate.RISK_ACCEPTANCE, ""),
    )
    return approval, risk
