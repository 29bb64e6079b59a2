"""The Helm chart: it lints, renders what production needs, and its RBAC is enough for the
operator to do its whole job (the operator runs with the chart's ServiceAccount token)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from aigate import crdgen
from aigate.core.revision import compute_revision
from localcluster.operator import OperatorProcess
from support.chart import render_chart
from support.factories import approval_annotations, spec_model
from support.kube import Aid
from support.scenarios import NAME, ModelServers, plan
from support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "aigate"
RELEASE_NAMESPACE = "aigate-system"


def helm(cluster, *args: str) -> str:
    result = subprocess.run(
        [str(cluster.bin / "helm"), *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def rendered(cluster, *sets: str) -> list[dict]:
    return render_chart(cluster.bin, *sets, namespace=RELEASE_NAMESPACE)


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def test_chart_lints_and_renders_a_non_root_single_replica_operator(cluster):
    helm(cluster, "lint", "--strict", str(CHART))
    docs = rendered(cluster, "watchNamespaces={team-a,team-b}")
    (deployment,) = by_kind(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "--namespace=team-a" in container["args"] and "--namespace=team-b" in container["args"]


def test_chart_crd_is_the_generated_one_and_survives_uninstall(cluster):
    crds = {
        c["metadata"]["name"]: c for c in by_kind(rendered(cluster), "CustomResourceDefinition")
    }
    assert set(crds) == {"aideployments.aigate.dev", "airecords.aigate.dev"}
    for which in ("aideployments", "airecords"):
        crd = crds[f"{which}.aigate.dev"]
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        del crd["metadata"]["annotations"]
        assert crd == yaml.safe_load(crdgen.render(which))
    assert not by_kind(rendered(cluster, "crds.install=false"), "CustomResourceDefinition")


def test_rbac_reads_secrets_only_when_asked(cluster):
    def secret_rules(docs):
        (role,) = by_kind(docs, "ClusterRole")
        return [r for r in role["rules"] if "secrets" in r["resources"]]

    assert secret_rules(rendered(cluster)) == []
    assert secret_rules(rendered(cluster, "rbac.readSecrets=true")) == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    ]


USER_DATA = {
    "aideployments",
    "aideployments/status",
    "deployments",
    "services",
    "events",
    "secrets",
    "httproutes",  # the Gateway API router: get and update only
    "inferencepools",
}


def granted(role: dict) -> set[str]:
    return {resource for rule in role["rules"] for resource in rule["resources"]}


def test_rbac_without_watch_namespaces_is_one_cluster_role(cluster):
    docs = rendered(cluster, "rbac.readSecrets=true")
    (role,) = by_kind(docs, "ClusterRole")
    assert granted(role) >= USER_DATA
    # The only Roles: in the release namespace (the approver key registry's reader and the
    # records namespace's), none in users' namespaces.
    assert {r["metadata"]["namespace"] for r in by_kind(docs, "Role")} == {RELEASE_NAMESPACE}
    assert {r["metadata"]["name"] for r in by_kind(docs, "Role")} == {
        "aigate-approver-keys",
        "aigate-records",
        "aigate-record-readers",
    }
    (deployment,) = by_kind(docs, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args if a.startswith("--namespace")]
    assert "--require-approval-policy=aigate-approvals" in args
    assert "--require-signed-approval=high" in args  # the floor no spec can lower


def test_rbac_with_watch_namespaces_grants_users_data_only_there(cluster):
    docs = rendered(
        cluster,
        "watchNamespaces={team-a,team-b}",
        "rbac.readSecrets=true",
        "rbac.secretNames={prom}",
    )
    (cluster_role,) = by_kind(docs, "ClusterRole")
    # Only cluster-scoped reads: kopf's discovery and the approval policy.
    assert granted(cluster_role) == {
        "customresourcedefinitions",
        "namespaces",
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
    }
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in cluster_role["rules"])
    roles = [r for r in by_kind(docs, "Role") if r["metadata"]["namespace"] != RELEASE_NAMESPACE]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert granted(role) == USER_DATA
        (routes,) = [r for r in role["rules"] if r["resources"] == ["httproutes"]]
        assert routes["verbs"] == ["get", "update"]  # never create, patch or delete a route
        (secrets,) = [r for r in role["rules"] if r["resources"] == ["secrets"]]
        assert secrets == {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get"],
            "resourceNames": ["prom"],
        }
    bindings = [
        b for b in by_kind(docs, "RoleBinding") if b["metadata"]["namespace"] != RELEASE_NAMESPACE
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "aigate",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "aigate", "namespace": RELEASE_NAMESPACE}
        ]
    without_secrets = rendered(cluster, "watchNamespaces={team-a}")
    # (the records Role in the release namespace reads the signing key's Secret by name only)
    users = [r for r in by_kind(without_secrets, "Role") if r["metadata"]["namespace"] == "team-a"]
    assert users and all("secrets" not in granted(r) for r in users)
    no_gateway = rendered(cluster, "watchNamespaces={team-a}", "rbac.gatewayAPI=false")
    users = [r for r in by_kind(no_gateway, "Role") if r["metadata"]["namespace"] == "team-a"]
    assert users and all(not granted(r) & {"httproutes", "inferencepools"} for r in users)


def test_fail_closed_is_on_by_default_and_can_be_turned_off(cluster):
    def args_and_rules(*sets):
        docs = rendered(cluster, *sets)
        (deployment,) = by_kind(docs, "Deployment")
        (role,) = by_kind(docs, "ClusterRole")
        return deployment["spec"]["template"]["spec"]["containers"][0]["args"], granted(role)

    args, rules = args_and_rules("approvals.requiredPolicyName=platform-approvals")
    assert "--require-approval-policy=platform-approvals" in args
    assert "validatingadmissionpolicybindings" in rules
    args, rules = args_and_rules("approvals.requirePolicy=false")
    assert not [a for a in args if a.startswith("--require-approval-policy")]
    assert "validatingadmissionpolicies" not in rules


@pytest.fixture
def chart_identity(cluster, tmp_path):
    """The chart's ServiceAccount and RBAC applied; a kubeconfig holding its token."""
    cluster.kubectl("create", "namespace", RELEASE_NAMESPACE, check=False)
    docs = [
        d
        for d in rendered(cluster)
        # Roles too: the records namespace's (AIRecords, the signing key, the public keys).
        if d["kind"]
        in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    ]
    manifest = tmp_path / "rbac.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    cluster.kubectl("apply", "-f", str(manifest))
    yield cluster.service_account_kubeconfig(
        RELEASE_NAMESPACE, "aigate", tmp_path / "kubeconfig-aigate-sa"
    )
    cluster.kubectl("delete", "-f", str(manifest), "--ignore-not-found")


@pytest.fixture
def operator_only_policies(cluster, namespace, tmp_path):
    """The chart's status and children policies, bound to the test's namespace only (under
    their own names, so nothing else in the session meets them): the operator's
    ServiceAccount and the built-in controllers must get through them."""
    cluster.kubectl("label", "namespace", namespace, f"aigate-chart-test={namespace}")
    docs = [
        d
        for d in rendered(
            cluster, f"approvals.namespaceSelector.matchLabels.aigate-chart-test={namespace}"
        )
        if d["kind"].startswith("ValidatingAdmissionPolicy")
        # the records' and key registry's policies bind the release namespace, which the
        # session's admin-run operator writes records to: they have tests of their own
        and not d["metadata"]["name"].endswith(("-approvals", "-records", "-approver-keys"))
    ]
    for doc in docs:
        doc["metadata"]["name"] = f"chart-test-{doc['metadata']['name']}"
        if "policyName" in doc["spec"]:
            doc["spec"]["policyName"] = f"chart-test-{doc['spec']['policyName']}"
    manifest = tmp_path / "policies.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    cluster.kubectl("apply", "-f", str(manifest))
    # enforced once the admin's status write is refused (the API server loads bindings
    # asynchronously); the object is a throwaway
    probe = {"apiVersion": "aigate.dev/v1alpha1", "kind": "AIDeployment"}
    probe["metadata"], probe["spec"] = {"name": "probe"}, plan(cluster.info.prometheus_url, "0")
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump(probe))
    cluster.kubectl("apply", "-n", namespace, "-f", str(tmp_path / "probe.yaml"))
    patch = ("patch", "aid", "probe", "-n", namespace, "--subresource=status", "--type=merge")
    wait_for(
        lambda: (
            "written only by the aigate operator"
            in _stderr(cluster, *patch, "-p", '{"status":{"phase":"Stable"}}')
        ),
        timeout=60,
        what="the status policy to be enforced",
    )
    # Not waited for: its deletion record is written by the operator the test starts (the
    # session's admin-run operator may not write status behind these policies).
    cluster.kubectl("delete", "aid", "probe", "-n", namespace, "--wait=false")
    yield
    cluster.kubectl("delete", "-f", str(manifest), "--ignore-not-found")


def _stderr(cluster, *args: str) -> str:
    result = subprocess.run(
        [str(cluster.bin / "kubectl"), f"--kubeconfig={cluster.info.kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stderr


ROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "models"},
    "spec": {
        "parentRefs": [{"name": "gateway"}],
        "rules": [{"backendRefs": [{"name": f"{NAME}-stable", "port": 8080}]}],
    },
}


def test_operator_does_its_whole_job_with_only_the_charts_rbac(
    cluster,
    api_client,
    namespace,
    operator,
    chart_identity,
    operator_only_policies,
    gateway_crds,
    tmp_path,
):
    """As the chart's ServiceAccount, with the chart's RBAC, behind the chart's status and
    children policies (which refuse even the admin), with the Gateway API router."""
    from kubernetes import client

    routes = client.CustomObjectsApi(api_client)
    gw = ("gateway.networking.k8s.io", "v1", namespace, "httproutes")
    routes.create_namespaced_custom_object(*gw, ROUTE)
    traffic = {"gatewayAPI": {"httpRoute": "models"}}
    operator.stop()  # one operator at a time: this one runs as the chart's ServiceAccount
    restricted = OperatorProcess(chart_identity, tmp_path / "operator.log")
    try:
        restricted.start()
        servers = ModelServers(cluster.info.exporter_url, namespace)
        servers.set("stable", error=0.001)
        servers.set("canary", error=0.5)
        aid = Aid(api_client, namespace, NAME)
        v1 = plan(cluster.info.prometheus_url, "2.4.0")
        v1["rollout"]["traffic"] = traffic
        aid.create(v1)
        wait_for(lambda: aid.phase() == "AwaitingApproval", timeout=60, what="refusal")
        aid.wait_event("ApprovalRequired", "approved-by")  # Events allowed
        now = datetime.now(UTC) - timedelta(seconds=5)
        aid.annotate(approval_annotations(compute_revision(spec_model(v1)), now))
        wait_for(lambda: aid.phase() == "Stable", timeout=120, what="v1 Stable")
        v2 = plan(cluster.info.prometheus_url, "2.5.0")
        v2["rollout"]["traffic"] = traffic
        aid.patch({"spec": v2})
        aid.annotate(approval_annotations(compute_revision(spec_model(v2)), now))
        wait_for(lambda: aid.phase() == "RolledBack", timeout=120, what="canary rolled back")
        wait_for(lambda: not aid.pods("canary"), timeout=60, what="canary deleted")
        rule = routes.get_namespaced_custom_object(*gw, "models")["spec"]["rules"][0]
        assert {r["name"]: r["weight"] for r in rule["backendRefs"]} == {
            f"{NAME}-stable": 100,
            f"{NAME}-canary": 0,
        }
        assert aid.condition("TrafficRouted")["status"] == "True"
        log = (tmp_path / "operator.log").read_text()
        assert "Forbidden" not in log and " 403" not in log, log[-3000:]
    finally:
        restricted.stop()
        operator.start()
