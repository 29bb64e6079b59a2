"""One reconcile: gather what is → measure what is due → decide → record → apply. No kopf.

The order matters for the audit trail: the decision's status (approval record, history,
counters) is written first, guarded by the resourceVersion it was made from; only then are
children changed. A conflict (someone changed the object meanwhile) drops the round: the
next one decides again from fresh input, and measurements already counted are never counted
twice (each is stamped with its evaluation time).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError

from aigate.adapters import prometheus
from aigate.adapters.admission import ApprovalPolicyCheck
from aigate.adapters.approver_keys import ApproverKeys
from aigate.adapters.cache import ChildSummary, merge_patch
from aigate.adapters.gateway import GatewayRouter
from aigate.adapters.kube import (
    KubeAdapter,
    NameTakenError,
    RejectedError,
    TransientError,
    WriteMode,
)
from aigate.adapters.records import Recorder
from aigate.api.records import AIRecordSpec, RecordSubject
from aigate.api.v1alpha1 import (
    AIDeploymentSpec,
    AIDeploymentStatus,
    AnalysisSpec,
    ApplyError,
    ChildRecord,
    ChildRecords,
    MeasurementRecord,
    RouteWeights,
    SecretKeyRef,
)
from aigate.core import analysis as an
from aigate.core import conditions as cond
from aigate.core import gate, rollout, traffic
from aigate.core.analysis import MeasurementPlan, Measurements, MetricResult, unknown_placeholders
from aigate.core.children import Child, content_digest, record_of
from aigate.core.gate import format_rfc3339, parse_rfc3339
from aigate.core.images import unpinned_images
from aigate.core.rollout.snapshots import plan_of
from aigate.core.verdict import QueryOutcome
from aigate.core.workloads import (
    Owner,
    build_deployment,
    build_service,
    child_object,
    deployment_name,
)
from aigate.signatures import check_annotations

log = logging.getLogger("aigate.reconcile")
audit = logging.getLogger("aigate.audit")

STATUS_FIELDS = set(AIDeploymentStatus.model_fields)
NO_REGISTRY = (
    "the operator has no approver key registry to verify it with (aigate run --approver-keys "
    "NAMESPACE/NAME)"
)


RECORDED = "RecordsWritten"
# Phases a decision may still move to while records cannot be written: stopping a canary
# is the safe direction (its records wait in the outbox); nothing else advances.
SAFE_WHILE_UNRECORDED = frozenset({"RollingBack", "RolledBack"})


@dataclass
class Policy:
    """Platform-wide settings, made once at start-up (`aigate run` flags)."""

    allow_unpinned_images: bool = False
    # riskTiers whose approvals must be signed whatever spec.governance says
    signed_tiers: frozenset[str] = frozenset()


POLICY = Policy()


@dataclass(frozen=True)
class Outcome:
    """What a reconcile did, for the caller to post Events and schedule the next one."""

    body: dict[str, Any]
    events: tuple[rollout.Event, ...]
    requeue_after: float
    # For metrics only (aigate.metrics.observe_outcome), never read to decide: the status
    # this round wrote (or found already current; None when a conflict dropped the round)
    # and the measurements it took.
    status: dict[str, Any] | None = None
    measurements: tuple[MeasurementRecord, ...] = ()
    # Measurements taken while the round waited: offered to it, and how many it counted.
    offered: int = 0
    counted: int = 0


@dataclass(frozen=True)
class Schedule:
    """A resource's next measurement (due now or later) and what taking it needs."""

    namespace: str
    analysis: AnalysisSpec
    plan: MeasurementPlan
    basis: rollout.Basis = ()  # rollout.basis() of the inputs it was planned from


class Measuring(Protocol):
    """Takes a resource's measurements when they fall due, whatever its round is waiting
    on (aigate/measurer.py): the round counts what it took."""

    def owes(self, at: datetime) -> bool:
        """A measurement due by `at` is not taken yet (or is being taken)."""
        ...

    async def through(self, at: datetime) -> Sequence[rollout.Taken]:
        """Every measurement due by `at`, once taken, in the order taken."""
        ...

    def plan(self, schedule: Schedule | None, settled: Sequence[rollout.Taken] = ()) -> None:
        """The next measurement as status now says; `settled`: taken measurements a round
        that landed was offered (counted, or never to be)."""
        ...


def parse_spec(raw: Any) -> tuple[AIDeploymentSpec | None, str]:
    try:
        spec = AIDeploymentSpec.model_validate(raw or {})
    except ValidationError as error:
        problems = [
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        ]
        return None, "; ".join(problems[:5])
    if not POLICY.allow_unpinned_images:
        unpinned = unpinned_images(
            spec.model.risk_tier, spec.template.model_dump(mode="json", by_alias=True)
        )
        if unpinned:
            return None, "; ".join(unpinned[:5])
    for index, metric in enumerate(spec.rollout.analysis.metrics):
        unknown = unknown_placeholders(metric.query_template())
        if unknown:
            return None, (
                f"spec.rollout.analysis.metrics[{index}].query: unknown placeholder(s) "
                f"{sorted(unknown)}; expected name, namespace, revision, version or track"
            )
    return spec, ""


def parse_status(raw: Any) -> tuple[AIDeploymentStatus, str]:
    """The stored status, or an empty one and which field could not be read. An unreadable
    status is never silently replaced: decide() then acts on nothing."""
    try:
        return AIDeploymentStatus.model_validate(raw or {}), ""
    except ValidationError as error:
        problems = [
            f"status.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        ]
        return AIDeploymentStatus(), "; ".join(problems[:3])


def dump_status(status: AIDeploymentStatus) -> dict[str, Any]:
    """Only aigate's own fields: kopf's bookkeeping under status.kopf is left alone."""
    return status.model_dump(mode="json", by_alias=True, include=STATUS_FIELDS)


async def reconcile(
    kube: KubeAdapter,
    namespace: str,
    name: str,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    approval_policy: ApprovalPolicyCheck | None = None,
    approver_keys: ApproverKeys | None = None,
    recorder: Recorder | None = None,
    watched: Mapping[str, Any] | None = None,
    waiting: Callable[[], AbstractAsyncContextManager[None]] = contextlib.nullcontext,
    measurer: Measuring | None = None,
) -> Outcome | None:
    """`watched`: the AIDeployment as the operator's watch holds it (nothing is read then);
    without it, it is read from the API server. `waiting`: entered while the round waits
    on Prometheus (the caller lends its reconcile slot meanwhile). `measurer`: takes the
    resource's measurements when due; the round counts those it took (without one, the
    round measures what it finds due)."""
    if watched is not None and kube.bodies is not None:
        body: dict[str, Any] | None = kube.bodies.current(watched)
    elif watched is not None:
        body = dict(watched)
    else:
        body = await asyncio.to_thread(kube.get_aideployment, namespace, name)
    if not body or body["metadata"].get("deletionTimestamp"):
        return None  # deleted: record_deletion closes the chain; children go by owner refs
    metadata = body["metadata"]
    owner = Owner(name=name, namespace=namespace, uid=metadata["uid"])
    spec, spec_error = parse_spec(body.get("spec"))
    stored, previous, status_error, deferred = _read_status(kube, body)
    # What the API server holds: a deferred patch (read as written) makes a write due.
    stored_status = dump_status(stored)
    unrecorded = ""
    if recorder is not None and previous.records.outbox:
        # Left by a round that stopped (or crashed) after its status write: delivered
        # first; those created leave the outbox with this round's status write.
        remaining, unrecorded = await asyncio.to_thread(recorder.deliver, previous.records.outbox)
        previous.records.outbox = remaining
    observed = await _observe(kube, owner, previous)
    route_config = traffic.gateway_of(
        spec, plan_of(previous.serving) if spec is None and previous.serving else None
    )
    route_view = None
    if route_config is not None:  # the Gateway API router (adapters/gateway.py)
        route_view = await asyncio.to_thread(
            GatewayRouter(kube.api_client).observe, owner, route_config
        )
    policy_problem = ""
    if approval_policy is not None:
        labels = metadata.get("labels") or {}
        policy_problem = await asyncio.to_thread(approval_policy.problem, namespace, labels) or ""
    annotations = metadata.get("annotations") or {}
    signatures = await _check_signatures(spec, annotations, approver_keys)
    taken = await _taken_by(measurer, now(), waiting)
    inputs = rollout.Inputs(
        generation=int(metadata.get("generation", 0)),
        spec=spec,
        spec_error=spec_error,
        annotations=annotations,
        status=previous,
        observed=observed,
        now=now(),
        name=name,
        namespace=namespace,
        managed_fields=metadata.get("managedFields") or (),
        status_error=status_error,
        policy_problem=policy_problem,
        signatures=signatures,
        signed_tiers=POLICY.signed_tiers,
        uid=metadata["uid"],
        record_retention=recorder.retention if recorder is not None else RETENTION,
        route=route_view,
    )
    caught = rollout.catch_up(inputs, taken)
    inputs = caught.inputs
    plan = rollout.measurement_plan(inputs)
    if plan is not None and spec is not None:
        async with waiting():  # a slow Prometheus holds no reconcile slot
            measurements = await _measure(kube, namespace, spec.rollout.analysis, plan)
        inputs = dataclasses.replace(inputs, measurements=measurements)
    decision = caught.then(rollout.decide(inputs))
    unwatched = await _unwatched_children(kube, owner, decision)
    if unwatched:
        # Objects without aigate's label hold names it was about to write: seen now, they
        # are conflicts (never written over), and the decision is made again knowing them.
        observed = await asyncio.to_thread(
            kube.observe, owner, previous.children, _known_revisions(previous), unwatched
        )
        inputs = dataclasses.replace(inputs, observed=observed)
        decision = caught.then(rollout.decide(inputs))
    context = {"aideployment": f"{namespace}/{name}", "revision": decision.status.revision}
    if decision.conditions_only:
        return await _report_unreadable_status(kube, body, decision, context)
    context["uid"] = owner.uid
    if unrecorded and decision.status.phase not in SAFE_WHILE_UNRECORDED:
        return await _hold_unrecorded(kube, body, previous, unrecorded, context, inputs)
    if recorder is not None:
        records_state = decision.status.records
        records_state.outbox = recorder.sign_outbox(records_state.outbox)
    _mark_recorded(decision.status, unrecorded, inputs)
    _mark_creates(decision, observed, kube)
    new_status = dump_status(decision.status)
    if new_status != stored_status:
        written = await asyncio.to_thread(
            kube.patch_status, namespace, name, metadata["resourceVersion"], new_status
        )
        if not written:
            log.info("status conflict, deciding again", extra=context)
            return Outcome(body=body, events=(), requeue_after=rollout.REQUEUE_NOW)
    if deferred and kube.bodies is not None:
        kube.bodies.written(body)  # the status now holds what was deferred
    if measurer is not None:
        measurer.plan(
            _schedule(namespace, spec, dataclasses.replace(inputs, status=decision.status)),
            settled=taken,
        )
    # Audit lines only for what status now holds: a dropped round recorded nothing.
    _audit(context, decision)
    _log_decision(context, decision)
    events = decision.events
    # What follows (records delivered, children written, refusals) is written back to
    # status in one merge patch at the end, even when a write fails half-way.
    after: dict[str, Any] = {}
    try:
        if recorder is not None and decision.status.records.outbox:
            outbox = decision.status.records.outbox
            remaining, problem = await asyncio.to_thread(recorder.deliver, outbox)
            if len(remaining) != len(outbox):
                after["records"] = {"outbox": remaining}
            if problem and decision.status.phase not in SAFE_WHILE_UNRECORDED:
                # The decision stands in status; its children wait for its records.
                log.warning("records not written: %s", problem, extra=context)
                event = rollout.Event("Warning", "RecordsNotWritten", _unrecorded_text(problem))
                return Outcome(body=body, events=(*events, event), requeue_after=5.0)
        if decision.route is not None or decision.status.traffic.written is not None:
            # Before any other action: a rollback takes the canary's weight away before
            # the canary goes; a write that cannot be made now fails the round.
            routed = await _route(
                kube, owner, decision.route, decision.status, after, seen=inputs.route
            )
            events = (*events, *routed)
        refused = await _apply_all(
            kube,
            owner,
            _model_name(spec, decision.status),
            decision,
            (inputs.generation, now()),
            observed,
            recorder,
            after,
        )
    finally:
        deferring = bool(after) and _deferrable(after, decision, observed, kube)
        await _write_after(kube, body, after, deferring)
    if refused is not None:
        log.warning("apply refused: %s", refused.message, extra=context)
        events = (*events, rollout.Event("Warning", "ApplyRefused", refused.message))
    requeue_after = 5.0 if refused is not None else decision.requeue_after
    return Outcome(
        body=body,
        events=events,
        requeue_after=min(requeue_after, DEFERRED_WRITE_SECONDS) if deferring else requeue_after,
        status=new_status,
        measurements=decision.new_measurements,
        offered=len(taken),
        counted=caught.counted,
    )


async def _taken_by(
    measurer: Measuring | None,
    at: datetime,
    waiting: Callable[[], AbstractAsyncContextManager[None]],
) -> Sequence[rollout.Taken]:
    if measurer is None:
        return ()
    if not measurer.owes(at):
        return await measurer.through(at)
    async with waiting():  # a measurement being taken holds no reconcile slot
        return await measurer.through(at)


def _schedule(
    namespace: str, spec: AIDeploymentSpec | None, inputs: rollout.Inputs
) -> Schedule | None:
    """Status' next measurement, whatever the pods do now (the measurer checks they can be
    measured when it is due)."""
    plan = rollout.next_slot(inputs) if spec is not None else None
    if spec is None or plan is None:
        return None
    return Schedule(namespace, spec.rollout.analysis, plan, rollout.basis(inputs))


def next_schedule(kube: KubeAdapter, watched: Mapping[str, Any], at: datetime) -> Schedule | None:
    """The resource's next measurement from what the watches hold (nothing is read), for
    the measurer to take when due while the round waits for a reconcile slot: with many
    resources at once, rounds queue for slots (their status writes wait on the API
    server), and a measurement taken only when its round's turn came would be late by that
    queue. Only what the measurement needs outlives this call (not the parsed spec and
    status)."""
    inputs = _watched_inputs(kube, watched, at)
    return _schedule(inputs.namespace, inputs.spec, inputs) if inputs is not None else None


def _watched_inputs(
    kube: KubeAdapter, watched: Mapping[str, Any], at: datetime
) -> rollout.Inputs | None:
    """decide()'s inputs as the watches hold them, enough to plan a measurement (no
    approval policy or signature checks: those are the round's)."""
    if kube.bodies is None or kube.children is None:
        return None
    body = kube.bodies.current(watched)
    metadata = (body or {}).get("metadata") or {}
    if not body or metadata.get("deletionTimestamp") or not metadata.get("uid"):
        return None
    spec, _ = parse_spec(body.get("spec"))
    _, status, status_error, _ = _read_status(kube, body)
    if spec is None or status_error:
        return None
    namespace, name = str(metadata.get("namespace", "")), str(metadata.get("name", ""))
    owner = Owner(name=name, namespace=namespace, uid=metadata["uid"])
    return rollout.Inputs(
        generation=int(metadata.get("generation", 0)),
        spec=spec,
        spec_error="",
        annotations=metadata.get("annotations") or {},
        status=status,
        observed=kube.observe(owner, status.children, _known_revisions(status)),
        now=at,
        name=name,
        namespace=namespace,
        uid=owner.uid,
    )


async def take(
    kube: KubeAdapter, watched: Mapping[str, Any], schedule: Schedule, now: datetime
) -> rollout.Taken | None:
    """The scheduled measurement, taken now (stamped now, with how late it is), if the
    watches still say its analysis runs, nothing but time has changed, and its pods can be
    measured now; None: not now (the next round plans again)."""
    observed = _still_takeable(kube, watched, schedule, now)
    if observed is None:
        return None
    plan = an.taken_now(schedule.plan, now)
    measurements = await _measure(kube, schedule.namespace, schedule.analysis, plan)
    return rollout.Taken(plan, measurements, schedule.basis, observed)


def _still_takeable(
    kube: KubeAdapter, watched: Mapping[str, Any], schedule: Schedule, now: datetime
) -> rollout.Observed | None:
    """The children as watched now when `schedule` may be taken now, else None. A function
    of its own so that the parsed spec and status are not held while the query waits for
    Prometheus (a thousand measurements fall due at once at scale)."""
    current = _watched_inputs(kube, watched, now)
    running = rollout.next_measurement(current) if current is not None else None
    if (
        current is None
        or running is None
        or not an.same_analysis(running, schedule.plan)
        or rollout.basis(current) != schedule.basis
    ):
        return None
    return current.observed


async def _observe(kube: KubeAdapter, owner: Owner, status: AIDeploymentStatus) -> rollout.Observed:
    """From the watches in memory (no worker thread to queue for), else from the API."""
    if kube.children is not None:
        return kube.observe(owner, status.children, _known_revisions(status))
    return await asyncio.to_thread(kube.observe, owner, status.children, _known_revisions(status))


# How long a deferred status patch may wait for the next status write before the round
# that carries it (alone, if nothing else changed) is due.
DEFERRED_WRITE_SECONDS = 2.0
DEFERRABLE = frozenset({"records", "children"})


def _read_status(
    kube: KubeAdapter, body: Mapping[str, Any]
) -> tuple[AIDeploymentStatus, AIDeploymentStatus, str, dict[str, Any] | None]:
    """(the status the API server holds, the status once what is deferred for the object
    is written, why the stored one could not be read, the deferred patch). A stored status
    that cannot be read is never masked by a deferred patch."""
    stored, problem = parse_status(body.get("status"))
    deferred = kube.bodies.deferred(body) if kube.bodies is not None and not problem else None
    if not deferred:
        return stored, stored, problem, None
    merged, unreadable = parse_status(merge_patch(body.get("status") or {}, deferred))
    return stored, stored if unreadable else merged, problem, deferred


def _deferrable(
    after: Mapping[str, Any],
    decision: rollout.Decision,
    observed: rollout.Observed,
    kube: KubeAdapter,
) -> bool:
    """The round's closing patch may ride with the next status write (usually a moment
    later: the watch events of the children just written wake the resource), when a crash
    losing it does no harm: records delivered (delivered again, they are found identical)
    and children created (a created one is still marked `creating` in status, so it is
    taken as aigate's and written whole once more). A child changed in place, deleted, or
    whose create was refused is not: aigate's record of that write must be on the server
    before anything is decided from it (a stale record would make aigate's own write read
    as someone else's drift, or a later create an apply over whatever holds the name)."""
    if kube.bodies is None or not set(after) <= DEFERRABLE:
        return False
    children = after.get("children") or {}
    if any(not isinstance(record, dict) or not record.get("uid") for record in children.values()):
        return False  # a deletion, or a create marker taken back: written at once
    return all(
        isinstance(action, rollout.DeleteDeployment)
        or _write_mode(rollout.action_track(action), observed, decision.status) == "create"
        for action in decision.actions
    )


async def _write_after(
    kube: KubeAdapter, body: Mapping[str, Any], after: dict[str, Any], deferring: bool
) -> None:
    """The round's closing status patch: deferred, or written with whatever was deferred."""
    if not after:
        return
    if deferring and kube.bodies is not None:
        kube.bodies.defer(body, after)
        return
    await flush_deferred(kube, body)  # none, normally: this round's status write took it
    metadata = body["metadata"]
    await asyncio.to_thread(kube.patch_status, metadata["namespace"], metadata["name"], None, after)


async def flush_deferred(kube: KubeAdapter, body: Mapping[str, Any]) -> None:
    """Writes what is deferred for this object now (the operator is stopping, say)."""
    deferred = kube.bodies.deferred(body) if kube.bodies is not None else None
    if not deferred or kube.bodies is None:
        return
    metadata = body["metadata"]
    await asyncio.to_thread(
        kube.patch_status, metadata["namespace"], metadata["name"], None, deferred
    )
    kube.bodies.written(body)


def _mark_creates(
    decision: rollout.Decision, observed: rollout.Observed, kube: KubeAdapter
) -> None:
    """A child about to be created is marked in the decision's own status write (the
    revision being created, no UID yet), so a crash between the create and its record
    leaves a trace that lets the next reconcile take the object as its own
    (core/children.claim)."""
    status = decision.status
    for action in decision.actions:
        if isinstance(action, rollout.DeleteDeployment):
            continue
        child = rollout.action_track(action)
        if _write_mode(child, observed, status) != "create":
            continue
        if status.children is None:
            # the other children keep their takeover until recorded
            status.children = ChildRecords(legacy=True)
        record = record_of(status.children, child) or ChildRecord()
        record.creating = action.revision if child != "service" else "service"
        record.uid = ""
        setattr(status.children, child, record)


def _unmark_create(
    children: dict[str, Any], child: Child, observed: rollout.Observed, status: AIDeploymentStatus
) -> None:
    if _write_mode(child, observed, status) == "create":
        children[child] = {"creating": ""}


async def _apply_all(
    kube: KubeAdapter,
    owner: Owner,
    model_name: str,
    decision: rollout.Decision,
    generation_at: tuple[int, datetime],
    observed: rollout.Observed,
    recorder: Recorder | None,
    after: dict[str, Any],
) -> ApplyError | None:
    """Every action, each on its own: one refused apply never keeps the others (deleting a
    canary above all) from happening. The first refusal is recorded for decide() to weigh;
    a recorded refusal ends when an apply of the same child goes through. What each write
    left on the API server (UID, content digest) goes to status.children through `after`,
    also when a later write fails transiently, so the next round does not take aigate's own
    write for drift."""
    status = decision.status
    generation, at = generation_at
    refused: ApplyError | None = None
    cleared = False
    children: dict[str, Any] = {}
    try:
        for action in decision.actions:
            child = rollout.action_track(action)
            try:
                await _vouched(recorder, owner, action)
                children[child] = await _act(kube, owner, model_name, action, observed, status)
            except NameTakenError:
                # Not created by aigate: the marker goes, so it is never taken over.
                _unmark_create(children, child, observed, status)
                raise
            except RejectedError as error:
                _unmark_create(children, child, observed, status)  # nothing was created
                refused = refused or _apply_error(status, generation, action, str(error), at)
                continue
            previous = status.apply_error
            cleared = cleared or (previous is not None and child == previous.track)
    finally:
        if children:
            if status.children is None:
                children["legacy"] = True  # the other children keep their takeover
            after["children"] = children
    if refused is not None and not _repeats(status.apply_error, refused, at):
        after["applyError"] = refused.model_dump(mode="json", by_alias=True)
    elif cleared:
        after["applyError"] = None  # a merge patch with null removes applyError
    return refused


async def _route(
    kube: KubeAdapter,
    owner: Owner,
    intent: traffic.RouteIntent | None,
    status: AIDeploymentStatus,
    after: dict[str, Any],
    seen: traffic.RouteView | None = None,
) -> tuple[rollout.Event, ...]:
    """Sets the route's weights (and keeps the per-track backends); records what the rule
    holds in status.traffic.written, which tells aigate's own writes from others' edits. A
    rule aigate gave the canary weight in and the plan no longer names is set to 100/0
    first. `seen`: the rule as this round's decision read it; changed since, nothing is
    written (the next round records the edit, then reverts it)."""
    router = GatewayRouter(kube.api_client)
    previous = status.traffic.written
    try:
        if traffic.abandoned(previous, intent, owner.namespace):
            assert previous is not None
            released = await asyncio.to_thread(router.release, owner, previous)
            _note_traffic(after, released if intent is not None else None)
            log.info("canary weight taken off %s rule %s", previous.route, previous.rule)
        if intent is None:
            return ()
        written = await asyncio.to_thread(router.apply, owner, intent, seen)
    except RejectedError as error:
        message = f"spec.rollout.traffic.gatewayAPI: the API server refused: {error}"
        log.warning("route refused: %s", error, extra={"aideployment": owner.name})
        return (rollout.Event("Warning", "TrafficRouteRefused", message),)
    if written is not None and written != previous:
        _note_traffic(after, written)
    return ()


def _note_traffic(after: dict[str, Any], written: RouteWeights | None) -> None:
    """What the rule now holds, for the round's closing status patch (null removes it)."""
    value = written.model_dump(mode="json", by_alias=True) if written is not None else None
    after["traffic"] = {"written": value}


async def _check_signatures(
    spec: AIDeploymentSpec | None, annotations: dict[str, str], keys: ApproverKeys | None
) -> gate.Signatures:
    """Verifies the signature annotations present (I/O: the registry); the gate decides
    whether they are required."""
    present = gate.APPROVAL_SIGNATURE in annotations or gate.RISK_SIGNATURE in annotations
    if spec is None or not present:
        return gate.Signatures()
    registry, problem = None, NO_REGISTRY
    if keys is not None:
        registry, problem = await asyncio.to_thread(keys.registry)
    return check_annotations(spec, annotations, registry, problem)


async def _unwatched_children(
    kube: KubeAdapter, owner: Owner, decision: rollout.Decision
) -> dict[tuple[str, str, str], ChildSummary]:
    """Before aigate writes a child its watches do not show, the name is looked up: the
    watches see only objects with aigate's label, and an object someone else made under
    that name must be found (a conflict), never applied over. Only when a write is due, so
    a reconcile that changes nothing reads nothing."""
    if kube.children is None:
        return {}  # observe() read every name from the API server already
    found: dict[tuple[str, str, str], ChildSummary] = {}
    for action in decision.actions:
        if isinstance(action, rollout.DeleteDeployment):
            continue
        kind, name = child_object(owner.name, rollout.action_track(action))
        if kube.read_child(kind, owner.namespace, name) is not None:
            continue
        live = await asyncio.to_thread(kube.look_up, kind, owner.namespace, name)
        if live is not None:
            found[live.key] = live
    return found


def _known_revisions(status: AIDeploymentStatus) -> frozenset[str]:
    """Revisions the status says aigate deployed: in a status that predates child records,
    a child of aigate's (ownerReference) running one of them is taken over (and re-applied
    whole); any other is a conflict."""
    snapshots = [
        status.serving,
        status.previous,
        status.rollout.candidate if status.rollout else None,
        status.rollback.target if status.rollback else None,
    ]
    return frozenset(s.revision for s in snapshots if s is not None and s.revision)


def _write_mode(child: Child, observed: rollout.Observed, status: AIDeploymentStatus) -> WriteMode:
    """replace: the child drifted (or aigate's record of it was lost), so it is written
    whole; create: aigate has never created it; apply: the usual, a no-op when unchanged."""
    if observed.drift_of(child) is not None:
        return "replace"
    record = record_of(status.children, child)
    return "apply" if record is not None and record.uid else "create"


REPEAT_WRITE_INTERVAL = timedelta(seconds=30)


def _repeats(previous: ApplyError | None, refused: ApplyError, at: datetime) -> bool:
    """The same refusal written less than REPEAT_WRITE_INTERVAL ago: not written again (each
    status write wakes the resource at once, which would retry a refused apply in a tight
    loop; the round requeues in 5 s instead, and `attempts` counts the writes)."""
    if previous is None or (previous.track, previous.message) != (refused.track, refused.message):
        return False
    last = parse_rfc3339(previous.last_at) if previous.last_at else None
    return last is not None and at - last < REPEAT_WRITE_INTERVAL


def _apply_error(
    status: AIDeploymentStatus, generation: int, action: rollout.Action, message: str, at: datetime
) -> ApplyError:
    track = rollout.action_track(action)
    now_iso = format_rfc3339(at)
    previous = status.apply_error
    same = previous is not None and (previous.phase, previous.track) == (status.phase, track)
    return ApplyError(
        generation=generation,
        phase=status.phase,
        track=track,
        message=message[:512],
        attempts=previous.attempts + 1 if same and previous else 1,
        since=previous.since if same and previous else now_iso,
        last_at=now_iso,
    )


async def _report_unreadable_status(
    kube: KubeAdapter, body: dict[str, Any], decision: rollout.Decision, context: dict[str, str]
) -> Outcome:
    """Writes only the conditions (once per message): everything else stays as stored."""
    metadata = body["metadata"]
    conditions = [c.model_dump(mode="json", by_alias=True) for c in decision.status.conditions]
    stored = (body.get("status") or {}).get("conditions") or []
    stalled = next((c for c in conditions if c["type"] == "Stalled"), {})
    if any(
        c.get("type") == "Stalled" and c.get("message") == stalled.get("message")
        for c in stored
        if isinstance(c, dict)
    ):
        return Outcome(body=body, events=(), requeue_after=decision.requeue_after)
    await asyncio.to_thread(
        kube.patch_status,
        metadata["namespace"],
        metadata["name"],
        metadata["resourceVersion"],
        {"conditions": conditions},
    )
    log.warning("status unreadable: %s", stalled.get("message", ""), extra=context)
    event = rollout.Event("Warning", "StatusUnreadable", stalled.get("message", ""))
    return Outcome(body=body, events=(event,), requeue_after=decision.requeue_after)


async def _measure(
    kube: KubeAdapter, namespace: str, analysis: AnalysisSpec, plan: MeasurementPlan
) -> Measurements:
    prometheus_spec = analysis.prometheus
    try:
        credentials = prometheus.Credentials(
            bearer_token=await _secret_value(kube, namespace, prometheus_spec.bearer_token_secret),
            ca_pem=await _secret_value(kube, namespace, prometheus_spec.ca_secret),
        )
    except (RejectedError, TransientError) as error:
        # Without credentials nothing can be measured: every metric is an error outcome.
        failed = QueryOutcome.failed(f"Prometheus credentials unavailable: {error}")
        return Measurements.of(
            plan, tuple(MetricResult(q.metric, q.query, failed) for q in plan.queries)
        )
    return await prometheus.measure_async(plan, prometheus_spec, credentials)


async def _secret_value(kube: KubeAdapter, namespace: str, ref: SecretKeyRef | None) -> str:
    if ref is None:
        return ""
    return await asyncio.to_thread(kube.read_secret_key, namespace, ref.name, ref.key)


async def _vouched(recorder: Recorder | None, owner: Owner, action: rollout.Action) -> None:
    """A Deployment's template is applied only when records signed by the operator say its
    revision was approved for this AIDeployment, and for the stable track that it passed its
    analysis (or was the first version): a rollback target or a recreated stable comes from
    a status snapshot, and status is never an authority. A promotion's own record is
    delivered before its children are written, so it counts."""
    if recorder is None or not isinstance(action, rollout.ApplyDeployment):
        return
    served = action.track == "stable"
    try:
        problem = await asyncio.to_thread(recorder.vouched, owner.uid, action.revision, served)
    except TransientError as error:  # refused this round; the other actions (a canary
        # deletion above all) still go ahead
        problem = f"the records that would vouch for it cannot be read: {error}"
    if problem:
        raise RejectedError(f"{action.track} Deployment not applied: {problem}")


async def _act(
    kube: KubeAdapter,
    owner: Owner,
    model_name: str,
    action: rollout.Action,
    observed: rollout.Observed,
    status: AIDeploymentStatus,
) -> dict[str, Any] | None:
    """Carries out one action; returns the record of the child it wrote (None: deleted)."""
    if isinstance(action, rollout.DeleteDeployment):
        await asyncio.to_thread(
            kube.delete, owner.namespace, deployment_name(owner.name, action.track)
        )
        return None
    child = rollout.action_track(action)
    mode = _write_mode(child, observed, status)
    stored = await asyncio.to_thread(kube.write, _manifest(owner, model_name, action), mode)
    return {
        "uid": stored["metadata"]["uid"],
        "digest": content_digest(stored),
        "creating": "",
        "driftNoted": "",
    }


def _manifest(
    owner: Owner, model_name: str, action: rollout.ApplyDeployment | rollout.ApplyService
) -> dict[str, Any]:
    if isinstance(action, rollout.ApplyService):
        return build_service(owner, port=action.port, target_port=action.target_port)
    return build_deployment(
        owner,
        action.track,
        model_name=model_name,
        version=action.version,
        revision=action.revision,
        template=action.template,
        replicas=action.replicas,
    )


def _model_name(spec: AIDeploymentSpec | None, status: AIDeploymentStatus) -> str:
    """The model name for child labels: the spec's, or the serving snapshot's when the
    spec cannot be used (a rollback still completes)."""
    if spec is not None:
        return spec.model.name
    model = (status.serving.content.get("model") if status.serving else None) or {}
    return str(model.get("name") or "")


def _audit(context: dict[str, str], decision: rollout.Decision) -> None:
    """One JSON line per new record (resource uid, sequence, digest) and per measurement;
    the measurements are logged whole, so records leave their evidence out. A log store
    holding these lines can tell a record removed or rewritten in the cluster."""
    for record in decision.new_records:
        _audit_record(context, record)
    for record in decision.new_measurements:
        audit.info(
            "measurement", extra={**context, "measurement": record.model_dump(by_alias=True)}
        )


def _log_decision(context: dict[str, str], decision: rollout.Decision) -> None:
    status = decision.status
    fields = {
        **context,
        "phase": status.phase,
        "stage": status.stage,
        "stableRevision": status.stable_revision,
        "actions": [type(a).__name__ for a in decision.actions],
    }
    for event in decision.events:
        level = logging.WARNING if event.type == "Warning" else logging.INFO
        log.log(
            level, "%s: %s", event.reason, event.message, extra={**fields, "reason": event.reason}
        )


def _audit_record(context: dict[str, str], record: AIRecordSpec) -> None:
    audit.info(
        "record",
        extra={
            **context,
            "sequence": record.sequence,
            "digest": record.digest,
            "previousDigest": record.previous_digest,
            "record": record.model_dump(
                mode="json", by_alias=True, exclude={"evidence", "content", "signature"}
            ),
        },
    )


# ---- records: delivery, holding, the deletion record -----------------------------------------

RETENTION = rollout.Inputs.__dataclass_fields__["record_retention"].default


def _unrecorded_text(problem: str) -> str:
    return (
        f"audit records could not be written ({problem}); the rollout does not advance on "
        f"unrecorded decisions (a rollback still proceeds) until they are"
    )


def _mark_recorded(status: AIDeploymentStatus, problem: str, inputs: rollout.Inputs) -> None:
    """Condition RecordsWritten: False while records wait; True again once they are written."""
    held = cond.get_condition(status.conditions, RECORDED)
    if problem or (held is not None and held.status == "False"):
        status.conditions = cond.set_condition(
            status.conditions,
            RECORDED,
            not problem,
            "RecordsUndelivered" if problem else "RecordsDelivered",
            _unrecorded_text(problem) if problem else "every record is written",
            format_rfc3339(inputs.now),
            inputs.generation,
        )


async def _deliver(
    kube: KubeAdapter, recorder: Recorder, owner: Owner, outbox: list[dict[str, Any]]
) -> str:
    """Creates the outbox's records and removes those created from it; "" or why not."""
    remaining, problem = await asyncio.to_thread(recorder.deliver, outbox)
    if len(remaining) != len(outbox):
        await asyncio.to_thread(
            kube.patch_status,
            owner.namespace,
            owner.name,
            None,
            {"records": {"outbox": remaining}},
        )
    return problem


async def _hold_unrecorded(
    kube: KubeAdapter,
    body: dict[str, Any],
    previous: AIDeploymentStatus,
    problem: str,
    context: dict[str, str],
    inputs: rollout.Inputs,
) -> Outcome:
    """Records of earlier decisions could not be written: nothing new is decided or applied
    (status keeps its outbox); only the condition says why."""
    status = previous.model_copy(deep=True)
    _mark_recorded(status, problem, inputs)
    conditions = [c.model_dump(mode="json", by_alias=True) for c in status.conditions]
    await asyncio.to_thread(
        kube.patch_status,
        body["metadata"]["namespace"],
        body["metadata"]["name"],
        None,
        {"conditions": conditions},
    )
    log.warning("records not written, holding: %s", problem, extra=context)
    event = rollout.Event("Warning", "RecordsNotWritten", _unrecorded_text(problem))
    return Outcome(body=body, events=(event,), requeue_after=5.0)


async def record_deletion(
    kube: KubeAdapter,
    recorder: Recorder,
    body: dict[str, Any],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Closes the chain of a deleted AIDeployment with DeploymentDeleted, through the same
    outbox (sealed with a guarded status write, then created). Raises TransientError until
    done, so kopf keeps the finalizer and tries again."""
    metadata = body["metadata"]
    namespace, name, uid = metadata["namespace"], metadata["name"], metadata["uid"]
    status, problem = parse_status(body.get("status"))
    if problem:
        raise TransientError(f"status of {namespace}/{name} unreadable: {problem}")
    if not status.records.closed:
        subject = RecordSubject(namespace=namespace, name=name, uid=uid)
        at = now()
        closed = rollout.close_chain(status, subject, at, at + recorder.retention)
        closed.records.outbox = recorder.sign_outbox(closed.records.outbox)
        written = await asyncio.to_thread(
            kube.patch_status,
            namespace,
            name,
            metadata["resourceVersion"],
            {"records": dump_status(closed)["records"]},
        )
        if not written:
            raise TransientError(f"status of {namespace}/{name} changed: closing again")
        for record in closed.records.outbox[len(status.records.outbox) :]:
            _audit_record(
                {"aideployment": f"{namespace}/{name}", "uid": uid},
                AIRecordSpec.model_validate(record),
            )
        status = closed
    owner = Owner(name=name, namespace=namespace, uid=uid)
    problem = await _deliver(kube, recorder, owner, status.records.outbox)
    if problem:
        raise TransientError(f"closing records of {namespace}/{name}: {problem}")
