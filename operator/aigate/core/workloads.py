"""Desired child objects: the Deployments per track and the one Service (pure builders).

Names are deterministic (`<name>-stable`, `<name>-canary`, `<name>`), so applying twice is
harmless. A Deployment's selector is fixed per track and never names the revision: the
stable Deployment moves from one revision to the next without being recreated.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

from aigate.api.v1alpha1 import GROUP, KIND, VERSION
from aigate.core.revision import short

Track = Literal["stable", "canary"]

MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_OWNER = "aigate.dev/aideployment"
# The owner's UID on every pod aigate's Deployments make: the Service selects it too, so
# pods of an older AIDeployment of the same name (or hand-made pods copying the name
# label) never receive its traffic. Who may create pods with aigate's labels at all is the
# chart's admission policy.
LABEL_OWNER_UID = "aigate.dev/aideployment-uid"
LABEL_TRACK = "aigate.dev/track"
LABEL_REVISION = "aigate.dev/revision"
LABEL_VERSION = "aigate.dev/version"
LABEL_MODEL = "aigate.dev/model"
OPERATOR_NAME = "aigate"


@dataclass(frozen=True)
class Owner:
    name: str
    namespace: str
    uid: str


def deployment_name(owner_name: str, track: Track) -> str:
    return f"{owner_name}-{track}"


def child_object(owner_name: str, child: str) -> tuple[str, str]:
    """(kind, name) of one of aigate's children: the Service `<name>`, or a track's
    Deployment `<name>-<track>`."""
    if child == "service":
        return "Service", owner_name
    return "Deployment", f"{owner_name}-{child}"


def _owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def selector_labels(owner_name: str, track: Track) -> dict[str, str]:
    return {LABEL_OWNER: owner_name, LABEL_TRACK: track}


def build_deployment(
    owner: Owner,
    track: Track,
    *,
    model_name: str,
    version: str,
    revision: str,
    template: dict[str, Any],
    replicas: int,
) -> dict[str, Any]:
    """The Deployment running `template` (of `revision`) on `track`."""
    identity = {
        MANAGED_BY: OPERATOR_NAME,
        LABEL_OWNER: owner.name,
        LABEL_OWNER_UID: owner.uid,
        LABEL_TRACK: track,
        # A label value holds at most 63 characters: labels carry the revision's display
        # prefix (for selectors and dashboards); the full digest, which is what the
        # operator reads back, is in the annotation of the same name.
        LABEL_REVISION: short(revision),
        LABEL_VERSION: version,
        LABEL_MODEL: model_name,
    }
    pod_template = copy.deepcopy(template)
    metadata = pod_template.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **identity}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(owner.name, track),
            "namespace": owner.namespace,
            "labels": identity,
            "annotations": {LABEL_REVISION: revision},
            "ownerReferences": [_owner_reference(owner)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(owner.name, track)},
            # Never fewer ready pods than asked for while the template changes.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
            },
            "template": pod_template,
        },
    }


def service_selector(owner: Owner) -> dict[str, str]:
    """Only pods of aigate's own Deployments for this AIDeployment (both tracks)."""
    return {MANAGED_BY: OPERATOR_NAME, LABEL_OWNER: owner.name, LABEL_OWNER_UID: owner.uid}


def build_service(owner: Owner, *, port: int, target_port: int) -> dict[str, Any]:
    """One Service selecting both tracks' pods: traffic share follows the replica ratio. Its
    settings are those of the revision that owns the traffic (the serving one until a
    promotion), so a canary never changes how traffic reaches the stable pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": owner.name,
            "namespace": owner.namespace,
            "labels": {MANAGED_BY: OPERATOR_NAME, LABEL_OWNER: owner.name},
            "ownerReferences": [_owner_reference(owner)],
        },
        "spec": {
            "selector": service_selector(owner),
            "ports": [
                {
                    "name": "http",
                    "port": port,
                    "targetPort": target_port or port,
                    "protocol": "TCP",
                }
            ],
        },
    }
