"""The revision: the full SHA-256 digest of everything an approval vouches for.

Covers spec.model, spec.template, spec.service, spec.rollout (the plan and its thresholds)
and spec.governance (approvalTTL decides whether an approval is valid: raising it must not
revive an expired one), not spec.replicas (scaling needs no re-approval). Approvals name
the full digest: a 48-bit prefix was shown to collide in a minute of birthday search on a
laptop; short() is for display only. Only
fields the user wrote count, so a future aigate that adds an optional field with a default
does not void every approval in the cluster; writing a default out explicitly is a change
of text and does need a new approval, which errs on the safe side.

A metric that names a preset carries the query the preset stands for as `presetQuery`: the
approval vouches for what is measured, not for a name whose meaning an upgrade could change
(decision 0016). Metrics without a preset, so every earlier revision, are unchanged.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aigate.api.presets import preset_query
from aigate.api.v1alpha1 import AIDeploymentSpec

REVISION_LENGTH = 64
SHORT_LENGTH = 12
VOUCHED_FIELDS = frozenset({"model", "template", "service", "rollout", "governance"})


def vouched_content(spec: AIDeploymentSpec) -> dict[str, Any]:
    """The part of the spec an approval covers, as canonical JSON-compatible data."""
    content = spec.model_dump(
        mode="json", by_alias=True, exclude_unset=True, include=VOUCHED_FIELDS
    )
    for metric in content.get("rollout", {}).get("analysis", {}).get("metrics", []):
        if metric.get("preset"):
            metric["presetQuery"] = preset_query(metric["preset"])
    return content


def compute_revision(spec: AIDeploymentSpec) -> str:
    return canonical_digest(vouched_content(spec))


def canonical_digest(content: Any) -> str:
    """SHA-256 of JSON-compatible data in one canonical form (sorted keys, compact, UTF-8,
    integral floats as integers): a revision from vouched content, a child's content digest,
    an audit record's digest."""
    canonical = json.dumps(
        _integral_floats_as_ints(content),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _integral_floats_as_ints(value: Any) -> Any:
    """`max: 10` is the float 10.0 in the model but comes back from the API server as 10
    (JSON has one number type; Go writes float64 10 as `10`): without this, an approved
    content or a record read back would no longer hash to what was written."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    return value


def short(revision: str) -> str:
    """A prefix for columns and messages; never for approvals."""
    return revision[:SHORT_LENGTH]
