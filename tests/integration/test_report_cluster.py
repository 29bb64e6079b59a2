"""`kubectl aigate report` against the real API server: records listed from their
namespace, the AIDeployment gone, the report still written from the records alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from kubernetes import client

from aigate import kubectl_plugin
from aigate.api import records as api
from aigate.api.v1alpha1 import GROUP, VERSION
from support.records import T0, RecordLog, two_rollouts
from support.waiting import wait_for

pytestmark = pytest.mark.cluster


def test_report_of_a_deleted_aideployment_from_its_records(
    cluster, api_client, namespace, crd_installed, tmp_path, capsys
):
    custom = client.CustomObjectsApi(api_client)
    log = two_rollouts()
    other = RecordLog(name="other-model", uid="another-uid")  # in the same namespace
    for day in range(3):
        other.approve(T0 + timedelta(days=day), f"1.{day}.0", by="someone-else@example.com")
    for item in log.export()["items"][:40] + other.export()["items"][:3]:
        item["metadata"] = {
            "name": f"{item['spec']['subject']['name']}-{item['spec']['sequence']:08d}"
        }
        item["spec"]["subject"]["namespace"] = "ml"
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, api.RECORD_PLURAL, item)
    wait_for(
        lambda: (
            len(
                custom.list_namespaced_custom_object(GROUP, VERSION, namespace, api.RECORD_PLURAL)[
                    "items"
                ]
            )
            == 43
        ),
        timeout=30,
        what="43 AIRecords listed",
    )

    out = tmp_path / "report.html"
    code = kubectl_plugin.main(
        [
            "--kubeconfig",
            str(cluster.info.kubeconfig),
            "report",
            "fraud-scorer",
            "-n",
            "ml",
            "--records-namespace",
            namespace,
            "--output",
            str(out),
        ]
    )
    assert code == 0
    assert f"report written to {out} (40 records, chain intact)" in capsys.readouterr().out
    html = out.read_text()
    assert "The AIDeployment no longer exists" in html
    assert 'class="approver">jane@example.com<' in html
    assert "other-model" not in html and "someone-else" not in html
