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
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from aigate.api.v1alpha1 import GROUP, PLURAL, VERSION
from aigate.core.rollout import Observed, WorkloadState
from aigate.core.workloads import LABEL_REVISION, LABEL_VERSION, Owner, deployment_name

FIELD_MANAGER = "aigate"
_APPLY = "application/apply-patch+yaml"
_MERGE = "application/merge-patch+json"

log = logging.getLogger("aigate.kube")


class TransientError(Exception):
    """The API server failed in a way that retrying later can fix (5xx, 429, network)."""


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

    def observe(self, owner: Owner) -> Observed:
        conflicts: list[str] = []
        stable = self._workload(owner, deployment_name(owner.name, "stable"), conflicts)
        canary = self._workload(owner, deployment_name(owner.name, "canary"), conflicts)
        try:
            service = self.core.read_namespaced_service(owner.name, owner.namespace)
            if not _owned_by(service.metadata, owner):
                conflicts.append(f"Service {owner.name}")
        except ApiException as error:
            if error.status != 404:
                raise _translate(error, f"get Service {owner.namespace}/{owner.name}") from error
        return Observed(stable=stable, canary=canary, conflicts=tuple(conflicts))

    def _workload(self, owner: Owner, name: str, conflicts: list[str]) -> WorkloadState | None:
        try:
            deployment = self.apps.read_namespaced_deployment(name, owner.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise _translate(error, f"get Deployment {owner.namespace}/{name}") from error
        if not _owned_by(deployment.metadata, owner):
            conflicts.append(f"Deployment {name}")
            return None
        meta = deployment.metadata
        status = deployment.status
        if meta.deletion_timestamp is not None:
            # Being deleted (a cancelled canary): report it, but never as a usable workload.
            return WorkloadState(
                revision="",
                version="",
                replicas=0,
                ready_replicas=status.ready_replicas or 0,
                updated_replicas=0,
                total_replicas=status.replicas or 0,
                observed_current=False,
            )
        return WorkloadState(
            revision=(meta.annotations or {}).get(LABEL_REVISION, ""),
            version=(meta.labels or {}).get(LABEL_VERSION, ""),
            replicas=deployment.spec.replicas or 0,
            ready_replicas=status.ready_replicas or 0,
            updated_replicas=status.updated_replicas or 0,
            total_replicas=status.replicas or 0,
            observed_current=(status.observed_generation or 0) >= (meta.generation or 0),
            template=self.api_client.sanitize_for_serialization(deployment.spec.template),
        )

    def apply(self, manifest: dict[str, Any]) -> None:
        """Server-side apply of a Deployment or Service we own (force: we are its manager)."""
        kind = manifest["kind"]
        name = manifest["metadata"]["name"]
        namespace = manifest["metadata"]["namespace"]
        patch = {
            "Deployment": self.apps.patch_namespaced_deployment,
            "Service": self.core.patch_namespaced_service,
        }.get(kind)
        if patch is None:
            raise ValueError(f"aigate applies Deployments and Services, not {kind}")
        try:
            patch(
                name,
                namespace,
                manifest,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=_APPLY,
            )
        except ApiException as error:
            raise _translate(error, f"apply {kind} {namespace}/{name}") from error

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


def _owned_by(metadata: Any, owner: Owner) -> bool:
    return any(ref.uid == owner.uid for ref in (metadata.owner_references or []))
