"""The Kubernetes API: read AIDeployments and their children, apply children, write status.

Synchronous (the official client); callers run these off the event loop with
asyncio.to_thread. Children are written with server-side apply under one field manager, so
applying the same object twice is a no-op, and status with a merge patch guarded by the
resourceVersion the decision was made from (a 409 means "decide again", never "overwrite").
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from kubernetes import client
from kubernetes.client.rest import ApiException

from aigate.adapters.cache import BodyCache, ChildCache, ChildSummary, summarize
from aigate.adapters.rest import Objects, object_path
from aigate.api.v1alpha1 import GROUP, PLURAL, VERSION, ChildRecords
from aigate.core.children import Child, Claim, Drift, LiveChild, claim
from aigate.core.rollout import Observed, WorkloadState
from aigate.core.workloads import Owner, child_object

FIELD_MANAGER = "aigate"
FIELD_MANAGER_QUERY = {"fieldManager": FIELD_MANAGER}  # for adapters/rest.py writes
_APPLY = "application/apply-patch+yaml"
_MERGE = "application/merge-patch+json"
WriteMode = Literal["create", "apply", "replace"]

log = logging.getLogger("aigate.kube")


class TransientError(Exception):
    """The API server failed in a way that retrying later can fix (5xx, 429, network)."""


class NameTakenError(TransientError):
    """A create found the name taken (an old canary still going away, or an object someone
    made meanwhile): looked at again next round, never taken over."""


class RejectedError(Exception):
    """The API server refused an object we built (4xx): retrying the same will not help."""


def _translate(error: ApiException, what: str) -> Exception:
    status = error.status or 0
    if status >= 500 or status in (0, 429):
        return TransientError(f"{what}: HTTP {status} {error.reason}")
    return RejectedError(f"{what}: HTTP {status}: {_api_message(error)}")


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except ValueError:
        return str(error.reason)


RequestHook = Callable[[str, str], None]  # (verb, resource)


class CountingApiClient(client.ApiClient):
    """The official client, reporting every request it sends as (verb, resource), so the
    operator's own load on the API server can be measured (aigate_api_requests_total)."""

    def __init__(self, on_request: RequestHook) -> None:
        super().__init__()
        self._on_request = on_request

    def call_api(self, method, url, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._on_request(method.upper(), resource_of(url))
        return super().call_api(method, url, *args, **kwargs)


_CHILD_RESOURCES = {"Deployment": ("apps/v1", "deployments"), "Service": ("v1", "services")}


def _child_path(kind: str, namespace: str, name: str | None = None) -> str:
    if kind not in _CHILD_RESOURCES:
        raise ValueError(f"aigate writes Deployments and Services, not {kind}")
    return object_path(*_CHILD_RESOURCES[kind], namespace, name)


def resource_of(url: str) -> str:
    """`https://h/apis/apps/v1/namespaces/ns/deployments/x` → `deployments`;
    `.../aideployments/x/status` → `aideployments/status`."""
    path = [p for p in urlsplit(url).path.split("/") if p]
    if path[:1] == ["api"]:
        path = path[2:]
    elif path[:1] == ["apis"]:
        path = path[3:]
    if path[:1] == ["namespaces"] and len(path) > 2:
        path = path[2:]
    if not path:
        return ""
    return f"{path[0]}/{path[2]}" if len(path) > 2 else path[0]


class KubeAdapter:
    """With caches (the operator), children are read from the watches and every write is
    remembered until the watch shows it; without (tools, tests), each read is a GET."""

    def __init__(
        self,
        api_client: client.ApiClient | None = None,
        children: ChildCache | None = None,
        bodies: BodyCache | None = None,
    ) -> None:
        self.api_client = api_client or client.ApiClient()
        self.objects = Objects(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.children = children
        self.bodies = bodies
        self._looked_up: dict[tuple[str, str, str], tuple[float, ChildSummary | None]] = {}

    # ---- the custom resource ---------------------------------------------------------

    def get_aideployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise _translate(error, f"get AIDeployment {namespace}/{name}") from error

    def patch_status(
        self, namespace: str, name: str, resource_version: str | None, status: dict[str, Any]
    ) -> bool:
        """Writes status if the object is still at resource_version (None: whatever it is
        now); False on conflict or if the object is gone."""
        body: dict[str, Any] = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            response = self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body,
                _content_type=_MERGE,
                _preload_content=False,
            )
        except ApiException as error:
            if error.status in (404, 409):
                return False
            raise _translate(error, f"patch status of AIDeployment {namespace}/{name}") from error
        if self.bodies is not None:
            self.bodies.wrote(json.loads(response.data))
        return True

    # ---- children --------------------------------------------------------------------

    def observe(
        self,
        owner: Owner,
        records: ChildRecords | None = None,
        known_revisions: frozenset[str] = frozenset(),
        unwatched: Mapping[tuple[str, str, str], ChildSummary] | None = None,
    ) -> Observed:
        """The children as the API server has them: each read raw (every field the server
        holds, including ones this client's models do not know), claimed as aigate's only by
        its recorded UID (core/children.py), and compared with what aigate last wrote."""
        conflicts: list[str] = []
        drift: list[Drift] = []
        workloads: dict[str, WorkloadState | None] = {}
        extra = unwatched or {}

        def read(child: Child) -> ChildSummary | None:
            kind, name = child_object(owner.name, child)
            live = self.read_child(kind, owner.namespace, name)
            return live if live is not None else extra.get((kind, owner.namespace, name))

        for track in ("stable", "canary"):
            live = read(track)
            claimed = self._claim(live, track, owner, records, known_revisions)
            workloads[track] = live.workload if claimed.ours and live else None
            conflicts.extend([claimed.conflict] if claimed.conflict else [])
            drift.extend([claimed.drift] if claimed.drift else [])
        live = read("service")
        claimed = self._claim(live, "service", owner, records, known_revisions)
        conflicts.extend([claimed.conflict] if claimed.conflict else [])
        drift.extend([claimed.drift] if claimed.drift else [])
        return Observed(
            stable=workloads["stable"],
            canary=workloads["canary"],
            conflicts=tuple(conflicts),
            drift=tuple(drift),
            service_ports=live.service_ports if live and claimed.ours else None,
        )

    @staticmethod
    def _claim(
        live: ChildSummary | None,
        child: Child,
        owner: Owner,
        records: ChildRecords | None,
        known_revisions: frozenset[str],
    ) -> Claim:
        if live is None:
            return Claim(ours=False)
        return claim(live_child(live, child), records, owner.uid, known_revisions)

    def read_child(self, kind: str, namespace: str, name: str) -> ChildSummary | None:
        """From the watches when the operator has them, else a GET."""
        if self.children is not None:
            return self.children.get(kind, namespace, name)
        return self.get_child(kind, namespace, name)

    LOOKUP_TTL = 10.0

    def look_up(self, kind: str, namespace: str, name: str) -> ChildSummary | None:
        """A name the watches do not show, read from the API server; the answer is reused
        for LOOKUP_TTL seconds (a round dropped on a status conflict is decided again at
        once: one read serves both)."""
        key, now = (kind, namespace, name), time.monotonic()
        cached = self._looked_up.get(key)
        if cached is not None and now - cached[0] < self.LOOKUP_TTL:
            return cached[1]
        found = self.get_child(kind, namespace, name)
        if len(self._looked_up) > 1024:
            self._looked_up = {
                k: v for k, v in self._looked_up.items() if now - v[0] < self.LOOKUP_TTL
            }
        self._looked_up[key] = (now, found)
        return found

    def get_child(self, kind: str, namespace: str, name: str) -> ChildSummary | None:
        """A GET: also for names the watches cannot show (objects without aigate's label)."""
        try:
            raw = self.objects.get(_child_path(kind, namespace, name))
        except ApiException as error:
            if error.status == 404:
                return None
            raise _translate(error, f"get {kind} {namespace}/{name}") from error
        return summarize(raw, kind)

    def write(self, manifest: dict[str, Any], mode: WriteMode) -> dict[str, Any]:
        """Writes a Deployment or Service of aigate's and returns it as stored.

        create: POST (a 409 if anything has the name: aigate never takes over an object it
        did not create); apply: server-side apply under aigate's field manager; replace: PUT
        of the whole object, which also drops fields someone else added (drift)."""
        kind = manifest["kind"]
        name = manifest["metadata"]["name"]
        namespace = manifest["metadata"]["namespace"]
        try:
            if mode == "create":
                stored = self.objects.request(
                    "POST", _child_path(kind, namespace), manifest, FIELD_MANAGER_QUERY
                )
            elif mode == "replace":
                stored = self.objects.request(
                    "PUT", _child_path(kind, namespace, name), manifest, FIELD_MANAGER_QUERY
                )
            else:
                stored = self.objects.request(
                    "PATCH",
                    _child_path(kind, namespace, name),
                    manifest,
                    {**FIELD_MANAGER_QUERY, "force": "true"},
                    _APPLY,
                )
        except ApiException as error:
            if mode == "create" and error.status == 409:
                # Something has the name (an old canary still being deleted, or an object
                # made meanwhile): look again; the next observe says which.
                raise NameTakenError(f"create {kind} {namespace}/{name}: name taken") from error
            raise _translate(error, f"{mode} {kind} {namespace}/{name}") from error
        if self.children is not None:
            self.children.wrote(stored, kind)
        return stored

    def delete(self, namespace: str, name: str) -> None:
        """Deletes a Deployment we own; its pods go first (foreground), so "gone" means gone."""
        try:
            answer = self.objects.request(
                "DELETE",
                _child_path("Deployment", namespace, name),
                query={"propagationPolicy": "Foreground"},
            )
        except ApiException as error:
            if error.status == 404:
                return
            raise _translate(error, f"delete Deployment {namespace}/{name}") from error
        if self.children is not None and answer.get("kind") == "Deployment":
            self.children.wrote(answer, "Deployment")  # now going away

    def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret, decoded. The value is never logged."""
        try:
            secret = self.objects.get(object_path("v1", "secrets", namespace, name))
        except ApiException as error:
            raise _translate(error, f"read Secret {namespace}/{name}") from error
        data = secret.get("data") or {}
        if key not in data:
            raise RejectedError(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key]).decode()


def live_child(live: ChildSummary, child: Child) -> LiveChild:
    return LiveChild(
        child=child,
        kind=live.kind,
        name=live.name,
        uid=live.uid,
        controller_uid=live.controller_uid,
        revision=live.revision,
        digest=live.digest,
        changed_fields=live.changed_fields,
        deleting=live.deleting,
    )
