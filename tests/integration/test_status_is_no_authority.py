"""Status is never an authority: a template is applied only when a record signed by the
operator says its revision was approved for this AIDeployment. Here someone who gets past
the status policy (a cluster admin) writes an unapproved version into the serving snapshot,
content and revision consistent, and deletes the stable Deployment: the operator does not
recreate it from that snapshot (issue 8 item 3: a rollback target or a recreated stable
must match what was approved and recorded outside status)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client

from aigate.core.revision import compute_revision, vouched_content
from support.factories import approval_annotations, image_for, request, spec_dict, spec_model
from support.kube import Aid
from support.waiting import holds_for, wait_for

pytestmark = pytest.mark.usefixtures("operator")

TIMEOUT = 90
NAME = "vouched"


def version(number: str) -> dict:
    spec = spec_dict()
    spec["model"]["version"] = number
    spec["template"]["spec"]["containers"][0]["image"] = image_for(number)
    return spec


def approve(aid: Aid, spec: dict) -> str:
    revision = compute_revision(spec_model(spec))
    aid.annotate(approval_annotations(revision, datetime.now(UTC) - timedelta(seconds=5)))
    return revision


def serving_v1(api_client, namespace: str) -> Aid:
    aid = Aid(api_client, namespace, NAME)
    aid.create(version("2.4.0"))
    approve(aid, version("2.4.0"))
    wait_for(lambda: aid.phase() == "Stable", timeout=TIMEOUT, what="v1 Stable")
    return aid


def forge_serving_and_delete_stable(api_client, namespace: str, spec: dict) -> str:
    """What someone past the status policy can do: a serving snapshot whose content hashes
    to its revision, then the stable Deployment gone so the operator recreates it."""
    model = spec_model(spec)
    forged = {
        "revision": compute_revision(model),
        "version": model.model.version,
        "content": vouched_content(model),
    }
    client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
        "aigate.dev", "v1alpha1", namespace, "aideployments", NAME, {"status": {"serving": forged}}
    )
    client.AppsV1Api(api_client).delete_namespaced_deployment(f"{NAME}-stable", namespace)
    return forged["revision"]


def refused_apply(aid: Aid) -> str:
    def message() -> str:
        text = (aid.status().get("applyError") or {}).get("message", "")
        return text if "vouches for" in text else ""

    return wait_for(message, timeout=TIMEOUT, what="the apply refused for want of a record")


def never_runs(aid: Aid, number: str) -> None:
    holds_for(
        lambda: all(
            c.image != image_for(number)
            for d in aid.deployments()
            for c in d.spec.template.spec.containers
        ),
        duration=3,
        what=f"no Deployment running {number}",
    )


def test_an_unapproved_snapshot_written_into_status_is_never_applied(api_client, namespace):
    aid = serving_v1(api_client, namespace)
    forged = forge_serving_and_delete_stable(api_client, namespace, version("6.6.6"))
    message = refused_apply(aid)
    assert forged in message and "no ApprovalRecorded record" in message
    never_runs(aid, "6.6.6")
    aid.wait_event("ApplyRefused", "vouches for")


def test_an_approved_version_that_never_served_is_no_rollback_target(api_client, namespace):
    aid = serving_v1(api_client, namespace)
    aid.patch({"spec": version("2.5.0")})
    v2 = approve(aid, version("2.5.0"))
    wait_for(lambda: aid.phase() == "Progressing", timeout=TIMEOUT, what="v2 canary")
    aid.annotate({"aigate.dev/abort": request("abort", v2, by="admin")})
    wait_for(lambda: aid.phase() == "RolledBack", timeout=TIMEOUT, what="v2 aborted")
    # v2 was approved (its ApprovalRecorded record exists) but never served.
    forged = forge_serving_and_delete_stable(api_client, namespace, version("2.5.0"))
    assert forged == v2
    message = refused_apply(aid)
    assert v2 in message and "AllStagesPassed" in message
    never_runs(aid, "2.5.0")
