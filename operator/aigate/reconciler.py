"""One reconcile: gather what is → decide → record → apply. No kopf here.

The order matters for the audit trail: the decision's status (approval record, history) is
written first, guarded by the resourceVersion it was made from; only then are children
applied. A conflict (someone changed the object meanwhile) drops the round: the next one
decides again from fresh input.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from aigate.adapters.kube import KubeAdapter, RejectedError
from aigate.api.v1alpha1 import AIDeploymentSpec, AIDeploymentStatus
from aigate.core import rollout
from aigate.core.workloads import Owner, build_deployment, build_service

log = logging.getLogger("aigate.reconcile")

STATUS_FIELDS = set(AIDeploymentStatus.model_fields)


@dataclass(frozen=True)
class Outcome:
    """What a reconcile did, for the caller to post Events and schedule the next one."""

    body: dict[str, Any]
    events: tuple[rollout.Event, ...]
    requeue_after: float


def parse_spec(raw: Any) -> tuple[AIDeploymentSpec | None, str]:
    try:
        return AIDeploymentSpec.model_validate(raw or {}), ""
    except ValidationError as error:
        problems = [
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        ]
        return None, "; ".join(problems[:5])


def parse_status(raw: Any) -> AIDeploymentStatus:
    try:
        return AIDeploymentStatus.model_validate(raw or {})
    except ValidationError as error:
        # A hand-edited status must not stop the operator; the next write repairs it.
        log.warning("ignoring unreadable status: %s", error.errors()[:3])
        return AIDeploymentStatus()


def dump_status(status: AIDeploymentStatus) -> dict[str, Any]:
    """Only aigate's own fields: kopf's bookkeeping under status.kopf is left alone."""
    return status.model_dump(mode="json", by_alias=True, include=STATUS_FIELDS)


async def reconcile(
    kube: KubeAdapter,
    namespace: str,
    name: str,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Outcome | None:
    body = await asyncio.to_thread(kube.get_aideployment, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None  # deleted: owner references let the garbage collector clean up
    metadata = body["metadata"]
    owner = Owner(name=name, namespace=namespace, uid=metadata["uid"])
    spec, spec_error = parse_spec(body.get("spec"))
    previous = parse_status(body.get("status"))
    observed = await asyncio.to_thread(kube.observe, owner)
    inputs = rollout.Inputs(
        generation=int(metadata.get("generation", 0)),
        spec=spec,
        spec_error=spec_error,
        annotations=metadata.get("annotations") or {},
        status=previous,
        observed=observed,
        now=now(),
    )
    decision = rollout.decide(inputs)
    new_status = dump_status(decision.status)
    if new_status != dump_status(previous):
        written = await asyncio.to_thread(
            kube.patch_status, namespace, name, metadata["resourceVersion"], new_status
        )
        if not written:
            log.info(
                "status conflict, deciding again", extra={"aideployment": f"{namespace}/{name}"}
            )
            return Outcome(body=body, events=(), requeue_after=0.5)
    _log_decision(namespace, name, decision)

    if spec is not None:
        try:
            for action in decision.actions:
                await asyncio.to_thread(kube.apply, _manifest(action, owner, spec))
        except RejectedError as error:
            failed = rollout.record_apply_failure(inputs, decision.status, str(error))
            await asyncio.to_thread(
                kube.patch_status, namespace, name, None, dump_status(failed.status)
            )
            _log_decision(namespace, name, failed)
            return Outcome(
                body=body,
                events=decision.events + failed.events,
                requeue_after=failed.requeue_after,
            )
    return Outcome(body=body, events=decision.events, requeue_after=decision.requeue_after)


def _manifest(action: rollout.Action, owner: Owner, spec: AIDeploymentSpec) -> dict[str, Any]:
    if isinstance(action, rollout.ApplyService):
        return build_service(owner, spec)
    return build_deployment(owner, action.track, spec, action.revision, action.replicas)


def _log_decision(namespace: str, name: str, decision: rollout.Decision) -> None:
    status = decision.status
    fields = {
        "aideployment": f"{namespace}/{name}",
        "phase": status.phase,
        "revision": status.revision,
        "stableRevision": status.stable_revision,
        "actions": [type(a).__name__ for a in decision.actions],
    }
    for event in decision.events:
        level = logging.WARNING if event.type == "Warning" else logging.INFO
        log.log(
            level, "%s: %s", event.reason, event.message, extra={**fields, "reason": event.reason}
        )
