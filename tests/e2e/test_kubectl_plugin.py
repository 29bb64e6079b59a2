"""`kubectl aigate`, found by the real kubectl on PATH, against the running operator."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from aigate.core.revision import compute_revision
from support.factories import image_for, spec_model
from support.kube import Aid, kubectl_aigate
from support.scenarios import NAME, ModelServers, plan
from support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("operator")

APPROVER_RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: aigate-approver}
rules:
  - apiGroups: [aigate.dev]
    resources: [aideployments]
    verbs: [get, list, watch, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: aigate-approvers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: aigate-approver}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "aigate:approvers"}
"""


@pytest.fixture
def approver_rbac(cluster, tmp_path):
    path = tmp_path / "rbac.yaml"
    path.write_text(APPROVER_RBAC)
    cluster.kubectl("apply", "-f", str(path))
    yield
    cluster.kubectl("delete", "-f", str(path), "--ignore-not-found")


def test_approve_status_promote_and_history_through_kubectl(
    cluster, api_client, namespace, approver_rbac
):
    servers = ModelServers(cluster.info.exporter_url, namespace)
    servers.set("stable", error=0.001)
    servers.set("canary", error=0.001)
    aid = Aid(api_client, namespace, NAME)
    aid.create(plan(cluster.info.prometheus_url, "2.4.0", manual=True))
    wait_for(lambda: aid.phase() == "AwaitingApproval", timeout=60, what="refusal")
    out = kubectl_aigate(cluster, "status", NAME, "-n", namespace)
    assert "AwaitingApproval" in out and "aigate.dev/approved-by: missing" in out

    approve = (
        "approve",
        NAME,
        "-n",
        namespace,
        "--risk-acceptance",
        "RISK-9",
        "--risk-accepted-by",
        "ciso@example.com",
        "--yes",
    )
    kubectl_aigate(cluster, *approve, user="approver")
    wait_for(lambda: aid.phase() == "Stable", timeout=120, what="v1 Stable")
    assert aid.status()["approval"]["approvedBy"] == "approver"  # who the cluster says they are

    aid.patch({"spec": plan(cluster.info.prometheus_url, "2.5.0", manual=True)})
    wait_for(lambda: aid.phase() == "AwaitingApproval", timeout=60, what="v2 refused")
    kubectl_aigate(cluster, *approve, user="approver")
    wait_for(
        lambda: aid.phase() == "Paused" and aid.status()["stage"] == "canary-50",
        timeout=120,
        what="waiting for promotion",
    )
    out = kubectl_aigate(cluster, "status", NAME, "-n", namespace)
    for expected in ("Paused", "canary-50", "AwaitingPromotion", "error-rate", "Pass", "2.5.0"):
        assert expected in out, out

    kubectl_aigate(cluster, "promote", NAME, "-n", namespace)
    wait_for(
        lambda: aid.phase() == "Stable" and aid.status()["stableVersion"] == "2.5.0",
        timeout=120,
        what="promoted to Stable",
    )
    promote = aid.status()["requests"]["promote"]
    assert promote["value"].startswith(f"canary-50@{aid.status()['revision']} by=admin ")
    assert promote["by"] == "admin"  # who the cluster says they are (SelfSubjectReview)
    wait_for(
        lambda: not (aid.status().get("records") or {}).get("outbox"),
        timeout=60,
        what="every record written",
    )
    history = kubectl_aigate(cluster, "history", NAME, "-n", namespace)  # from the records
    assert history.count("StagePassed") == 3
    assert "error-rate: Pass value 0.001 (<= 0.01)" in history
    # An approver may read the AIDeployment but not the AIRecords: status' summary, no evidence
    summary = kubectl_aigate(cluster, "history", NAME, "-n", namespace, user="approver")
    assert summary.count("StagePassed") == 3 and "error-rate: Pass" not in summary

    assert "records intact" in kubectl_aigate(cluster, "verify", NAME, "-n", namespace)
    # Someone rewrites a recorded decision's evidence in its AIRecord: verify names it.
    uid = aid.get()["metadata"]["uid"]
    found = aid.custom.list_namespaced_custom_object(
        "aigate.dev",
        "v1alpha1",
        "aigate-system",
        "airecords",
        label_selector=f"aigate.dev/subject-uid={uid}",
    )["items"]
    passed = next(
        r for r in found if r["spec"]["reason"] == "StagePassed" and r["spec"]["evidence"]
    )
    passed["spec"]["evidence"][0]["value"] = "0.000001"
    aid.custom.replace_namespaced_custom_object(
        "aigate.dev", "v1alpha1", "aigate-system", "airecords", passed["metadata"]["name"], passed
    )
    out = kubectl_aigate(cluster, "verify", NAME, "-n", namespace, expect=1)
    sequence = passed["spec"]["sequence"]
    assert "NOT intact" in out and f"sequence {sequence} (" in out and "altered" in out


def test_approve_shows_what_it_approves_and_refuses_a_spec_changed_meanwhile(
    cluster, api_client, namespace, approver_rbac
):
    aid = Aid(api_client, namespace, NAME)
    v1 = plan(cluster.info.prometheus_url, "2.4.0")
    aid.create(v1)
    wait_for(lambda: aid.phase() == "AwaitingApproval", timeout=60, what="refusal")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = dict(os.environ, KUBECONFIG=cluster.info.user_kubeconfigs["approver"], PATH=path)
    command = [str(cluster.bin / "kubectl"), "aigate", "approve", NAME, "-n", namespace]
    command += ["--risk-acceptance", "RISK-9", "--risk-accepted-by", "ciso@example.com"]
    approving = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    shown: list[str] = []

    def read_until_asked() -> None:
        assert approving.stdout is not None
        for line in approving.stdout:
            shown.append(line)
            if line.startswith("Approve revision"):
                return

    reader = threading.Thread(target=read_until_asked, daemon=True)
    reader.start()
    reader.join(60)
    try:
        assert not reader.is_alive() and shown[-1].startswith("Approve revision"), shown
        text = "".join(shown)
        reviewed = compute_revision(spec_model(v1))
        for expected in (
            reviewed,
            f"container server: {image_for('2.4.0')}",
            "canary-50: weight 50%, 3s",
            "error-rate: max 0.01",
            "query: model_error_rate{",
            "nothing serves yet",
        ):
            assert expected in text, text
        # Someone changes the spec while the approver reads: the answer "y" is for v1 only.
        v1b = plan(cluster.info.prometheus_url, "2.4.1")
        aid.patch({"spec": v1b})
        _, err = approving.communicate("y\n", timeout=60)
    finally:
        if approving.poll() is None:
            approving.kill()
            approving.wait(10)
    assert approving.returncode == 1, err
    assert f"you reviewed revision {reviewed}" in err
    assert f"the spec now has revision {compute_revision(spec_model(v1b))}" in err
    annotations = aid.get()["metadata"].get("annotations") or {}
    assert "aigate.dev/approved-revision" not in annotations
