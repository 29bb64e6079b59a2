"""Signed approvals on the real API server (docs/decisions/0011-signed-approvals.md).

The chart's approval policy and approver-key policy are bound in a labelled namespace; the
approver and the risk officer sign with their own SSH keys (made by ssh-keygen here) through
`kubectl aigate approve --sign` / `accept-risk --sign` under those policies; the operator runs
with `--approver-keys` naming the chart's registry ConfigMap, written by a platform admin."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from aigate import kubectl_plugin
from aigate.core import gate
from aigate.core.revision import compute_revision
from aigate.core.statements import statements_of
from integration.test_approval_policy import RBAC, assert_type_checks
from localcluster.operator import OperatorProcess
from support.chart import render_chart
from support.factories import spec_dict, spec_model
from support.kube import Aid
from support.sshkeys import Keys, ssh_keygen_verify
from support.waiting import holds_for, wait_for

RELEASE = "signedtest"
REGISTRY = f"{RELEASE}-aigate-approver-keys"
TIMEOUT = 90
PLATFORM_ADMIN = ("--as=platform-admin", "--as-group=aigate:platform-admins")
CONFIGMAP_RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: aigate-signed-test-configmaps, namespace: NAMESPACE}
rules:
  - {apiGroups: [""], resources: [configmaps], verbs: [get, create, update, patch, delete]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: aigate-signed-test-configmaps, namespace: NAMESPACE}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: aigate-signed-test-configmaps}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}
"""


def high_tier_spec(version: str = "2.4.0") -> dict:
    """riskTier high with requireSignedApproval unset: signatures are required."""
    spec = spec_dict(governance={"approvalTTL": "168h"})
    spec["model"]["version"] = version
    return spec


class Signed:
    def __init__(self, cluster, namespace: str, keys: Keys, allowed: Path) -> None:
        self.cluster, self.namespace, self.keys, self.allowed = cluster, namespace, keys, allowed

    def plugin(self, user: str, *command: str) -> int:
        kubeconfig = self.cluster.info.user_kubeconfigs[user]
        return kubectl_plugin.main(
            ["--kubeconfig", kubeconfig, *command, "-n", self.namespace, "--yes"]
        )

    def registry_write(self, user: str | None, *args: str) -> str:
        """Patches the registry as `user` (None: a platform admin); '' when allowed."""
        who = PLATFORM_ADMIN if user is None else ()
        kubeconfig = (
            self.cluster.info.kubeconfig
            if user in (None, "admin")
            else self.cluster.info.user_kubeconfigs[user]
        )
        api = config.new_client_from_config(config_file=kubeconfig)
        if who:
            api.set_default_header("Impersonate-User", "platform-admin")
            api.set_default_header("Impersonate-Group", "aigate:platform-admins")
        core = client.CoreV1Api(api)
        patch = {"data": {"allowed_signers": args[0]}} if args else None
        try:
            if patch is None:
                core.delete_namespaced_config_map(REGISTRY, self.namespace)
            else:
                core.patch_namespaced_config_map(REGISTRY, self.namespace, patch)
        except ApiException as error:
            assert error.status == 403, error.body
            return yaml.safe_load(error.body)["message"]
        return ""


@pytest.fixture(scope="module")
def signed(cluster, api_client, crd_installed, tmp_path_factory, operator) -> Iterator[Signed]:
    namespace = f"signed-{uuid.uuid4().hex[:6]}"
    tmp = tmp_path_factory.mktemp("signed")
    keys = Keys(tmp)
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", namespace, f"aigate-signed-test={namespace}")
    rbac = tmp / "rbac.yaml"
    rbac.write_text(
        RBAC.replace("NAMESPACE", namespace)
        + "---\n"
        + CONFIGMAP_RBAC.replace("NAMESPACE", namespace)
    )
    cluster.kubectl("apply", "-f", str(rbac))
    docs = render_chart(
        cluster.bin,
        f"approvals.namespaceSelector.matchLabels.aigate-signed-test={namespace}",
        release=RELEASE,
        namespace=namespace,
    )
    (registry,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == REGISTRY
    ]
    allowed_text = keys.allowed_signers(("approver", "approver"), ("risk-officer", "risk-officer"))
    registry["data"]["allowed_signers"] += allowed_text
    allowed = tmp / "allowed_signers"
    allowed.write_text(registry["data"]["allowed_signers"])
    wanted = {f"{RELEASE}-aigate-approvals", f"{RELEASE}-aigate-approver-keys"}
    policies = [
        d
        for d in docs
        if d["kind"].startswith("ValidatingAdmissionPolicy") and d["metadata"]["name"] in wanted
    ]
    assert len(policies) == 4
    # The registry as a platform admin writes it, then the policies (as the cluster admin).
    (tmp / "registry.yaml").write_text(yaml.safe_dump(registry))
    cluster.kubectl("apply", *PLATFORM_ADMIN, "-f", str(tmp / "registry.yaml"))
    manifest = tmp / "policies.yaml"
    manifest.write_text(yaml.safe_dump_all(policies))
    cluster.kubectl("apply", "-f", str(manifest))
    for name in wanted:
        assert_type_checks(cluster, name)
    env = Signed(cluster, namespace, keys, allowed)
    # enforced once the developer's write of the registry is refused (bindings load
    # asynchronously; the write is of the same content, harmless if it goes through)
    wait_for(
        lambda: env.registry_write("developer", registry["data"]["allowed_signers"]),
        timeout=60,
        what="the approver-keys policy to be enforced",
    )
    operator.stop()  # one operator at a time: this one knows the registry
    signing = OperatorProcess(
        cluster.info.kubeconfig,
        tmp / "operator.log",
        f"--namespace={namespace}",
        f"--approver-keys={namespace}/{REGISTRY}",
    )
    try:
        signing.start()
        yield env
    finally:
        signing.stop()
        operator.start()
        # the policies first: the namespace controller may then delete the registry
        cluster.kubectl("delete", "-f", str(manifest), "--ignore-not-found")
        cluster.kubectl("delete", "-f", str(rbac), "--ignore-not-found")
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def create(signed: Signed, api_client, spec: dict) -> Aid:
    aid = Aid(api_client, signed.namespace, f"m-{uuid.uuid4().hex[:6]}")
    developer = config.new_client_from_config(
        config_file=signed.cluster.info.user_kubeconfigs["developer"]
    )
    Aid(developer, signed.namespace, aid.name).create(spec)
    return aid


def test_an_unsigned_approval_of_a_high_tier_model_stays_awaiting_approval(signed, api_client):
    aid = create(signed, api_client, high_tier_spec())
    assert signed.plugin("risk-officer", "accept-risk", aid.name, "--reference", "RISK-7") == 0
    assert signed.plugin("approver", "approve", aid.name) == 0

    def stalled_on_signature() -> str:
        message = aid.condition("Stalled").get("message", "")
        wanted = "aigate.dev/approval-signature: missing: expected an SSH signature (namespace aigate.dev) by a key registered for approver "
        return message if wanted in message else ""

    message = wait_for(stalled_on_signature, timeout=TIMEOUT, what="Stalled naming the signature")
    assert "aigate.dev/approved-by" not in message  # the approval itself is complete
    assert "required by riskTier high (spec.governance.requireSignedApproval unset)" in message
    assert "aigate.dev/risk-acceptance-signature: missing" in message
    assert aid.phase() == "AwaitingApproval"
    assert aid.condition("Stalled")["reason"] == "ApprovalRequired"
    assert aid.condition("Authorized")["status"] == "False"
    wait_for(
        lambda: [m for m in aid.event_messages("ApprovalRequired") if "approval-signature" in m],
        timeout=TIMEOUT,
        what="an Event naming aigate.dev/approval-signature",
    )
    holds_for(lambda: not aid.deployments(), duration=3, what="no workload")


def test_a_signed_approval_opens_the_gate_and_status_records_the_keys(signed, api_client, tmp_path):
    aid = create(signed, api_client, high_tier_spec("2.4.1"))
    key = signed.keys.path
    risk = ("accept-risk", aid.name, "--reference", "RISK-8", "--sign", "--key")
    assert signed.plugin("risk-officer", *risk, str(key("risk-officer"))) == 0
    approve = ("approve", aid.name, "--conditions", "EU only\nuntil review", "--sign", "--key")
    assert signed.plugin("approver", *approve, str(key("approver"))) == 0
    wait_for(lambda: aid.phase() == "Stable", timeout=TIMEOUT * 2, what="Stable once signed")
    approval = aid.status()["approval"]
    assert approval["approvalSignature"]["verified"] is True
    assert approval["approvalSignature"]["signer"] == "approver"
    assert approval["approvalSignature"]["keyFingerprint"] == signed.keys.fingerprint("approver")
    assert approval["riskSignature"]["verified"] is True
    assert approval["riskSignature"]["keyFingerprint"] == signed.keys.fingerprint("risk-officer")
    assert "(verified)" in aid.condition("Authorized")["message"]

    # Interop: OpenSSH accepts the same signature over the same statement with the same
    # allowed_signers, offline.
    annotations = aid.get()["metadata"]["annotations"]
    spec = spec_model(high_tier_spec("2.4.1"))
    statement, _ = statements_of(annotations, compute_revision(spec), "fraud-scorer", "2.4.1")
    result = ssh_keygen_verify(
        signed.allowed, "approver", annotations[gate.APPROVAL_SIGNATURE], statement, tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Good "aigate.dev" signature for approver' in result.stdout + result.stderr


def test_only_platform_admins_may_write_the_key_registry(signed):
    mallory = signed.keys.allowed_signers(("approver", "mallory"))
    for user in ("developer", "approver", "admin"):
        denied = signed.registry_write(user, mallory)
        assert (
            f"only members of aigate:platform-admins may create, change or delete the approver "
            f"key registry ConfigMap {signed.namespace}/{REGISTRY}; user {user} is not one"
            in denied
        ), (user, denied)
    assert "user developer is not one" in signed.registry_write("developer")  # delete
    assert signed.registry_write(None, signed.allowed.read_text()) == ""
