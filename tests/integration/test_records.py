"""Durable signed records (AIRecords) with the real operator on the real control plane:
written for every decision, outliving the AIDeployment, and `kubectl aigate verify`
catching a forged, a removed and a replayed record. (The chart's records policy, which
keeps everyone but the operator from writing records, is tested in test_records_policy.)"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client

from aigate.api.records import RECORD_PLURAL
from aigate.core import gate
from aigate.core.revision import compute_revision
from support.factories import approval_annotations, image_for, request, spec_dict, spec_model
from support.kube import Aid, kubectl_aigate
from support.waiting import wait_for

RECORDS_NAMESPACE = "aigate-system"
TIMEOUT = 90
ABORT = gate.PREFIX + "abort"


def records(api_client, uid: str) -> list[dict]:
    items = (
        client.CustomObjectsApi(api_client)
        .list_namespaced_custom_object(
            "aigate.dev",
            "v1alpha1",
            RECORDS_NAMESPACE,
            RECORD_PLURAL,
            label_selector=f"aigate.dev/subject-uid={uid}",
        )
        .get("items")
    )
    return sorted(items, key=lambda i: i["spec"]["sequence"])


def delivered(aid: Aid, api_client) -> list[dict]:
    """Every sealed record is created and the outbox is empty."""

    def done():
        state = aid.status().get("records") or {}
        found = records(api_client, aid.get()["metadata"]["uid"])
        last = state.get("lastSequence", 0)
        return not state.get("outbox") and last and len(found) == last and found

    return wait_for(done, timeout=TIMEOUT, what="every record delivered")


def stable(api_client, namespace: str, version: str = "2.4.0", aid: Aid | None = None) -> Aid:
    spec = spec_dict(
        model={**spec_dict()["model"], "version": version},
        template={"spec": {"containers": [{"name": "server", "image": image_for(version)}]}},
    )
    at = datetime.now(UTC) - timedelta(seconds=5)
    annotations = approval_annotations(compute_revision(spec_model(spec)), at)
    if aid is None:
        aid = Aid(api_client, namespace, "fraud-scorer")
        aid.create(spec, annotations)
    else:
        aid.patch({"spec": spec, "metadata": {"annotations": annotations}})
    return aid


def wait_phase(aid: Aid, *phases: str) -> dict:
    return wait_for(
        lambda: aid.phase() in phases and aid.status(),
        timeout=TIMEOUT,
        what=f"phase {phases} (now {aid.phase()!r})",
    )


def custom(api_client):
    return client.CustomObjectsApi(api_client)


def _replace(api_client, item: dict) -> None:
    custom(api_client).replace_namespaced_custom_object(
        "aigate.dev", "v1alpha1", RECORDS_NAMESPACE, RECORD_PLURAL, item["metadata"]["name"], item
    )


def _create(api_client, item: dict) -> None:
    body = {k: item[k] for k in ("apiVersion", "kind", "spec")}
    body["metadata"] = {k: item["metadata"][k] for k in ("name", "labels")}
    custom(api_client).create_namespaced_custom_object(
        "aigate.dev", "v1alpha1", RECORDS_NAMESPACE, RECORD_PLURAL, body
    )


def _delete(api_client, name: str) -> None:
    custom(api_client).delete_namespaced_custom_object(
        "aigate.dev", "v1alpha1", RECORDS_NAMESPACE, RECORD_PLURAL, name
    )


@pytest.mark.usefixtures("operator")
def test_records_survive_a_request_flood_and_verify_catches_forged_removed_and_replayed(
    cluster, api_client, namespace
):
    aid = stable(api_client, namespace)
    wait_phase(aid, "Stable")
    # A breach: the next version is aborted while it rolls out, so it is rolled back.
    stable(api_client, namespace, "2.5.0", aid)
    status = wait_phase(aid, "Deploying", "Progressing", "Paused")
    candidate = status["rollout"]["candidate"]["revision"]
    aid.annotate({ABORT: request("abort", candidate, text="breach drill")})
    wait_phase(aid, "RolledBack")
    found = delivered(aid, api_client)
    state = aid.status()["records"]
    approval_seq, breach_seq = state["lastApprovalSequence"], state["lastBreachSequence"]
    assert found[approval_seq - 1]["spec"]["reason"] == "ApprovalRecorded"
    assert found[breach_seq - 1]["spec"]["toPhase"] == "RollingBack"

    # 200 request values: status keeps a bounded summary, the records keep everything.
    for i in range(200):
        aid.annotate({ABORT: request("abort", text=f"flood {i}")})
    wait_for(
        lambda: (
            (aid.status().get("requests") or {})
            .get("abort", {})
            .get("value", "")
            .endswith("flood 199")
        ),
        timeout=TIMEOUT,
        what="the last flood value handled",
    )
    found = delivered(aid, api_client)
    assert len(json.dumps(aid.status()["history"])) <= 32 * 1024
    assert found[approval_seq - 1]["spec"]["approval"]["approvedBy"] == "jane@example.com"
    assert found[approval_seq - 1]["spec"]["content"]["model"]["version"] == "2.5.0"
    assert found[breach_seq - 1]["spec"]["toPhase"] == "RollingBack"
    out = kubectl_aigate(cluster, "verify", "fraud-scorer", "-n", namespace)
    assert "records intact" in out and f"{len(found)} record(s)" in out

    # Forged: a record's message changed (the digest no longer matches, nor could a new one
    # be signed without the operator's key).
    forged = copy.deepcopy(found[breach_seq - 1])
    forged["spec"]["message"] = "nothing happened"
    _replace(api_client, forged)
    out = kubectl_aigate(cluster, "verify", "fraud-scorer", "-n", namespace, expect=1)
    assert f"sequence {breach_seq} (" in out and "altered after it was recorded" in out
    restored = custom(api_client).get_namespaced_custom_object(
        "aigate.dev", "v1alpha1", RECORDS_NAMESPACE, RECORD_PLURAL, forged["metadata"]["name"]
    )
    _replace(api_client, {**restored, "spec": found[breach_seq - 1]["spec"]})
    kubectl_aigate(cluster, "verify", "fraud-scorer", "-n", namespace)

    # Removed: the approval record.
    _delete(api_client, found[approval_seq - 1]["metadata"]["name"])
    out = kubectl_aigate(cluster, "verify", "fraud-scorer", "-n", namespace, expect=1)
    assert f"sequence {approval_seq} missing (in the middle): removed" in out
    _create(api_client, found[approval_seq - 1])

    # Replayed: a handled request copied under another name.
    handled = next(r for r in found if r["spec"]["reason"] == "RequestHandled")
    replay = copy.deepcopy(handled)
    replay["metadata"]["name"] = "fraud-scorer-replay"
    _create(api_client, replay)
    out = kubectl_aigate(cluster, "verify", "fraud-scorer", "-n", namespace, expect=1)
    assert "a copy of a record under another name" in out and "a replayed copy" in out
    _delete(api_client, "fraud-scorer-replay")
    kubectl_aigate(cluster, "verify", "fraud-scorer", "-n", namespace)


@pytest.mark.usefixtures("operator")
def test_a_crash_between_status_and_record_loses_nothing_and_deletion_keeps_the_records(
    cluster, api_client, namespace, operator, tmp_path
):
    aid = stable(api_client, namespace)
    wait_phase(aid, "Stable")
    found = delivered(aid, api_client)
    uid = aid.get()["metadata"]["uid"]
    # The state a SIGKILL leaves after the decision's status write and before its record's
    # create: the last record sealed in status.records.outbox, not on the API server.
    operator.kill()
    try:
        last = found[-1]
        _delete(api_client, last["metadata"]["name"])
        custom(api_client).patch_namespaced_custom_object_status(
            "aigate.dev",
            "v1alpha1",
            namespace,
            "aideployments",
            "fraud-scorer",
            {"status": {"records": {"outbox": [last["spec"]]}}},
        )
        out = kubectl_aigate(cluster, "verify", "fraud-scorer", "-n", namespace, expect=1)
        assert f"sequence {last['spec']['sequence']} missing (at the end" in out
    finally:
        operator.start()
    again = delivered(aid, api_client)
    assert again[-1]["spec"] == last["spec"]
    kubectl_aigate(cluster, "verify", "fraud-scorer", "-n", namespace)

    # Deleted: the records stay, closed by DeploymentDeleted, and verify still works.
    custom(api_client).delete_namespaced_custom_object(
        "aigate.dev", "v1alpha1", namespace, "aideployments", "fraud-scorer"
    )
    wait_for(lambda: aid_gone(api_client, namespace), timeout=TIMEOUT, what="deletion done")
    kept = records(api_client, uid)
    assert kept[-1]["spec"]["reason"] == "DeploymentDeleted"
    assert len(kept) == len(found) + 1
    out = kubectl_aigate(cluster, "verify", "fraud-scorer", "-n", namespace, "--uid", uid)
    assert "records intact" in out
    # Offline: the export, checked with the public key pinned.
    export = tmp_path / "records.json"
    export.write_text(
        kubectl_aigate(cluster, "records", "fraud-scorer", "-n", namespace, "--uid", uid)
    )
    keys = json.loads(
        client.CoreV1Api(api_client)
        .read_namespaced_config_map("aigate-record-keys", RECORDS_NAMESPACE)
        .data["keys.json"]
    )
    key_file = tmp_path / "operator.pub"
    key_file.write_text(next(iter(keys.values())))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "aigate.cli",
            "verify",
            "--from",
            str(export),
            "--public-key",
            str(key_file),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "records intact" in result.stdout, result.stdout


def aid_gone(api_client, namespace: str) -> bool:
    try:
        custom(api_client).get_namespaced_custom_object(
            "aigate.dev", "v1alpha1", namespace, "aideployments", "fraud-scorer"
        )
    except client.ApiException as error:
        return error.status == 404
    return False
