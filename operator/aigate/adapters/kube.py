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
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

from kubernetes import client
from kubernetes.client.rest import ApiException

from aigate.api.v1alpha1 import GROUP, PLURAL, VERSION, ChildRecords
from aigate.core.children import (
    Child,
    Claim,
    Drift,
    LiveChild,
    changed_fields,
    claim,
    content_digest,
)
from aigate.core.rollout import Observed, WorkloadState
from aigate.core.workloads import LABEL_REVISION, LABEL_VERSION, Owner, deployment_name

FIELD_MANAGER = "aigate"
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
    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self.api_client = api_client or client.ApiClient()
        self.apps = client.AppsV1Api(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)

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
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, body, _content_type=_MERGE
            )
        except ApiException as error:
            if error.status in (404, 409):
                return False
            raise _translate(error, f"patch status of AIDeployment {namespace}/{name}") from error
        return True

    # ---- children --------------------------------------------------------------------

    def observe(
        self,
        owner: Owner,
        records: ChildRecords | None = None,
        known_revisions: frozenset[str] = frozenset(),
    ) -> Observed:
        """The children as the API server has them: each read raw (every field the server
        holds, including ones this client's models do not know), claimed as aigate's only by
        its recorded UID (core/children.py), and compared with what aigate last wrote."""
        conflicts: list[str] = []
        drift: list[Drift] = []
        workloads: dict[str, WorkloadState | None] = {}
        for track in ("stable", "canary"):
            raw = self._read("Deployment", deployment_name(owner.name, track), owner.namespace)
            claimed = self._claim(raw, track, "Deployment", owner, records, known_revisions)
            workloads[track] = _workload(raw) if claimed.ours and raw else None
            conflicts.extend([claimed.conflict] if claimed.conflict else [])
            drift.extend([claimed.drift] if claimed.drift else [])
        raw = self._read("Service", owner.name, owner.namespace)
        claimed = self._claim(raw, "service", "Service", owner, records, known_revisions)
        conflicts.extend([claimed.conflict] if claimed.conflict else [])
        drift.extend([claimed.drift] if claimed.drift else [])
        return Observed(
            stable=workloads["stable"],
            canary=workloads["canary"],
            conflicts=tuple(conflicts),
            drift=tuple(drift),
            service_ports=_service_ports(raw) if raw and claimed.ours else None,
        )

    @staticmethod
    def _claim(
        raw: dict[str, Any] | None,
        child: Child,
        kind: str,
        owner: Owner,
        records: ChildRecords | None,
        known_revisions: frozenset[str],
    ) -> Claim:
        if raw is None:
            return Claim(ours=False)
        return claim(live_child(raw, child, kind), records, owner.uid, known_revisions)

    def _read(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        read = {
            "Deployment": self.apps.read_namespaced_deployment,
            "Service": self.core.read_namespaced_service,
        }[kind]
        try:
            response = read(name, namespace, _preload_content=False)
        except ApiException as error:
            if error.status == 404:
                return None
            raise _translate(error, f"get {kind} {namespace}/{name}") from error
        return json.loads(response.data)

    def write(self, manifest: dict[str, Any], mode: WriteMode) -> dict[str, Any]:
        """Writes a Deployment or Service of aigate's and returns it as stored.

        create: POST (a 409 if anything has the name: aigate never takes over an object it
        did not create); apply: server-side apply under aigate's field manager; replace: PUT
        of the whole object, which also drops fields someone else added (drift)."""
        kind = manifest["kind"]
        name = manifest["metadata"]["name"]
        namespace = manifest["metadata"]["namespace"]
        api = {"Deployment": ("deployment", self.apps), "Service": ("service", self.core)}.get(kind)
        if api is None:
            raise ValueError(f"aigate writes Deployments and Services, not {kind}")
        noun, group = api
        common = {"field_manager": FIELD_MANAGER, "_preload_content": False}
        try:
            if mode == "create":
                response = getattr(group, f"create_namespaced_{noun}")(
                    namespace, manifest, **common
                )
            elif mode == "replace":
                response = getattr(group, f"replace_namespaced_{noun}")(
                    name, namespace, manifest, **common
                )
            else:
                response = getattr(group, f"patch_namespaced_{noun}")(
                    name, namespace, manifest, force=True, _content_type=_APPLY, **common
                )
        except ApiException as error:
            if mode == "create" and error.status == 409:
                # Something has the name (an old canary still being deleted, or an object
                # made meanwhile): look again; the next observe says which.
                raise NameTakenError(f"create {kind} {namespace}/{name}: name taken") from error
            raise _translate(error, f"{mode} {kind} {namespace}/{name}") from error
        return json.loads(response.data)

    def delete(self, namespace: str, name: str) -> None:
        """Deletes a Deployment we own; its pods go first (foreground), so "gone" means gone."""
        try:
            self.apps.delete_namespaced_deployment(name, namespace, propagation_policy="Foreground")
        except ApiException as error:
            if error.status == 404:
                return
            raise _translate(error, f"delete Deployment {namespace}/{name}") from error

    def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret, decoded. The value is never logged."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            raise _translate(error, f"read Secret {namespace}/{name}") from error
        data = secret.data or {}
        if key not in data:
            raise RejectedError(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key]).decode()


def live_child(raw: dict[str, Any], child: Child, kind: str) -> LiveChild:
    metadata = raw.get("metadata") or {}
    controller = next((r for r in metadata.get("ownerReferences") or [] if r.get("controller")), {})
    return LiveChild(
        child=child,
        kind=kind,
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        controller_uid=str(controller.get("uid", "")),
        revision=str((metadata.get("annotations") or {}).get(LABEL_REVISION, "")),
        digest=content_digest(raw),
        changed_fields=changed_fields(metadata.get("managedFields") or ()),
        deleting=bool(metadata.get("deletionTimestamp")),
    )


def _service_ports(raw: dict[str, Any]) -> tuple[int, int] | None:
    ports = (raw.get("spec") or {}).get("ports") or []
    if len(ports) != 1 or not isinstance(ports[0].get("targetPort"), int):
        return None  # not a shape aigate writes: written again
    return int(ports[0].get("port") or 0), ports[0]["targetPort"]


def _workload(raw: dict[str, Any]) -> WorkloadState:
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
        template=spec.get("template") or {},
    )
