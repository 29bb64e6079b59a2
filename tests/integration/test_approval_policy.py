"""The chart's ValidatingAdmissionPolicy on the real API server: who may approve is enforced
by the cluster. Users are the harness's token users (approver and risk-officer in group
aigate:approvers, developer in aigate:developers) and a GitOps ServiceAccount."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from support.factories import spec_dict
from support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "aigate.dev", "v1alpha1", "aideployments"
APPROVED_BY, APPROVED_AT = "aigate.dev/approved-by", "aigate.dev/approved-at"
RISK, RISK_BY = "aigate.dev/risk-acceptance", "aigate.dev/risk-accepted-by"

RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: aigate-policy-test-editor}
rules:
  - {apiGroups: [aigate.dev], resources: [aideployments], verbs: [get, list, create, patch, update]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: aigate-policy-test-editors, namespace: NAMESPACE}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: aigate-policy-test-editor}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "aigate:approvers"}
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "aigate:developers"}
  - {kind: ServiceAccount, name: gitops, namespace: NAMESPACE}
"""


class Actor:
    def __init__(self, kubeconfig: str, name: str) -> None:
        self.name = name
        self.custom = client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))

    def create(self, namespace: str, name: str, annotations: dict[str, str] | None = None) -> str:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AIDeployment",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": spec_dict(),
        }
        return self._call(
            lambda: self.custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body
            )
        )

    def annotate(self, namespace: str, name: str, annotations: dict[str, str | None]) -> str:
        patch = {"metadata": {"annotations": annotations}}
        return self._call(
            lambda: self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, patch
            )
        )

    def patch_spec(self, namespace: str, name: str, spec: dict) -> str:
        return self._call(
            lambda: self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, {"spec": spec}
            )
        )

    @staticmethod
    def _call(call) -> str:
        """'' when allowed, else the API server's message."""
        try:
            call()
        except ApiException as error:
            assert error.status in (403, 422), error.body
            return yaml.safe_load(error.body)["message"]
        return ""


@pytest.fixture(scope="module")
def policy_namespace(cluster, api_client, crd_installed, tmp_path_factory) -> Iterator[str]:
    """A namespace where the chart's policy applies (and nowhere else, so other tests'
    admin-written approvals are unaffected), with RBAC letting everyone try."""
    namespace = f"policy-{uuid.uuid4().hex[:6]}"
    tmp = tmp_path_factory.mktemp("policy")
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", namespace, f"aigate-policy-test={namespace}")
    cluster.kubectl("create", "serviceaccount", "gitops", "-n", namespace)
    rbac = tmp / "rbac.yaml"
    rbac.write_text(RBAC.replace("NAMESPACE", namespace))
    cluster.kubectl("apply", "-f", str(rbac))
    rendered = subprocess.run(
        [
            str(cluster.bin / "helm"),
            "template",
            "aigate",
            str(ROOT / "charts" / "aigate"),
            "--set",
            "approvals.separationOfDuties=true",
            "--set",
            f"approvals.gitOpsUsers={{system:serviceaccount:{namespace}:gitops}}",
            "--set",
            f"approvals.namespaceSelector.matchLabels.aigate-policy-test={namespace}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = [
        d for d in yaml.safe_load_all(rendered) if d and "ValidatingAdmissionPolicy" in d["kind"]
    ]
    assert {d["kind"] for d in docs} == {
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    manifest = tmp / "policy.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    cluster.kubectl("apply", "-f", str(manifest))
    # The policy must type-check cleanly: a CEL mistake would otherwise only show as a warning.
    status = wait_for(
        lambda: yaml.safe_load(
            cluster.kubectl("get", "validatingadmissionpolicy", "aigate-approvals", "-o", "yaml")
        ).get("status"),
        timeout=60,
        what="the policy's status",
    )
    assert not (status.get("typeChecking") or {}).get("expressionWarnings"), status
    # Wait until the API server enforces it (its informer picks the binding up asynchronously).
    developer = Actor(cluster.info.user_kubeconfigs["developer"], "developer")
    # A new name per attempt: an attempt made before enforcement succeeds and creates it.
    wait_for(
        lambda: (
            developer.create(namespace, f"probe-{uuid.uuid4().hex[:8]}", {APPROVED_BY: "developer"})
            != ""
        ),
        timeout=60,
        what="the policy to be enforced",
    )
    yield namespace
    cluster.kubectl("delete", "-f", str(manifest), "--ignore-not-found")
    cluster.kubectl("delete", "-f", str(rbac), "--ignore-not-found")
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")


@pytest.fixture(scope="module")
def actors(cluster, policy_namespace) -> dict[str, Actor]:
    path = cluster.service_account_kubeconfig(
        policy_namespace,
        "gitops",
        Path(cluster.info.state_dir) / f"kubeconfig-gitops-{policy_namespace}",
    )
    users = {
        name: Actor(cluster.info.user_kubeconfigs[name], name)
        for name in ("approver", "risk-officer", "developer")
    }
    users["gitops"] = Actor(str(path), "gitops")
    return users


def fresh(actors, namespace) -> str:
    name = f"m-{uuid.uuid4().hex[:6]}"
    assert actors["developer"].create(namespace, name) == ""
    return name


def test_a_developer_may_create_and_change_the_spec_but_not_approve(actors, policy_namespace):
    ns, dev = policy_namespace, actors["developer"]
    name = fresh(actors, ns)
    denied = dev.annotate(ns, name, {APPROVED_BY: "developer", APPROVED_AT: "2026-11-23T10:00:00Z"})
    assert "only members of aigate:approvers" in denied and "user developer is not one" in denied
    assert "only members" in dev.create(ns, f"pre-{name}", {APPROVED_BY: "developer"})
    assert dev.patch_spec(ns, name, {"replicas": 7}) == ""
    assert "only members" in dev.annotate(ns, name, {RISK: "RISK-1", RISK_BY: "developer"})


def test_approvers_sign_as_themselves(actors, policy_namespace):
    ns = policy_namespace
    name = fresh(actors, ns)
    forged = actors["approver"].annotate(ns, name, {APPROVED_BY: "jane@example.com"})
    assert "approved-by must be the requesting user approver, found jane@example.com" in forged
    assert (
        actors["approver"].annotate(
            ns, name, {APPROVED_BY: "approver", APPROVED_AT: "2026-11-23T10:00:00Z"}
        )
        == ""
    )
    # the risk officer adds the risk acceptance in a separate request, signed as themselves
    assert (
        actors["risk-officer"].annotate(ns, name, {RISK: "RISK-1", RISK_BY: "risk-officer"}) == ""
    )
    # and a developer cannot remove either
    assert "only members" in actors["developer"].annotate(ns, name, {APPROVED_BY: None})
    assert "only members" in actors["developer"].annotate(ns, name, {RISK: None})
    # but may still change the spec (the operator's gate then voids the approval)
    assert actors["developer"].patch_spec(ns, name, {"replicas": 2}) == ""


def test_separation_of_duties(actors, policy_namespace):
    ns = policy_namespace
    name = fresh(actors, ns)
    assert actors["approver"].annotate(ns, name, {APPROVED_BY: "approver"}) == ""
    denied = actors["approver"].annotate(ns, name, {RISK: "RISK-1", RISK_BY: "approver"})
    assert "separation of duties" in denied and "both are approver" in denied


def test_gitops_service_account_may_assert_approvals_from_git(actors, policy_namespace):
    ns = policy_namespace
    name = fresh(actors, ns)
    assert (
        actors["gitops"].annotate(
            ns,
            name,
            {
                APPROVED_BY: "jane@example.com",
                APPROVED_AT: "2026-11-23T10:00:00Z",
                RISK: "RISK-1",
                RISK_BY: "ciso@example.com",
            },
        )
        == ""
    )
    same_person = actors["gitops"].annotate(ns, name, {RISK_BY: "jane@example.com"})
    assert "separation of duties" in same_person  # the policy's switch binds Git too
