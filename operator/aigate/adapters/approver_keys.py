"""Reads the approver key registry: a ConfigMap (data key `allowed_signers`, OpenSSH's
allowed_signers format) that only platform admins may write (the chart's policy).

Cached like the approval policy (adapters/admission.py): one GET per TTL for the whole
operator; handlers.py refreshes it on a timer and wakes every resource when it changed, so a
key registered or removed is noticed within one TTL. A read that fails keeps the last good
registry for STALE_GRACE, then every signature is reported unverifiable (fail closed).
Synchronous (the official client); callers run it off the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kubernetes import client
from kubernetes.client.rest import ApiException

from aigate.adapters.rest import Objects, object_path
from aigate.signatures import Registry, parse_allowed_signers

log = logging.getLogger("aigate.approver_keys")

DATA_KEY = "allowed_signers"
DEFAULT_TTL = 10.0
STALE_GRACE = 60.0


def parse_reference(text: str) -> tuple[str, str]:
    """NAMESPACE/NAME of the registry ConfigMap (the --approver-keys flag)."""
    namespace, _, name = text.partition("/")
    if not namespace or not name or "/" in name:
        raise ValueError(f"--approver-keys: expected NAMESPACE/NAME, found {text!r}")
    return namespace, name


class ApproverKeys:
    def __init__(
        self,
        reference: str,
        api_client: client.ApiClient | None = None,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.namespace, self.name = parse_reference(reference)
        self.source = f"ConfigMap {self.namespace}/{self.name} (data.{DATA_KEY})"
        self.objects = Objects(api_client or client.ApiClient())
        self.ttl, self.clock = ttl, clock
        self._lock = threading.Lock()
        self._registry: Registry | None = None
        self._error = ""
        self._version = ""
        self._read_at = self._good_at = float("-inf")

    def registry(self, force: bool = False) -> tuple[Registry | None, str]:
        """(the registry, "") or (None, why it cannot be read)."""
        with self._lock:
            now = self.clock()
            if (
                force
                or (self._registry is None and not self._error)
                or now - self._read_at >= self.ttl
            ):
                self._read(now)
                self._read_at = now
            return self._registry, self._error

    def refresh(self) -> tuple[str, str]:
        """Reads again; what identifies the answer (for the caller to wake every resource
        when it changed)."""
        self.registry(force=True)
        with self._lock:
            return self._version, self._error

    def _read(self, now: float) -> None:
        try:
            config_map = self.objects.get(
                object_path("v1", "configmaps", self.namespace, self.name)
            )
        except ApiException as error:
            if self._registry is not None and now - self._good_at < STALE_GRACE:
                log.warning("%s unreadable, keeping the last one: %s", self.source, error.reason)
                return
            self._registry, self._version = None, ""
            self._error = f"{self.source} cannot be read: {_describe(error)}"
            return
        text = (config_map.get("data") or {}).get(DATA_KEY)
        self._version = (config_map.get("metadata") or {}).get("resourceVersion") or ""
        self._good_at = now
        if text is None:
            self._registry = None
            self._error = f"{self.source} has no data key {DATA_KEY}"
            return
        registry = parse_allowed_signers(text, self.source)
        for problem in registry.problems:
            log.warning("approver key registry: %s", problem)
        self._registry, self._error = registry, ""


def _describe(error: ApiException) -> str:
    if error.status == 404:
        return "not found"
    if error.status == 403:
        return "forbidden: grant get on this ConfigMap (resourceNames) to the operator"
    return f"HTTP {error.status} {error.reason}"
