"""The governance gate with the operator running against the real control plane."""

from __future__ import annotations

import copy
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from kubernetes import client

from aigate.core import gate
from support.factories import approval_annotations, iso, spec_dict
from support.kube import Aid
from support.waiting import holds_for, wait_for

pytestmark = pytest.mark.usefixtures("operator")

TIMEOUT = 60


def make(api_client, namespace, spec=None, annotations=None, name="fraud-scorer") -> Aid:
    aid = Aid(api_client, namespace, name)
    aid.create(spec or spec_dict(), annotations)
    return aid


def revision_of(aid: Aid) -> str:
    return wait_for(lambda: aid.status().get("revision"), timeout=TIMEOUT, what="status.revision")


def approve(aid: Aid, approved_at: datetime | None = None, **overrides) -> str:
    revision = revision_of(aid)
    at = approved_at or datetime.now(UTC) - timedelta(seconds=5)
    aid.annotate(approval_annotations(revision, at, **overrides))
    return revision


def wait_phase(aid: Aid, phase: str, timeout: float = TIMEOUT) -> dict:
    return wait_for(
        lambda: aid.phase() == phase and aid.status(),
        timeout=timeout,
        what=f"phase {phase} (now {aid.phase()!r}, conditions {aid.status().get('conditions')})",
    )


def test_without_approval_nothing_is_created_and_every_missing_annotation_is_named(
    api_client, namespace
):
    aid = make(api_client, namespace)
    wait_phase(aid, "AwaitingApproval")
    stalled = aid.condition("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "ApprovalRequired")
    assert aid.condition("Authorized")["status"] == "False"
    for annotation in gate.REQUIRED_ANNOTATIONS:
        assert annotation in stalled["message"]
    messages = wait_for(
        lambda: aid.event_messages("ApprovalRequired"), timeout=TIMEOUT, what="the Event"
    )
    assert all(annotation in messages[0] for annotation in gate.REQUIRED_ANNOTATIONS)
    assert [e.type for e in aid.events() if e.reason == "ApprovalRequired"] == ["Warning"]
    # Checked over a period, not at one instant: the operator keeps reconciling meanwhile.
    holds_for(
        lambda: not aid.deployments() and not aid.pods() and aid.phase() == "AwaitingApproval",
        duration=6,
        what="no workload while unapproved",
    )
    services = client.CoreV1Api(api_client).list_namespaced_service(namespace).items
    assert services == []


def test_approval_deploys_stable_workload_and_records_who_approved(api_client, namespace):
    aid = make(api_client, namespace)
    revision = approve(aid)
    status = wait_phase(aid, "Stable")
    assert len(aid.ready_pods("stable")) == 4
    assert all(p.spec.node_name.startswith("kwok-node-") for p in aid.ready_pods())
    service = client.CoreV1Api(api_client).read_namespaced_service("fraud-scorer", namespace)
    assert service.spec.selector == {
        "app.kubernetes.io/managed-by": "aigate",
        "aigate.dev/aideployment": "fraud-scorer",
        "aigate.dev/aideployment-uid": aid.get()["metadata"]["uid"],
    }
    (deployment,) = aid.deployments()
    assert deployment.metadata.name == "fraud-scorer-stable"
    assert deployment.metadata.owner_references[0].uid == aid.get()["metadata"]["uid"]
    approval = status["approval"]
    assert approval["approvedBy"] == "jane@example.com"
    assert approval["revision"] == revision
    assert (approval["riskAcceptance"], approval["riskAcceptedBy"]) == (
        "RISK-1234",
        "ciso@example.com",
    )
    assert status["readyReplicas"] == 4
    assert status["observedGeneration"] == aid.get()["metadata"]["generation"]
    assert aid.condition("Ready")["status"] == "True"
    assert aid.condition("Stalled")["status"] == "False"
    assert aid.condition("Authorized")["status"] == "True"
    assert [h["toPhase"] for h in status["history"]][-2:] == ["Deploying", "Stable"]
    aid.wait_event("Approved")


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("other-revision", "approves another revision"),
        ("expired", "expired"),
        ("future", "in the future"),
        ("malformed", "malformed"),
        ("short-revision", "names a short revision"),
    ],
)
def test_bad_approvals_are_refused_with_the_right_reason(api_client, namespace, case, problem):
    aid = make(api_client, namespace)
    revision = revision_of(aid)
    now = datetime.now(UTC)
    annotations = {
        "other-revision": approval_annotations("0123456789ab", now),
        "expired": approval_annotations(revision, now - timedelta(hours=169)),
        "future": approval_annotations(revision, now + timedelta(days=1)),
        "malformed": approval_annotations(revision, now, approved_at="last tuesday"),
        # the 12 characters the REVISION column shows: display only, never an authority
        "short-revision": approval_annotations(revision[:12], now),
    }[case]
    aid.annotate(annotations)
    wait_for(
        lambda: problem in aid.condition("Authorized").get("message", ""),
        timeout=TIMEOUT,
        what=f"Authorized condition saying {problem!r}",
    )
    assert aid.phase() == "AwaitingApproval"
    wait_for(
        lambda: any(problem in m for m in aid.event_messages("ApprovalRequired")),
        timeout=TIMEOUT,
        what="an Event with the reason",
    )
    if case in ("short-revision", "other-revision"):
        # the refusal gives the full revision to approve, as kubectl describe shows it
        assert len(revision) == 64 and revision in aid.condition("Stalled")["message"]
    holds_for(
        lambda: not aid.deployments(), duration=3, what="no Deployment for a refused approval"
    )


def _serving_snapshot(aid: Aid):
    (deployment,) = aid.deployments()
    pods = sorted(p.metadata.uid for p in aid.ready_pods("stable"))
    return (
        deployment.metadata.generation,
        deployment.metadata.annotations["aigate.dev/revision"],
        pods,
    )


@pytest.mark.parametrize("change", ["model-version", "loosened-threshold"])
def test_unapproved_new_revision_leaves_the_old_pods_serving_untouched(
    api_client, namespace, change
):
    aid = make(api_client, namespace)
    old_revision = approve(aid)
    wait_phase(aid, "Stable")
    before = _serving_snapshot(aid)

    spec = copy.deepcopy(aid.get()["spec"])
    if change == "model-version":
        spec["model"]["version"] = "2.5.0"
    else:
        spec["rollout"]["analysis"]["metrics"][0]["max"] = 0.5
    aid.patch({"spec": spec})
    wait_for(
        lambda: (
            aid.status().get("revision") not in ("", old_revision)
            and aid.phase() == "AwaitingApproval"
        ),
        timeout=TIMEOUT,
        what="the new revision awaiting approval",
    )
    assert "approves another revision" in aid.condition("Authorized")["message"]
    assert old_revision in aid.condition("Stalled")["message"]  # says what keeps serving
    holds_for(
        lambda: _serving_snapshot(aid) == before, duration=5, what="old pods serving unchanged"
    )
    assert aid.status()["stableRevision"] == old_revision


def test_scaling_an_approved_revision_needs_no_new_approval(api_client, namespace):
    aid = make(api_client, namespace)
    revision = approve(aid)
    wait_phase(aid, "Stable")
    aid.patch({"spec": {"replicas": 6}})
    wait_for(
        lambda: len(aid.ready_pods("stable")) == 6 and aid.phase() == "Stable",
        timeout=TIMEOUT,
        what="6 Ready pods and phase Stable",
    )
    assert aid.status()["revision"] == revision
    assert aid.status()["approval"]["revision"] == revision


def test_kubectl_get_shows_the_printer_columns_with_real_values(cluster, api_client, namespace):
    aid = make(api_client, namespace)
    revision = approve(aid)
    wait_phase(aid, "Stable")
    out = cluster.kubectl("get", "aid", "-n", namespace)
    header, row = out.strip().splitlines()
    assert header.split() == [
        "NAME",
        "PHASE",
        "VERSION",
        "REVISION",
        "STAGE",
        "WEIGHT",
        "READY",
        "CANARY",
        "APPROVED-BY",
        "AGE",
    ]
    # the column shows the revision's 12-character display prefix; approvals name all 64
    assert row.split()[:4] == ["fraud-scorer", "Stable", "2.4.0", revision[:12]]
    assert "jane@example.com" in row


def test_deleting_the_aideployment_removes_its_children(api_client, namespace):
    aid = make(api_client, namespace)
    approve(aid)
    wait_phase(aid, "Stable")
    aid.custom.delete_namespaced_custom_object(
        "aigate.dev", "v1alpha1", namespace, "aideployments", aid.name
    )
    wait_for(
        lambda: not aid.deployments() and not aid.pods(),
        timeout=TIMEOUT,
        what="children garbage-collected",
    )


def test_the_operator_never_touches_a_deployment_it_does_not_own(api_client, namespace):
    apps = client.AppsV1Api(api_client)
    labels = {"app": "someone-elses"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "fraud-scorer-stable"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "c", "image": "other"}]},
                },
            },
        },
    )
    aid = make(api_client, namespace)
    approve(aid)
    wait_for(
        lambda: aid.condition("Stalled").get("reason") == "ChildConflict",
        timeout=TIMEOUT,
        what="ChildConflict",
    )
    deployment = apps.read_namespaced_deployment("fraud-scorer-stable", namespace)
    assert deployment.spec.template.spec.containers[0].image == "other"
    assert deployment.metadata.generation == 1


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s.update(replicas="four"), "spec.replicas"),
        (lambda s: s["model"].pop("version"), "spec.model.version"),
        (lambda s: s["model"].update(riskTier="extreme"), "spec.model.riskTier"),
        (
            lambda s: s["rollout"]["stages"].append({"name": "full", "weight": 100}),
            "spec.rollout.stages",
        ),
        (lambda s: s["rollout"]["stages"].reverse(), "spec.rollout.stages"),
        (
            lambda s: s["rollout"]["analysis"]["metrics"][0].pop("max"),
            "spec.rollout.analysis.metrics[0]",
        ),
        (
            lambda s: s["rollout"]["analysis"].update(interval="often"),
            "spec.rollout.analysis.interval",
        ),
        (lambda s: s["template"]["spec"].update(containers=[]), "spec.template.spec.containers"),
    ],
)
def test_malformed_resources_are_rejected_by_the_api_server_naming_the_field(
    cluster, namespace, tmp_path, mutate, field
):
    spec = spec_dict()
    mutate(spec)
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "aigate.dev/v1alpha1",
                "kind": "AIDeployment",
                "metadata": {"name": "bad", "namespace": namespace},
                "spec": spec,
            }
        )
    )
    result = subprocess.run(
        [
            str(cluster.bin / "kubectl"),
            f"--kubeconfig={cluster.info.kubeconfig}",
            "apply",
            "-f",
            str(manifest),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert field in result.stderr, result.stderr
    assert "bad" not in cluster.kubectl("get", "aid", "-n", namespace, "-o", "name")


def test_now_helper_is_rfc3339():
    assert gate.parse_rfc3339(iso(datetime.now(UTC))) is not None


def test_a_spec_the_schema_accepts_but_the_operator_cannot_use_fails_with_the_field(
    api_client, namespace
):
    spec = spec_dict()
    spec["rollout"]["analysis"]["metrics"][0]["query"] = 'errors{model="{{model}}"}'
    aid = make(api_client, namespace, spec=spec)
    wait_for(lambda: aid.phase() == "Failed", timeout=TIMEOUT, what="phase Failed")
    stalled = aid.condition("Stalled")
    assert stalled["reason"] == "InvalidSpec"
    assert (
        "spec.rollout.analysis.metrics[0].query" in stalled["message"]
        and "model" in stalled["message"]
    )
    aid.wait_event("InvalidSpec", "spec.rollout.analysis.metrics[0].query")
    holds_for(
        lambda: not aid.deployments(), duration=3, what="nothing deployed for an invalid spec"
    )


def test_approvals_written_by_a_gitops_controller_are_recorded_as_asserted_through_git(
    api_client, namespace
):
    """The marker aigate.dev/approval-source=git says so (only the GitOps identity may set it,
    tests/integration/test_approval_policy.py); the field manager is recorded as the client."""
    aid = make(api_client, namespace)
    revision = revision_of(aid)
    annotations = approval_annotations(revision, datetime.now(UTC) - timedelta(seconds=5))
    annotations["aigate.dev/approval-source"] = "git"
    aid.custom.patch_namespaced_custom_object(
        "aigate.dev",
        "v1alpha1",
        namespace,
        "aideployments",
        aid.name,
        {"metadata": {"annotations": annotations}},
        field_manager="argocd-controller",
    )
    approval = wait_phase(aid, "Stable")["approval"]
    assert approval["writtenBy"] == "argocd-controller"
    assert approval["assertedThroughGit"] is True
    aid.wait_event("Approved", "asserted through Git")


def test_raising_approval_ttl_does_not_revive_an_expired_approval(api_client, namespace):
    """approvalTTL is inside the revision: raising it to make an old approval valid again
    changes the revision the approval names, so it stays refused (issue 8)."""
    spec = spec_dict()
    spec["governance"] = {"approvalTTL": "1m"}
    aid = make(api_client, namespace, spec)
    old = approve(aid, approved_at=datetime.now(UTC) - timedelta(minutes=10))
    wait_for(
        lambda: (
            "expired: expected an approval younger than approvalTTL 1m"
            in aid.condition("Authorized").get("message", "")
        ),
        timeout=TIMEOUT,
        what="the approval refused as expired",
    )
    aid.patch({"spec": {"governance": {"approvalTTL": "2160h"}}})
    wait_for(
        lambda: aid.status().get("revision") not in ("", old),
        timeout=TIMEOUT,
        what="a new revision for the longer approvalTTL",
    )
    message = wait_for(
        lambda: (m := aid.condition("Authorized").get("message", "")) and old in m and m,
        timeout=TIMEOUT,
        what="the refusal naming the approved revision against the new one",
    )
    assert "approved-revision" in message
    assert aid.phase() == "AwaitingApproval" and not aid.deployments()
