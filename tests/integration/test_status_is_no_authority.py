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
from support.factories import approval_annotations, image_for, spec_dict, spec_model
from support.kube import Aid
from support.waiting import holds_for, wait_for

pytestmark = pytest.mark.usefixtures("operator")

TIMEOUT = 90
NAME = "vouched"


def test_an_unapproved_snapshot_written_into_status_is_never_applied(api_client, namespace):
    aid = Aid(api_client, namespace, NAME)
    spec = spec_dict()
    aid.create(spec)
    revision = compute_revision(spec_model(spec))
    aid.annotate(approval_annotations(revision, datetime.now(UTC) - timedelta(seconds=5)))
    wait_for(lambda: aid.phase() == "Stable", timeout=TIMEOUT, what="Stable")

    evil = spec_dict()
    evil["model"]["version"] = "6.6.6"
    evil["template"]["spec"]["containers"][0]["image"] = image_for("6.6.6")
    evil_model = spec_model(evil)
    forged = {
        "revision": compute_revision(evil_model),
        "version": "6.6.6",
        "content": vouched_content(evil_model),
    }
    custom = client.CustomObjectsApi(api_client)
    custom.patch_namespaced_custom_object_status(
        "aigate.dev", "v1alpha1", namespace, "aideployments", NAME, {"status": {"serving": forged}}
    )
    client.AppsV1Api(api_client).delete_namespaced_deployment(f"{NAME}-stable", namespace)

    def refused() -> str:
        error = aid.status().get("applyError") or {}
        return error.get("message", "") if "vouches for" in error.get("message", "") else ""

    message = wait_for(refused, timeout=TIMEOUT, what="the unvouched apply refused")
    assert forged["revision"] in message and "ApprovalRecorded" in message
    holds_for(
        lambda: all(
            c.image != image_for("6.6.6")
            for d in aid.deployments()
            for c in d.spec.template.spec.containers
        ),
        duration=3,
        what="no Deployment with the unapproved image",
    )
    assert any("vouches for" in m for m in aid.event_messages("ApplyRefused"))
