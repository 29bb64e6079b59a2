"""Small helpers over the real API for the integration suites."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubernetes import client

from aigate.adapters.records import RecordStore
from support.waiting import wait_for

GROUP, VERSION, PLURAL = "aigate.dev", "v1alpha1", "aideployments"


class Aid:
    """An AIDeployment under test, read fresh from the API server on every call."""

    def __init__(self, api_client: client.ApiClient, namespace: str, name: str) -> None:
        self.namespace = namespace
        self.name = name
        self.custom = client.CustomObjectsApi(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

    def create(
        self, spec: dict[str, Any], annotations: dict[str, str] | None = None
    ) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AIDeployment",
            "metadata": {"name": self.name, "annotations": annotations or {}},
            "spec": spec,
        }
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )

    def get(self) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name
        )

    def patch(self, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name, patch
        )

    def annotate(self, annotations: dict[str, str | None]) -> None:
        self.patch({"metadata": {"annotations": annotations}})

    def status(self) -> dict[str, Any]:
        return self.get().get("status") or {}

    def phase(self) -> str:
        return self.status().get("phase", "")

    def records(self, records_namespace: str = "aigate-system") -> list[dict[str, Any]]:
        """The specs of this AIDeployment's AIRecords delivered so far, in sequence order
        (status.history names them; the evidence is only in the records)."""
        uid = self.get()["metadata"]["uid"]
        items = RecordStore(self.custom.api_client, records_namespace).list(uid)
        return sorted((i["spec"] for i in items), key=lambda spec: spec["sequence"])

    def condition(self, type_: str) -> dict[str, Any]:
        for condition in self.status().get("conditions") or []:
            if condition["type"] == type_:
                return condition
        return {}

    def events(self) -> list[client.CoreV1Event]:
        return self.core.list_namespaced_event(
            self.namespace,
            field_selector=f"involvedObject.name={self.name},involvedObject.kind=AIDeployment",
        ).items

    def event_messages(self, reason: str) -> list[str]:
        return [e.message for e in self.events() if e.reason == reason]

    def wait_event(self, reason: str, *texts: str, timeout: float = 60) -> str:
        """The message of an Event of `reason` holding every text, waited for: Events are
        posted after the status write a test usually waits on, so they can lag it."""
        return wait_for(
            lambda: next(
                (m for m in self.event_messages(reason) if all(t in m for t in texts)), ""
            ),
            timeout=timeout,
            what=f"an Event {reason} with {texts}",
        )

    def deployments(self) -> list[client.V1Deployment]:
        return self.apps.list_namespaced_deployment(self.namespace).items

    def pods(self, track: str | None = None) -> list[client.V1Pod]:
        selector = f"aigate.dev/aideployment={self.name}"
        if track:
            selector += f",aigate.dev/track={track}"
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector).items

    def ready_pods(self, track: str | None = None) -> list[client.V1Pod]:
        return [
            p
            for p in self.pods(track)
            if p.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
        ]


def kubectl_aigate(cluster, *args: str, user: str = "admin", expect: int = 0) -> str:
    """`kubectl aigate ARGS` as `user`, through the real kubectl's plugin lookup; fails the
    test unless it exits with `expect`."""
    kubeconfig = cluster.info.kubeconfig if user == "admin" else cluster.info.user_kubeconfigs[user]
    # kubectl passes no flags to plugins: the kubeconfig comes from the environment, as for users
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = dict(os.environ, KUBECONFIG=kubeconfig, PATH=path)
    result = subprocess.run(
        [str(cluster.bin / "kubectl"), "aigate", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert result.returncode == expect, result.stderr or result.stdout
    return result.stdout
