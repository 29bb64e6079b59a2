"""Revision snapshots: the approved content of a revision, kept in status so that the
operator can deploy, watch or restore that revision after the spec has moved on."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from aigate.api.v1alpha1 import AIDeploymentSpec, RevisionSnapshot
from aigate.core.revision import compute_revision, vouched_content


def snapshot_of(spec: AIDeploymentSpec) -> RevisionSnapshot:
    return RevisionSnapshot(
        revision=compute_revision(spec), version=spec.model.version, content=vouched_content(spec)
    )


def plan_of(snapshot: RevisionSnapshot) -> AIDeploymentSpec | None:
    """The snapshot as a spec (replicas aside), if it is complete and its content still
    hashes to its revision; None otherwise (a live snapshot, or a status edited by hand)."""
    try:
        spec = AIDeploymentSpec.model_validate({**snapshot.content, "replicas": 1})
    except ValidationError:
        return None
    return spec if compute_revision(spec) == snapshot.revision else None


def template_of(snapshot: RevisionSnapshot) -> dict[str, Any]:
    return dict(snapshot.content.get("template") or {})


def service_of(snapshot: RevisionSnapshot) -> tuple[int, int]:
    """(port, targetPort) of the snapshot's Service settings; (0, 0) when it has none (a
    version adopted from a live Deployment): then the Service is left as it is, never
    given another revision's settings."""
    service = snapshot.content.get("service")
    if isinstance(service, dict) and isinstance(service.get("port"), int):
        port = service["port"]
        return port, int(service.get("targetPort") or port)
    return 0, 0
