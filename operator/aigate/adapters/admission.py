"""Reads the approval policy, its bindings and namespace labels, for core/admission.py.

Cached: the policy and its bindings are read at most once per TTL for the whole operator
(one GET and one LIST), a namespace's labels at most once per TTL, and only when a
selector needs them; a reconcile that changes nothing adds no API request in between.
handlers.py refreshes the cache on a timer and wakes every resource when what was read
changed, so a policy, binding or namespace label applied (or deleted) is noticed within
one TTL.
Synchronous (the official client); callers run it off the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from aigate.adapters.rest import Objects, object_path
from aigate.core.admission import PolicyObjects, needs_namespace_labels, policy_problem

log = logging.getLogger("aigate.admission")

DEFAULT_TTL = 10.0
# A read that fails (API server restarting) keeps the last good answer this long; longer,
# and the failure itself closes the gates.
STALE_GRACE = 60.0


class ApprovalPolicyCheck:
    def __init__(
        self,
        policy_name: str,
        api_client: client.ApiClient | None = None,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy_name = policy_name
        self.api_client = api_client or client.ApiClient()
        self.admission = client.AdmissionregistrationV1Api(self.api_client)
        self.rest = Objects(self.api_client)
        self.ttl, self.clock = ttl, clock
        self._lock = threading.Lock()
        self._objects: PolicyObjects | None = None
        self._read_at = self._good_at = float("-inf")
        self._namespaces: dict[str, tuple[float, Mapping[str, str] | None]] = {}

    def problem(self, namespace: str, object_labels: Mapping[str, str]) -> str | None:
        """Why the policy does not enforce for this resource, or None."""
        objects = self.objects()
        labels: Mapping[str, str] | None = {}
        if not objects.error and needs_namespace_labels(objects):
            labels = self._namespace_labels(namespace)
        return policy_problem(objects, namespace, labels, object_labels)

    def refresh(self) -> tuple[object, ...]:
        """Reads everything again (the policy, its bindings, the labels of the namespaces
        asked about when a selector needs them); returns what identifies the answer, for
        the caller to wake every resource when it changed."""
        objects = self.objects(force=True)
        labels: tuple[object, ...] = ()
        if not objects.error and needs_namespace_labels(objects):
            with self._lock:
                names = sorted(self._namespaces)
            labels = tuple(
                (namespace, tuple(sorted((self._namespace_labels(namespace, True) or {}).items())))
                for namespace in names
            )
        policy = (objects.policy or {}).get("metadata", {}).get("resourceVersion")
        bindings = sorted(
            (b.get("metadata") or {}).get("resourceVersion", "") for b in objects.bindings
        )
        return (policy, tuple(bindings), objects.error, labels)

    def objects(self, force: bool = False) -> PolicyObjects:
        """The policy and its bindings, read again when older than the TTL (or forced)."""
        with self._lock:
            now = self.clock()
            if force or self._objects is None or now - self._read_at >= self.ttl:
                self._objects = self._read(now)
                self._read_at = now
            return self._objects

    def _read(self, now: float) -> PolicyObjects:
        try:
            policy = self._policy()
            bindings = self.admission.list_validating_admission_policy_binding().items
        except ApiException as error:
            last = self._objects
            if last is not None and not last.error and now - self._good_at < STALE_GRACE:
                log.warning("approval policy unreadable, keeping the last answer: %s", error)
                return last
            return PolicyObjects(self.policy_name, None, (), error=_describe(error))
        self._good_at = now
        serialise = self.api_client.sanitize_for_serialization
        return PolicyObjects(self.policy_name, policy, tuple(serialise(b) for b in bindings))

    def _policy(self) -> dict[str, Any] | None:
        try:
            policy = self.admission.read_validating_admission_policy(self.policy_name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return self.api_client.sanitize_for_serialization(policy)

    def _namespace_labels(self, namespace: str, force: bool = False) -> Mapping[str, str] | None:
        now = self.clock()
        cached = self._namespaces.get(namespace)
        if cached is not None and not force and now - cached[0] < self.ttl:
            return cached[1]
        try:
            found = self.rest.get(object_path("v1", "namespaces", name=namespace))
            labels: Mapping[str, str] | None = dict(
                (found.get("metadata") or {}).get("labels") or {}
            )
        except ApiException as error:
            log.warning("cannot read namespace %s: %s", namespace, _describe(error))
            labels = None
        with self._lock:
            self._namespaces[namespace] = (now, labels)
        return labels


def _describe(error: ApiException) -> str:
    if error.status == 403:
        return (
            "forbidden: grant get/list/watch on validatingadmissionpolicies, "
            "validatingadmissionpolicybindings (admissionregistration.k8s.io) and get on "
            "namespaces"
        )
    if error.status == 404:
        return "the admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy API is not served"
    return f"HTTP {error.status} {error.reason}"
