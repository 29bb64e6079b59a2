"""Fail closed without the approval policy, and least privilege, on the real API server.

The operator runs exactly as the chart runs it with watchNamespaces set: as the chart's
ServiceAccount, with only the chart's Roles in the one watched namespace and its
ClusterRole, and with the chart's arguments (--namespace, --require-approval-policy). The
approvals are valid from the start; the gate opens only once the chart's policy and a
binding selecting the namespace exist (docs/decisions/0009-fail-closed-without-policy.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from aigate.core.revision import compute_revision
from localcluster.operator import OperatorProcess
from support.chart import render_chart
from support.factories import approval_annotations, spec_dict, spec_model
from support.kube import Aid
from support.waiting import holds_for, wait_for

ROOT = Path(__file__).resolve().parents[2]
RELEASE, RELEASE_NAMESPACE = "failclosed", "aigate-system"
POLICY = "failclosed-aigate-approvals"
TIMEOUT = 90
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def render(cluster, namespace: str) -> list[dict]:
    return render_chart(
        cluster.bin,
        f"watchNamespaces={{{namespace}}}",
        f"approvals.namespaceSelector.matchLabels.aigate-failclosed={namespace}",
        release=RELEASE,
        namespace=RELEASE_NAMESPACE,
    )


def apply(cluster, path: Path, docs: list[dict]) -> Path:
    path.write_text(yaml.safe_dump_all(docs))
    cluster.kubectl("apply", "-f", str(path))
    return path


def stalled_message(aid: Aid) -> str:
    stalled = aid.condition("Stalled")
    return stalled.get("message", "") if stalled.get("reason") == "ApprovalPolicyMissing" else ""


def test_gates_stay_closed_until_the_charts_policy_enforces_in_the_namespace(
    cluster, api_client, namespace, operator, tmp_path
):
    docs = render(cluster, namespace)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    chart_args = [a for a in args if a.startswith(("--namespace=", "--require-approval-policy="))]
    assert chart_args == [f"--namespace={namespace}", f"--require-approval-policy={POLICY}"]
    cluster.kubectl("create", "namespace", RELEASE_NAMESPACE, check=False)
    rbac = apply(cluster, tmp_path / "rbac.yaml", [d for d in docs if d["kind"] in RBAC_KINDS])
    policy_docs = [d for d in docs if d["kind"].startswith("ValidatingAdmissionPolicy")]
    policy_docs = [d for d in policy_docs if d["metadata"]["name"] == POLICY]
    assert {d["kind"] for d in policy_docs} == {
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    token = cluster.service_account_kubeconfig(
        RELEASE_NAMESPACE, f"{RELEASE}-aigate", tmp_path / "kubeconfig-sa"
    )
    operator.stop()  # one operator at a time: this one runs as the chart runs it
    restricted = OperatorProcess(token, tmp_path / "operator.log", *chart_args)
    policy_file = tmp_path / "policy.yaml"
    try:
        restricted.start()
        spec = spec_dict()
        aid = Aid(api_client, namespace, "fraud-scorer")
        # A complete, valid approval written before any policy existed: not trusted.
        at = datetime.now(UTC) - timedelta(seconds=5)
        aid.create(spec, approval_annotations(compute_revision(spec_model(spec)), at))
        message = wait_for(
            lambda: stalled_message(aid), timeout=TIMEOUT, what="ApprovalPolicyMissing"
        )
        assert f"ValidatingAdmissionPolicy {POLICY} not found" in message
        assert aid.phase() == "AwaitingApproval"
        assert aid.condition("Authorized")["reason"] == "ApprovalPolicyMissing"
        events = wait_for(
            lambda: aid.event_messages("ApprovalPolicyMissing"), timeout=TIMEOUT, what="Event"
        )
        assert f"{POLICY} not found" in events[0]
        holds_for(lambda: not aid.deployments(), duration=3, what="no workload")

        # The policy and its binding, but the binding selects namespaces by a label this
        # one does not carry yet.
        apply(cluster, policy_file, policy_docs)
        wait_for(
            lambda: f"do not select {namespace}" in stalled_message(aid),
            timeout=TIMEOUT,
            what=f"the binding named as not selecting {namespace}",
        )
        assert not aid.deployments()

        cluster.kubectl("label", "namespace", namespace, f"aigate-failclosed={namespace}")
        wait_for(lambda: aid.phase() == "Stable", timeout=TIMEOUT, what="Stable once enforcing")
        assert aid.condition("Authorized")["status"] == "True"
        log = (tmp_path / "operator.log").read_text()
        assert "Forbidden" not in log and " 403" not in log, log[-3000:]
    finally:
        restricted.stop()
        cluster.kubectl("delete", "-f", str(policy_file), "--ignore-not-found", check=False)
        cluster.kubectl("delete", "-f", str(rbac), "--ignore-not-found", check=False)
        operator.start()
