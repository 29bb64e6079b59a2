"""The chart's records policy on the real API server: AIRecords are created and deleted by
the operator's ServiceAccount alone and changed by nobody (a developer, the cluster admin
and the operator itself are each tried); and the operator's retention sweep deletes the
records whose expiresAt has passed and keeps the others."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from aigate.adapters.records import RecordStore, manifest
from aigate.api.records import RECORD_PLURAL
from aigate.api.v1alpha1 import GROUP, VERSION
from support.chart import render_chart
from support.records import RecordLog
from support.waiting import wait_for

RELEASE = "recpol"
RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: aigate-records-policy-test}
rules:
  - apiGroups: [aigate.dev]
    resources: [airecords]
    verbs: [get, list, create, patch, update, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: aigate-records-policy-test, namespace: NAMESPACE}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: aigate-records-policy-test}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}
"""


def records_api(kubeconfig: str | Path) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(config_file=str(kubeconfig)))


def refusal(call) -> str:
    """'' when the API server accepted the call, else its message."""
    try:
        call()
    except ApiException as error:
        return str(error.body)
    return ""


def test_only_the_operator_creates_and_deletes_records_and_nobody_changes_one(
    cluster, crd_installed, namespace, tmp_path
):
    docs = [
        d
        for d in render_chart(cluster.bin, release=RELEASE, namespace=namespace)
        if d["kind"].startswith("ValidatingAdmissionPolicy")
        and d["metadata"]["name"] == f"{RELEASE}-aigate-records"
    ]
    assert len(docs) == 2
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump_all(docs))
    (tmp_path / "rbac.yaml").write_text(RBAC.replace("NAMESPACE", namespace))
    cluster.kubectl("apply", "-f", str(tmp_path / "rbac.yaml"))
    cluster.kubectl("create", "serviceaccount", f"{RELEASE}-aigate", "-n", namespace)
    operator = records_api(
        cluster.service_account_kubeconfig(namespace, f"{RELEASE}-aigate", tmp_path / "sa")
    )
    developer = records_api(cluster.info.user_kubeconfigs["developer"])
    admin = records_api(cluster.info.kubeconfig)
    log = RecordLog(namespace=namespace)
    at = datetime(2026, 11, 24, tzinfo=UTC)
    first, second = log.add(at, "ApprovalRecorded"), log.add(at, "RolloutStarted")

    def create(api, spec) -> str:
        body = manifest(spec, namespace)
        return refusal(
            lambda: api.create_namespaced_custom_object(
                GROUP, VERSION, namespace, RECORD_PLURAL, body
            )
        )

    def name_of(spec) -> str:
        return manifest(spec, namespace)["metadata"]["name"]

    try:
        cluster.kubectl("apply", "-f", str(tmp_path / "policy.yaml"))
        # Bindings are picked up asynchronously: enforced once the developer is refused.
        # (a new record per attempt: one made before enforcement is simply accepted)
        probes = RecordLog(namespace=namespace, uid="00000000-0000-4000-8000-000000000001")
        refused = wait_for(
            lambda: create(developer, probes.add(at, "Probe")),
            timeout=60,
            what="the records policy enforced",
        )
        assert "only the aigate operator" in refused and "developer may not" in refused
        assert "only the aigate operator" in create(admin, first)
        assert create(operator, first) == "" and create(operator, second) == ""

        patch = {"spec": {"message": "rewritten"}}
        for who, api in (("developer", developer), ("admin", admin), ("operator", operator)):
            message = refusal(
                lambda api=api: api.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, RECORD_PLURAL, name_of(first), patch
                )
            )
            assert "AIRecords are append-only" in message, (who, message)
        for api in (developer, admin):
            message = refusal(
                lambda api=api: api.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, RECORD_PLURAL, name_of(second)
                )
            )
            assert "only the aigate operator" in message and "deletes" in message
        assert (
            refusal(
                lambda: operator.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, RECORD_PLURAL, name_of(second)
                )
            )
            == ""
        )
    finally:
        cluster.kubectl("delete", "-f", str(tmp_path / "policy.yaml"), "--ignore-not-found")
        cluster.kubectl("delete", "-f", str(tmp_path / "rbac.yaml"), "--ignore-not-found")


def test_the_retention_sweep_deletes_expired_records_only(
    cluster, api_client, crd_installed, namespace
):
    store = RecordStore(api_client, namespace)
    now = datetime.now(UTC).replace(microsecond=0)
    log = RecordLog(namespace=namespace)
    expired = log.add(now - timedelta(days=401), "ApprovalRecorded")
    kept = log.add(now - timedelta(days=1), "RolloutStarted")
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    expired = expired.model_copy(update={"expires_at": (now - timedelta(days=1)).strftime(stamp)})
    kept = kept.model_copy(update={"expires_at": (now + timedelta(days=399)).strftime(stamp)})
    for spec in (expired, kept):
        store.create(spec)
    assert store.delete_expired(now) == 1
    left = [item["spec"]["sequence"] for item in store.list()]
    assert left == [kept.sequence]
