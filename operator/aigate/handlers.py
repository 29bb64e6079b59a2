"""kopf wiring: the only module that imports kopf. Thin on purpose.

Every AIDeployment gets one daemon that reconciles it, so reconciles of one object never
overlap. Watch events (the AIDeployment itself, or one of its Deployments changing) only
wake that daemon; the daemon also looks again after the decision's requeue_after. Events
are posted explicitly from the decision (kopf's log-to-Event posting is off for INFO).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf

from aigate import metrics, reconciler
from aigate.adapters import prometheus
from aigate.adapters.admission import ApprovalPolicyCheck
from aigate.adapters.approver_keys import ApproverKeys
from aigate.adapters.cache import BodyCache, ChildCache, ChildSummary, summarize
from aigate.adapters.kube import CountingApiClient, KubeAdapter, RejectedError, TransientError
from aigate.adapters.records import Recorder, RecordStore
from aigate.adapters.signing import KeyStore
from aigate.api.v1alpha1 import GROUP, PLURAL, VERSION
from aigate.core.workloads import LABEL_OWNER, MANAGED_BY, OPERATOR_NAME
from aigate.measurer import Measurer

log = logging.getLogger("aigate.handlers")

FINALIZER = "aigate.dev/finalizer"
RETRY_AFTER_TRANSIENT_ERROR = 5.0
EVENT_POSTERS = 16  # kopf's Event posting workers (settings.posting.worker_limit)
LIST_PAGE = 200  # objects per page when kopf lists a resource (settings.watching.chunk_size)

_wakers: dict[tuple[str, str], asyncio.Event] = {}
_kube: KubeAdapter | None = None
# What the watches hold (children reduced to summaries, kopf's live AIDeployment bodies),
# plus aigate's writes the watches have not shown yet: a reconcile reads nothing.
_children = ChildCache()
_bodies = BodyCache()
# At most this many reconciles run at once (their parsed specs, statuses and decisions in
# memory, and their turns on the worker threads): with 1,000 resources woken together,
# memory stays bounded and each round finishes sooner. A round waiting on Prometheus
# gives its slot back meanwhile.
RECONCILE_SLOTS = 32
_slots: asyncio.Semaphore | None = None


def _reconcile_slots() -> asyncio.Semaphore:
    global _slots  # noqa: PLW0603 (made on the operator's loop, on first use)
    if _slots is None:
        _slots = asyncio.Semaphore(RECONCILE_SLOTS)
    return _slots


@contextlib.asynccontextmanager
async def _slot_lent() -> AsyncIterator[None]:
    """While a round waits on Prometheus, another resource may use its slot."""
    slots = _reconcile_slots()
    slots.release()
    try:
        yield
    finally:
        await slots.acquire()


# `aigate run --require-approval-policy`: the policy's name, or None (not checked).
_required_policy: str | None = None
_policy_check: ApprovalPolicyCheck | None = None
_policy_task: asyncio.Task[None] | None = None

# `aigate run --approver-keys NAMESPACE/NAME`: the approver key registry, or None.
_approver_keys_ref: str | None = None
_approver_keys: ApproverKeys | None = None
_keys_task: asyncio.Task[None] | None = None


# `aigate run --records-namespace/--record-retention`: where AIRecords live, how long.
_records_namespace = "aigate-system"
_record_retention = timedelta(days=400)
_recorder: Recorder | None = None
_sweep_task: asyncio.Task[None] | None = None


def configure_records(namespace: str, retention: timedelta) -> None:
    global _records_namespace, _record_retention
    _records_namespace, _record_retention = namespace, retention


def require_approval_policy(name: str | None) -> None:
    global _required_policy  # noqa: PLW0603 (process-wide setting, made once before kopf runs)
    _required_policy = name or None


def use_approver_keys(reference: str | None) -> None:
    global _approver_keys_ref  # noqa: PLW0603 (process-wide setting, made once before kopf runs)
    _approver_keys_ref = reference or None


def _waker(namespace: str, name: str) -> asyncio.Event:
    return _wakers.setdefault((namespace, name), asyncio.Event())


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _kube  # noqa: PLW0603 (one client per process, made once kopf has logged in)
    # kopf's own bookkeeping goes to status, never to the user's annotations, so Argo CD
    # and Flux see no drift (DESIGN.md section 2).
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    # aigate has no create/update handlers (one daemon decides from the whole object), so
    # kopf needs no diff base: none is stored (no copy of the spec in status, no patch per
    # spec change); its deletion handler needs none.
    settings.persistence.diffbase_storage = NoDiffBase()
    # Only aigate's children are watched (server-side selector): not every Deployment and
    # Service of the cluster. Names they do not show are looked up before a write.
    children = f"{MANAGED_BY}={OPERATOR_NAME}"
    settings.watching.label_selectors["apps", "v1", "deployments"] = children
    settings.watching.label_selectors["", "v1", "services"] = children
    # Logs are not Events: only kopf's own warnings and errors become Events; the
    # decisions' Events are posted explicitly below.
    settings.posting.level = logging.WARNING
    # kopf posts each object's Events from its own worker, over a pool without a connection
    # limit: a thousand rollouts moving at once opened a TLS connection (256 KB of buffers,
    # a handshake) per object. A few posters, each leaving as soon as its object's Events
    # are out, keep them in order per object, a little later under load.
    settings.posting.worker_limit = EVENT_POSTERS
    settings.posting.idle_timeout = 0.1
    # A post the API server refuses is retried briefly (kopf's default holds a poster for
    # 54 s): Events are for people; the decision is in status and in the AIRecords.
    settings.posting.default_backoffs = (1, 2, 5)
    # A relist (after a watch expired) parses the whole list at once: in pages, the peak is
    # one page on top of the bodies kopf holds, not a second copy of them all.
    settings.watching.chunk_size = LIST_PAGE
    # Watches that hang silently are the classic operator failure: bound them.
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    _kube = KubeAdapter(
        CountingApiClient(lambda verb, resource: metrics.API_REQUESTS.labels(verb, resource).inc()),
        children=_children,
        bodies=_bodies,
    )


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: every object looks unchanged since last handled (aigate's daemon
    compares what it needs itself), so nothing is written for it."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return self.build(body=body)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def load_record_key(**_: Any) -> None:
    """The record-signing key (made on first start) and the retention sweep. Without a
    key no record can be signed: the operator does not start (the error says why)."""
    global _recorder, _sweep_task  # noqa: PLW0603 (one per process, made at startup)
    assert _kube is not None
    keys = KeyStore(_kube.api_client, _records_namespace)
    signer = await asyncio.to_thread(keys.load_or_create)
    store = RecordStore(_kube.api_client, _records_namespace)
    _recorder = Recorder(store=store, signer=signer, retention=_record_retention)
    _sweep_task = asyncio.create_task(_sweep(store, _record_retention))


def sweep_interval(retention: timedelta) -> float:
    """Often enough that a record outlives its expiresAt by a small part of the retention."""
    return min(3600.0, max(2.0, retention.total_seconds() / 10))


async def _sweep(store: RecordStore, retention: timedelta) -> None:
    while True:
        try:
            deleted = await asyncio.to_thread(store.delete_expired, datetime.now(UTC))
            if deleted:
                log.info("deleted %d expired record(s) from %s", deleted, store.namespace)
        except Exception:
            log.exception("deleting expired records failed")
        await asyncio.sleep(sweep_interval(retention))


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def deleted(body: kopf.Body, **_: Any) -> None:
    """Closes the record chain with DeploymentDeleted; until that is written the finalizer
    stays (the deletion waits: a deletion is a decision too)."""
    assert _kube is not None and _recorder is not None
    try:
        await reconciler.record_deletion(_kube, _recorder, dict(body))
    except (TransientError, RejectedError) as error:
        raise kopf.TemporaryError(str(error), delay=RETRY_AFTER_TRANSIENT_ERROR) from error


@kopf.on.startup()
async def watch_approval_policy(**_: Any) -> None:
    """Reads the required approval policy on a timer; every resource looks again when what
    the API server holds changed, so a policy applied or deleted is noticed within a TTL."""
    global _policy_check, _policy_task  # noqa: PLW0603 (one per process, made at startup)
    if _required_policy is None:
        return
    _policy_check = ApprovalPolicyCheck(_required_policy)
    _policy_task = asyncio.create_task(_refresh_policy(_policy_check))


async def _refresh_policy(check: ApprovalPolicyCheck) -> None:
    await _refresh_every(check.ttl, check.refresh, f"approval policy {check.policy_name}")


async def _refresh_every(ttl: float, read: Callable[[], object], what: str) -> None:
    """Calls `read` every `ttl` seconds; when what it returns changes, every resource looks
    again (the first read only sets the baseline)."""
    seen: object = None
    while True:
        try:
            now_read = await asyncio.to_thread(read)
            if now_read != seen:
                if seen is not None:
                    log.warning("%s changed: looking again", what)
                    for waker in list(_wakers.values()):
                        waker.set()
                seen = now_read
        except Exception:
            log.exception("reading the %s failed", what)
        await asyncio.sleep(ttl)


@kopf.on.startup()
async def watch_approver_keys(**_: Any) -> None:
    """Reads the approver key registry on a timer; every resource looks again when it
    changed, so a key registered (or removed) counts within a TTL."""
    global _approver_keys, _keys_task  # noqa: PLW0603 (one per process, made at startup)
    if _approver_keys_ref is None:
        return
    _approver_keys = ApproverKeys(_approver_keys_ref)
    _keys_task = asyncio.create_task(_refresh_keys(_approver_keys))


async def _refresh_keys(keys: ApproverKeys) -> None:
    await _refresh_every(keys.ttl, keys.refresh, keys.source)


@kopf.on.cleanup()
async def stop_watching_policy(**_: Any) -> None:
    for task in (_policy_task, _keys_task, _sweep_task):
        if task is not None:
            task.cancel()
    prometheus.POOL.close()  # its sessions, and the CA files written for them


@kopf.on.event(GROUP, VERSION, PLURAL)
async def aideployment_changed(namespace: str, name: str, meta: kopf.Meta, **_: Any) -> None:
    """Wakes the resource's daemon, unless the event only shows aigate's own status write
    (that round already decided from what it wrote). Async on purpose: kopf runs sync
    handlers in worker threads, and an asyncio.Event must be set on its own loop."""
    key, version = ("AIDeployment", namespace, name), str(meta.get("resourceVersion", ""))
    _bodies.overlay.pending(key, version)  # drops aigate's write once the watch shows it
    if not _bodies.overlay.is_own(key, version):
        _waker(namespace, name).set()


@kopf.index("apps", "v1", "deployments", labels={MANAGED_BY: OPERATOR_NAME})
async def aigate_deployments(body: kopf.Body, **_: Any) -> dict[Any, ChildSummary]:
    """aigate's Deployments as reconciles read them (a summary, made once per event)."""
    summary = summarize(body, "Deployment")
    return {summary.key: summary}


@kopf.index("", "v1", "services", labels={MANAGED_BY: OPERATOR_NAME})
async def aigate_services(body: kopf.Body, **_: Any) -> dict[Any, ChildSummary]:
    summary = summarize(body, "Service")
    return {summary.key: summary}


@kopf.on.event("apps", "v1", "deployments", labels={MANAGED_BY: OPERATOR_NAME})
@kopf.on.event("", "v1", "services", labels={MANAGED_BY: OPERATOR_NAME})
async def child_changed(
    namespace: str, name: str, labels: dict[str, str], body: kopf.Body, type: str, **_: Any
) -> None:
    """A child changed (rolled, scaled, edited by someone): its owner looks again at once,
    so drift is reverted without waiting for the next periodic reconcile. (kopf updated the
    index before this runs: the owner reads the new state.)"""
    key = (str(body.get("kind", "")), namespace, name)
    if type == "DELETED":
        _children.overlay.forget(key)
    else:  # drops aigate's write once the watch shows it
        _children.overlay.pending(key, str(body.get("metadata", {}).get("resourceVersion", "")))
    owner = labels.get(LABEL_OWNER)
    if owner:
        _waker(namespace, owner).set()


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5.0)
async def drive(
    namespace: str,
    name: str,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    aigate_deployments: kopf.Index[Any, ChildSummary],
    aigate_services: kopf.Index[Any, ChildSummary],
    **_: Any,
) -> None:
    """`body` is kopf's live view of the object: each watch event updates it."""
    assert _kube is not None
    _children.attach(_Indexes(aigate_deployments, aigate_services))
    wake = _waker(namespace, name)
    subject = f"{namespace}/{name}"
    measurer = Measurer(functools.partial(reconciler.take, _kube, body), wake, subject=subject)
    measurer.start()
    try:
        while not stopped:
            wake.clear()
            # A measurement that falls due while the round waits is taken then, not when
            # a slot frees up or the API server has taken the round's writes.
            measurer.plan(_next_schedule(_kube, subject, body))
            # What is due now is taken before queuing for a slot: a round that waited for it
            # inside would lend its slot and hold its parsed state meanwhile (all rounds
            # queued on Prometheus at once under load).
            await measurer.through(datetime.now(UTC))
            async with _reconcile_slots():
                delay = await _reconcile_once(_kube, namespace, name, body, measurer)
            if delay is None:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_woken_or_stopped(wake, stopped), timeout=delay)
    finally:
        await measurer.stop()
        deleted = kopf.DaemonStoppingReason.RESOURCE_DELETED
        if stopped and not (stopped.reason is not None and stopped.reason & deleted):
            await _flush_deferred(_kube, namespace, name, body)
        _wakers.pop((namespace, name), None)
        _bodies.forget(body)
        # The daemon ends when the object is deleted (or the operator stops): its series go.
        metrics.forget(namespace, name)


async def _woken_or_stopped(wake: asyncio.Event, stopped: kopf.DaemonStopped) -> None:
    """Returns when the resource is woken or its daemon is asked to stop (so a stopping
    operator writes what it deferred instead of being cancelled mid-wait)."""
    waits = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(_stopping(stopped))]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()


async def _stopping(stopped: kopf.DaemonStopped) -> None:
    await stopped.wait()


async def _flush_deferred(kube: KubeAdapter, namespace: str, name: str, body: kopf.Body) -> None:
    """The operator is stopping: what the last round deferred is written now (bounded: kopf
    cancels a daemon that takes longer than its cancellation timeout)."""
    try:
        await asyncio.wait_for(reconciler.flush_deferred(kube, body), timeout=4.0)
    except Exception:
        log.exception(
            "writing deferred status failed", extra={"aideployment": f"{namespace}/{name}"}
        )


class _Indexes:
    """Both kopf indexes read as one mapping: key -> the summaries held under it."""

    def __init__(self, *indexes: kopf.Index[Any, ChildSummary]) -> None:
        self._indexes = indexes

    def get(self, key: Any, default: Any = ()) -> Any:
        for index in self._indexes:
            if key in index:
                return index[key]
        return default


def _next_schedule(kube: KubeAdapter, subject: str, body: kopf.Body) -> reconciler.Schedule | None:
    try:
        return reconciler.next_schedule(kube, body, datetime.now(UTC))
    except Exception:
        # The round measures for itself then (and reports whatever is wrong).
        log.exception("planning the next measurement failed", extra={"aideployment": subject})
        return None


async def _reconcile_once(
    kube: KubeAdapter,
    namespace: str,
    name: str,
    body: kopf.Body,
    measurer: Measurer | None = None,
) -> float | None:
    """Returns the delay before the next reconcile, or None when the object is gone."""
    with metrics.RECONCILE_SECONDS.time():
        try:
            outcome = await reconciler.reconcile(
                kube,
                namespace,
                name,
                watched=body,
                waiting=_slot_lent,
                approval_policy=_policy_check,
                approver_keys=_approver_keys,
                recorder=_recorder,
                measurer=measurer,
            )
        except TransientError as error:
            metrics.RECONCILES.labels(result="transient-error").inc()
            log.warning("will retry: %s", error, extra={"aideployment": f"{namespace}/{name}"})
            return RETRY_AFTER_TRANSIENT_ERROR
        except Exception:
            # Bad input must never crash the operator: log, count, and look again later.
            metrics.RECONCILES.labels(result="error").inc()
            log.exception("reconcile failed", extra={"aideployment": f"{namespace}/{name}"})
            return RETRY_AFTER_TRANSIENT_ERROR * 6
    if outcome is None:
        return None
    metrics.MEASUREMENTS_AHEAD.labels(used="true").inc(outcome.counted)
    metrics.MEASUREMENTS_AHEAD.labels(used="false").inc(outcome.offered - outcome.counted)
    metrics.RECONCILES.labels(result="ok").inc()
    for event in outcome.events:
        metrics.EVENTS.labels(reason=event.reason).inc()
        kopf.event(outcome.body, type=event.type, reason=event.reason, message=event.message)
    try:
        metrics.observe_outcome(
            namespace,
            name,
            outcome.body.get("status"),
            outcome.status,
            outcome.events,
            outcome.measurements,
        )
    except Exception:
        # Metrics observe; they must never stop a rollout.
        log.exception("updating metrics failed", extra={"aideployment": f"{namespace}/{name}"})
    return outcome.requeue_after
