"""What the watch streams say about aigate's children, so a reconcile reads no object.

The operator's watches (kopf) feed an index of compact summaries of aigate's Deployments
and Services: what a decision needs (revision, readiness, owner, content digest), not the
objects. A summary is made once per watch event, not once per reconcile.

Read-your-writes: what aigate itself wrote is remembered until the watch shows it, so the
round after a write never decides from the state before it (and never writes twice).
Newer wins by resourceVersion (etcd revisions: integers in every API server aigate runs
against; a non-integer one is never taken as newer than what the watch shows).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aigate.core.children import changed_fields, content_digest
from aigate.core.rollout import WorkloadState
from aigate.core.workloads import LABEL_REVISION, LABEL_VERSION

Key = tuple[str, str, str]  # (kind, namespace, name)


@dataclass(frozen=True)
class ChildSummary:
    """One Deployment or Service as the API server last had it, reduced to what aigate
    decides on."""

    kind: str
    namespace: str
    name: str
    uid: str
    resource_version: str
    controller_uid: str
    revision: str
    digest: str
    changed_fields: tuple[str, ...]
    deleting: bool
    workload: WorkloadState | None = None  # Deployments
    service_ports: tuple[int, int] | None = None  # Services of the shape aigate writes

    @property
    def key(self) -> Key:
        return (self.kind, self.namespace, self.name)


def summarize(raw: Mapping[str, Any], kind: str) -> ChildSummary:
    metadata = raw.get("metadata") or {}
    controller = next((r for r in metadata.get("ownerReferences") or [] if r.get("controller")), {})
    return ChildSummary(
        kind=kind,
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        resource_version=str(metadata.get("resourceVersion", "")),
        controller_uid=str(controller.get("uid", "")),
        revision=str((metadata.get("annotations") or {}).get(LABEL_REVISION, "")),
        digest=content_digest(raw),
        changed_fields=changed_fields(metadata.get("managedFields") or ()),
        deleting=bool(metadata.get("deletionTimestamp")),
        workload=workload_of(raw) if kind == "Deployment" else None,
        service_ports=service_ports_of(raw) if kind == "Service" else None,
    )


def service_ports_of(raw: Mapping[str, Any]) -> tuple[int, int] | None:
    ports = (raw.get("spec") or {}).get("ports") or []
    if len(ports) != 1 or not isinstance(ports[0].get("targetPort"), int):
        return None  # not a shape aigate writes: written again
    return int(ports[0].get("port") or 0), ports[0]["targetPort"]


def workload_of(raw: Mapping[str, Any]) -> WorkloadState:
    metadata, spec, status = raw["metadata"], raw.get("spec") or {}, raw.get("status") or {}
    if metadata.get("deletionTimestamp"):
        # Being deleted (a cancelled canary): report it, but never as a usable workload.
        return WorkloadState(
            revision="",
            version="",
            replicas=0,
            ready_replicas=int(status.get("readyReplicas") or 0),
            updated_replicas=0,
            total_replicas=int(status.get("replicas") or 0),
            observed_current=False,
            terminating=True,
        )
    return WorkloadState(
        revision=str((metadata.get("annotations") or {}).get(LABEL_REVISION, "")),
        version=str((metadata.get("labels") or {}).get(LABEL_VERSION, "")),
        replicas=int(spec.get("replicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        total_replicas=int(status.get("replicas") or 0),
        observed_current=int(status.get("observedGeneration") or 0)
        >= int(metadata.get("generation") or 0),
    )


def newer(a: str, b: str) -> bool:
    """resourceVersion a is later than b (False when either is not an integer)."""
    return a.isdigit() and b.isdigit() and int(a) > int(b)


class Overlay:
    """aigate's own writes, each kept until the watch shows that object at least as new
    (or shows it gone), and never longer than MAX_PENDING_SECONDS (the watch then decides)."""

    MAX_PENDING_SECONDS = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._written: dict[Key, tuple[str, float, Any]] = {}
        self._own: dict[Key, deque[str]] = {}
        self._clock = clock
        self._lock = threading.Lock()  # writes are remembered from worker threads

    def wrote(self, key: Key, resource_version: str, value: Any) -> None:
        with self._lock:
            self._written[key] = (resource_version, self._clock(), value)
            self._own.setdefault(key, deque(maxlen=8)).append(resource_version)

    def pending(self, key: Key, watched_version: str | None) -> tuple[bool, Any]:
        """(True, what aigate wrote) while the watch shows `key` older than that (or not
        at all: watched_version None)."""
        with self._lock:
            entry = self._written.get(key)
            if entry is None:
                return False, None
            version, at, value = entry
            expired = self._clock() - at > self.MAX_PENDING_SECONDS
            caught_up = watched_version is not None and not newer(version, watched_version)
            if expired or caught_up:
                del self._written[key]
                return False, None
            return True, value

    def is_own(self, key: Key, resource_version: str) -> bool:
        """This version of `key` is the result of one of aigate's own recent writes."""
        with self._lock:
            return resource_version in self._own.get(key, ())

    def forget(self, key: Key) -> None:
        """The object is gone (or no longer aigate's concern)."""
        with self._lock:
            self._written.pop(key, None)
            self._own.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._written)


# The kopf index: key -> the summaries the watch holds under it (one per object).
WatchIndex = Mapping[Key, Iterable[ChildSummary]]


class ChildCache:
    """The watch's summaries of aigate's children, plus aigate's writes not yet watched."""

    def __init__(self) -> None:
        self._index: WatchIndex = {}
        self.overlay = Overlay()

    def attach(self, index: WatchIndex) -> None:
        """The live index the watches fill (kopf keeps it current)."""
        self._index = index

    def get(self, kind: str, namespace: str, name: str) -> ChildSummary | None:
        key = (kind, namespace, name)
        watched = next(iter(self._index.get(key, ())), None)
        pending, written = self.overlay.pending(
            key, watched.resource_version if watched is not None else None
        )
        return written if pending else watched

    def wrote(self, raw: Mapping[str, Any], kind: str) -> None:
        """aigate wrote (or asked to delete) this object: the API server's answer."""
        summary = summarize(raw, kind)
        self.overlay.wrote(summary.key, summary.resource_version, summary)


class BodyCache:
    """The AIDeployment as kopf's watch holds it, or as aigate's last status write left it
    when that is newer; plus what aigate deferred writing to its status (`defer`)."""

    def __init__(self) -> None:
        self.overlay = Overlay()
        # (kind, namespace, name, uid) -> a status merge patch not written yet: keyed by UID
        # too, so an object recreated under the same name never shares one.
        self._deferred: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def defer(self, body: Mapping[str, Any], patch: Mapping[str, Any]) -> None:
        """A status merge patch (without nulls) to go with the resource's next status
        write, added to one deferred before. Only for what a crash may lose without harm:
        the next reconcile reads it as written (`deferred`), and its status write carries
        it."""
        with self._lock:
            key = _uid_key(body)
            self._deferred[key] = compose_patches(self._deferred.get(key, {}), patch)

    def deferred(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """The status patch deferred for this object (this UID), if any."""
        with self._lock:
            return self._deferred.get(_uid_key(body))

    def written(self, body: Mapping[str, Any]) -> None:
        """A status write carried what was deferred."""
        with self._lock:
            self._deferred.pop(_uid_key(body), None)

    def forget(self, body: Mapping[str, Any]) -> None:
        """The object is gone (or no longer aigate's concern)."""
        self.overlay.forget(key_of(body))
        self.written(body)

    def current(self, watched: Mapping[str, Any]) -> dict[str, Any]:
        metadata = watched.get("metadata") or {}
        pending, written = self.overlay.pending(
            key_of(watched), str(metadata.get("resourceVersion", ""))
        )
        if pending and written["metadata"].get("uid") == metadata.get("uid"):
            return written
        return dict(watched)

    def wrote(self, body: Mapping[str, Any]) -> None:
        metadata = body.get("metadata") or {}
        self.overlay.wrote(key_of(body), str(metadata.get("resourceVersion", "")), dict(body))


def _uid_key(body: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (*key_of(body), str((body.get("metadata") or {}).get("uid", "")))


def merge_patch(target: Any, patch: Any) -> Any:
    """`patch` applied to `target` as a JSON merge patch (RFC 7386: null removes a key)."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


def compose_patches(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """One merge patch doing what `first` then `second` do, for a `first` without nulls (a
    null followed by an object cannot be said in one merge patch)."""
    result = dict(first)
    for name, value in second.items():
        held = result.get(name)
        if isinstance(value, Mapping) and isinstance(held, Mapping):
            result[name] = compose_patches(held, value)
        else:
            result[name] = value
    return result


def key_of(body: Mapping[str, Any]) -> Key:
    metadata = body.get("metadata") or {}
    return ("AIDeployment", str(metadata.get("namespace", "")), str(metadata.get("name", "")))
