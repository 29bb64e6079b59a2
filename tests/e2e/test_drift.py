"""End to end: what runs is what aigate wrote (issue 8, "what runs is what was approved").

Against the real API server, controllers and kwok: a person's `kubectl set image` or
`kubectl patch` on aigate's Deployments and Service is found by its content digest,
reverted and recorded; a Deployment someone else made with aigate's name (even with a
hand-written ownerReference) is never taken as the approved stable; the Service selects
only pods of aigate's own Deployments; a high-risk model's images must be pinned.
"""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client

from support.chart import bare_deployment
from support.factories import image_for
from support.kube import Aid
from support.scenarios import NAME
from support.waiting import wait_for

from .test_rollout_scenarios import TIMEOUT, approvals, revision_of, spec_of, stable_v1

pytestmark = pytest.mark.usefixtures("operator")


def drift_entries(aid: Aid) -> list[dict]:
    return [h for h in aid.status().get("history") or [] if h["reason"] == "DriftDetected"]


def stable_image(aid: Aid) -> str:
    deployment = aid.apps.read_namespaced_deployment(f"{NAME}-stable", aid.namespace)
    return deployment.spec.template.spec.containers[0].image


def counter(operator, name: str, *labels: str) -> float:
    """The value of the first series of `name` whose labels include all of `labels`."""
    import urllib.request

    text = urllib.request.urlopen(operator.metrics_url, timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + "{") and all(label in line for label in labels):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_kubectl_set_image_on_stable_is_reverted_and_recorded(
    cluster, api_client, namespace, operator
):
    aid, v1 = stable_v1(cluster, api_client, namespace)
    written = stable_image(aid)
    assert written == image_for("2.4.0")
    started = time.monotonic()
    cluster.kubectl(
        "set", "image", f"deployment/{NAME}-stable", "server=evil:latest", "-n", namespace
    )
    wait_for(lambda: stable_image(aid) == written, timeout=TIMEOUT, what="the image reverted")
    reverted_after = time.monotonic() - started
    (entry,) = wait_for(lambda: drift_entries(aid), timeout=TIMEOUT, what="a DriftDetected record")
    assert f"Deployment {NAME}-stable was changed outside aigate" in entry["message"]
    assert "spec.template.spec.containers[name=server].image (kubectl-set)" in entry["message"]
    assert wait_for(lambda: aid.event_messages("DriftDetected"), timeout=TIMEOUT, what="Event")
    assert wait_for(
        lambda: counter(operator, "aigate_drift_detected_total", f'namespace="{namespace}"') >= 1,
        timeout=TIMEOUT,
        what="the metric",
    )
    # written back whole: a PUT, as counted by the operator's own request metric
    assert counter(operator, "aigate_api_requests_total", 'verb="PUT"', 'resource="deployments"')
    wait_for(
        lambda: aid.phase() == "Stable" and len(aid.ready_pods("stable")) == 4,
        timeout=TIMEOUT,
        what="v1 serving again with 4 Ready pods",
    )
    assert aid.status()["stableRevision"] == v1
    print(f"\nkubectl set image reverted after {reverted_after:.2f} s")


def test_a_field_added_by_hand_is_removed_not_just_overwritten(cluster, api_client, namespace):
    """Server-side apply would keep a field another client added; aigate writes the whole
    object back."""
    aid, _ = stable_v1(cluster, api_client, namespace)
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "server", "command": ["sh"]}]}}}
    }
    cluster.kubectl(
        "patch", "deployment", f"{NAME}-stable", "-n", namespace, "-p", json.dumps(patch)
    )

    def command():
        deployment = aid.apps.read_namespaced_deployment(f"{NAME}-stable", namespace)
        return deployment.spec.template.spec.containers[0].command

    wait_for(lambda: command() is None, timeout=TIMEOUT, what="the added command removed")
    assert wait_for(lambda: drift_entries(aid), timeout=TIMEOUT, what="a DriftDetected record")


def test_a_changed_service_selector_is_reverted(cluster, api_client, namespace):
    aid, _ = stable_v1(cluster, api_client, namespace)
    selector = aid.core.read_namespaced_service(NAME, namespace).spec.selector
    cluster.kubectl(
        "patch", "service", NAME, "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"selector": {"app": "rogue"}}}),
    )  # fmt: skip
    wait_for(
        lambda: aid.core.read_namespaced_service(NAME, namespace).spec.selector == selector,
        timeout=TIMEOUT,
        what="the Service's selector reverted",
    )
    entries = wait_for(lambda: drift_entries(aid), timeout=TIMEOUT, what="a DriftDetected record")
    assert any(f"Service {NAME} was changed outside aigate" in h["message"] for h in entries)


def test_a_hand_made_deployment_with_an_owner_reference_is_never_adopted(
    cluster, api_client, namespace
):
    aid = Aid(api_client, namespace, NAME)
    spec = spec_of(cluster, "2.4.0")
    v1 = revision_of(spec)
    created = aid.create(spec)  # not approved yet: aigate creates nothing
    wait_for(lambda: aid.phase() == "AwaitingApproval", timeout=TIMEOUT, what="AwaitingApproval")
    labels = {"aigate.dev/aideployment": NAME, "aigate.dev/track": "stable"}
    forged = bare_deployment(
        f"{NAME}-stable",
        labels,
        owner={
            "apiVersion": "aigate.dev/v1alpha1",
            "kind": "AIDeployment",
            "name": NAME,
            "uid": created["metadata"]["uid"],
            "controller": True,
        },
        image="evil:latest",
    )
    forged["metadata"]["annotations"] = {"aigate.dev/revision": v1}
    aid.apps.create_namespaced_deployment(namespace, forged)
    aid.annotate(approvals(v1))
    wait_for(lambda: aid.phase() == "Failed", timeout=TIMEOUT, what="Failed")
    stalled = aid.condition("Stalled")
    assert stalled["reason"] == "ChildConflict"
    assert f"Deployment {NAME}-stable (uid " in stalled["message"]
    assert "was not created by aigate" in stalled["message"]
    assert stable_image(aid) == "evil:latest"  # untouched, and never reported as serving
    assert not aid.status().get("stableRevision")


def test_the_service_selects_only_pods_of_aigates_deployments(cluster, api_client, namespace):
    aid, _ = stable_v1(cluster, api_client, namespace)
    uid = aid.get()["metadata"]["uid"]
    slices = client.DiscoveryV1Api(api_client)

    def endpoint_pods() -> set[str]:
        found = set()
        for item in slices.list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={NAME}"
        ).items:
            for endpoint in item.endpoints or []:
                if endpoint.target_ref is not None:
                    found.add(endpoint.target_ref.name)
        return found

    stable_pods = {p.metadata.name for p in aid.ready_pods("stable")}
    wait_for(lambda: endpoint_pods() == stable_pods, timeout=TIMEOUT, what="4 endpoints")

    def pod(name: str, labels: dict[str, str]) -> None:
        aid.core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": name, "labels": labels},
                "spec": {"containers": [{"name": "c", "image": "rogue"}]},
            },
        )

    # A pod that copies the name label only, then one with every label the Service selects:
    # once the second is an endpoint, the endpoint controller has seen the first too.
    pod("rogue-name-only", {"aigate.dev/aideployment": NAME})
    selector = aid.core.read_namespaced_service(NAME, namespace).spec.selector
    assert selector["aigate.dev/aideployment-uid"] == uid
    pod("rogue-all-labels", dict(selector))
    wait_for(
        lambda: "rogue-all-labels" in endpoint_pods(),
        timeout=TIMEOUT,
        what="the fully labelled pod as an endpoint (the admission policy keeps it out)",
    )
    assert "rogue-name-only" not in endpoint_pods()


def test_an_unpinned_image_for_a_high_risk_model_is_refused_naming_the_container(
    cluster, api_client, namespace
):
    aid = Aid(api_client, namespace, NAME)
    spec = spec_of(cluster, "2.4.0")
    spec["template"]["spec"]["containers"][0]["image"] = "fraud-scorer:2.4.0"
    aid.create(spec, approvals(revision_of(spec)))
    wait_for(lambda: aid.phase() == "Failed", timeout=TIMEOUT, what="Failed")
    message = aid.condition("Stalled")["message"]
    assert "spec.template.spec.containers[0] (container 'server')" in message
    assert "'fraud-scorer:2.4.0' is not pinned" in message
    assert not aid.deployments()
