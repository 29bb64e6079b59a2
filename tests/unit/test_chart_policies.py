"""`helm template` output: the chart renders its admission policies by default, each with a
binding, and their rules follow the values (docs/decisions/0008-who-may-write-what.md).
Uses the cached helm binary; no cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from support.chart import render_chart

CHART = Path(__file__).resolve().parents[2] / "charts" / "aigate"
POLICIES = (
    "aigate-approvals",
    "aigate-status",
    "aigate-children",
    "aigate-approver-keys",
    "aigate-records",
)


def render(binaries: Path, *sets: str) -> list[dict]:
    return render_chart(binaries, *sets)


def policies(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"}


def bindings(docs: list[dict]) -> dict[str, dict]:
    kind = "ValidatingAdmissionPolicyBinding"
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def expressions(policy: dict) -> str:
    spec = policy["spec"]
    parts = [v["expression"] for v in spec.get("validations", [])]
    parts += [v["expression"] for v in spec.get("variables", [])]
    return "\n".join(parts)


def test_every_policy_is_rendered_by_default_with_a_denying_binding(binaries):
    docs = render(binaries)
    assert set(policies(docs)) == set(POLICIES)
    for name, binding in bindings(docs).items():
        assert binding["spec"]["policyName"] == name
        assert binding["spec"]["validationActions"] == ["Deny"]
        # The records policy binds the records namespace (the release's) only.
        selector = (
            {"matchLabels": {"kubernetes.io/metadata.name": "aigate-system"}}
            if name == "aigate-records"
            else {}
        )
        assert binding["spec"]["matchResources"] == {"namespaceSelector": selector}
    assert set(bindings(docs)) == set(POLICIES)
    for policy in policies(docs).values():
        assert policy["spec"]["failurePolicy"] == "Fail"


def test_status_and_children_are_written_only_by_the_charts_service_account(binaries):
    docs = render(binaries, "operatorUsers={system:aigate-outside}")
    status, children = policies(docs)["aigate-status"], policies(docs)["aigate-children"]
    (rule,) = status["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["aideployments/status"] and rule["operations"] == ["UPDATE"]
    operators = '["system:serviceaccount:aigate-system:aigate","system:aigate-outside"]'
    assert f"request.userInfo.username in {operators}" == expressions(status)
    resources = {
        r
        for rule in children["spec"]["matchConstraints"]["resourceRules"]
        for r in rule["resources"]
    }
    assert resources == {"deployments", "replicasets", "pods"}  # no subresources
    assert "system:serviceaccount:kube-system:replicaset-controller" in expressions(children)
    assert "aigate.dev/aideployment" in children["spec"]["matchConditions"][0]["expression"]


def test_records_are_append_only_and_written_by_the_operator_alone(binaries):
    records = policies(render(binaries))["aigate-records"]
    text = expressions(records)
    assert "request.operation != 'UPDATE' || request.resource.resource != 'airecords'" in text
    assert "request.operation != 'CREATE' || request.userInfo.username in " in text
    assert '"system:serviceaccount:kube-system:namespace-controller"' in text
    rules = records["spec"]["matchConstraints"]["resourceRules"]
    assert rules[0]["resources"] == ["airecords"]
    assert rules[1]["resourceNames"] == ["aigate-record-signing-key", "aigate-record-keys"]


def test_groups_follow_the_values(binaries):
    default = expressions(policies(render(binaries))["aigate-approvals"])
    assert '["aigate:risk-acceptors"]' in default  # separate from the approvers by default
    assert 'g in ["aigate:approvers","aigate:operators"]' in default  # who may abort
    assert "separation of duties" not in yaml.safe_dump(policies(render(binaries)))
    custom = render(
        binaries,
        "requests.promoteGroups={release-managers}",
        "approvals.separationOfDuties=true",
        "approvals.gitOpsUsers={system:serviceaccount:argocd:argocd-application-controller}",
    )
    text = expressions(policies(custom)["aigate-approvals"])
    assert 'g in ["release-managers"]' in text
    assert '["system:serviceaccount:argocd:argocd-application-controller"]' in text
    assert "variables.specChanged" in text


@pytest.mark.parametrize(
    ("setting", "gone"),
    [
        ("approvals.policy=false", "aigate-approvals"),
        ("statusPolicy.enabled=false", "aigate-status"),
        ("childrenPolicy.enabled=false", "aigate-children"),
        ("approverKeys.enabled=false", "aigate-approver-keys"),
        ("records.policy=false", "aigate-records"),
    ],
)
def test_each_policy_can_be_turned_off(binaries, setting, gone):
    docs = render(binaries, setting)
    assert gone not in policies(docs) and gone not in bindings(docs)
    assert set(policies(docs)) == set(POLICIES) - {gone}


def test_the_approver_key_registry_is_kept_written_by_platform_admins_and_read_by_the_operator(
    binaries,
):
    line = 'jane@example.com namespaces="aigate.dev" ssh-ed25519 AAAAC3Nza'
    docs = render(binaries, f"approverKeys.allowedSigners={{{line}}}")
    (registry,) = [
        d for d in docs if d["kind"] == "ConfigMap" and "approver-keys" in d["metadata"]["name"]
    ]
    assert registry["metadata"]["name"] == "aigate-approver-keys"
    assert registry["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert line + "\n" in registry["data"]["allowed_signers"]
    policy = policies(docs)["aigate-approver-keys"]
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resourceNames"] == ["aigate-approver-keys"]
    assert set(rule["operations"]) == {"CREATE", "UPDATE", "DELETE"}
    assert policy["spec"]["matchConstraints"]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "aigate-system"}
    }
    assert 'g in ["aigate:platform-admins"]' in expressions(policy)
    (role,) = [
        d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "aigate-approver-keys"
    ]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["aigate-approver-keys"],
            "verbs": ["get"],
        }
    ]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--approver-keys=aigate-system/aigate-approver-keys" in args
    approvals = expressions(policies(docs)["aigate-approvals"])
    assert "'aigate.dev/approval-conditions', 'aigate.dev/approval-signature'" in approvals
    assert "'aigate.dev/risk-accepted-by', 'aigate.dev/risk-acceptance-signature'" in approvals
