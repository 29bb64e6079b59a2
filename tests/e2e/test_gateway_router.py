"""End to end: the Gateway API router on the real API server with the Gateway API (standard
channel) and InferencePool CRDs installed (no gateway controller: the weights are read back
from the HTTPRoute), the real operator and the real Prometheus.

Checked: the rule's weights equal the stage weights at each stage; 100/0 after an abort and
after an automatic rollback, set before the canary goes; a route edited by someone else
mid-rollout is recorded and reverted; another rule and another backendRef of the same rule
are never touched; a missing route holds the canary; the InferencePool backend.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from aigate.adapters.gateway import GatewayRouter
from aigate.core import traffic
from aigate.core.revision import compute_revision
from aigate.core.workloads import Owner
from support.background import Sampler
from support.factories import approval_annotations, spec_model
from support.kube import Aid
from support.scenarios import NAME, plan
from support.waiting import holds_for, wait_for

pytestmark = pytest.mark.usefixtures("operator", "gateway_crds")

TIMEOUT = 120
ROUTE = "models"
GW = ("gateway.networking.k8s.io", "v1", "httproutes")
POOLS = ("inference.networking.k8s.io", "v1", "inferencepools")
OTHER_RULE = {
    "name": "other",
    "matches": [{"path": {"type": "PathPrefix", "value": "/other"}}],
    "backendRefs": [{"name": "someone-elses", "port": 80, "weight": 7}],
}


def route_manifest(first_backend: dict[str, Any]) -> dict[str, Any]:
    """The user's route: rule "serve" names aigate's stable backend and a mirror-less
    fallback of the user's at weight 0; rule "other" is someone else's."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": ROUTE},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "rules": [
                copy.deepcopy(OTHER_RULE),
                {
                    "name": "serve",
                    "backendRefs": [first_backend, {"name": "fallback", "port": 80, "weight": 0}],
                },
            ],
        },
    }


def approve(aid: Aid, spec: dict) -> str:
    revision = compute_revision(spec_model(spec))
    aid.annotate(approval_annotations(revision, datetime.now(UTC) - timedelta(seconds=5)))
    return revision


class Route:
    def __init__(self, api_client, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace = namespace

    def create(self, manifest: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(*GW[:2], self.namespace, GW[2], manifest)

    def get(self) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(*GW[:2], self.namespace, GW[2], ROUTE)

    def rule(self, name: str) -> dict[str, Any]:
        return next(r for r in self.get()["spec"]["rules"] if r.get("name") == name)

    def weights(self) -> dict[str, int]:
        """name -> weight in rule "serve", as the API server holds it."""
        return {r["name"]: r.get("weight", 1) for r in self.rule("serve").get("backendRefs", [])}

    def set_weights(self, stable: int, canary: int) -> None:
        """Someone else's edit: read, change aigate's two weights, write back."""
        route = self.get()
        for ref in next(r for r in route["spec"]["rules"] if r["name"] == "serve")["backendRefs"]:
            if ref["name"] == f"{NAME}-stable":
                ref["weight"] = stable
            elif ref["name"] == f"{NAME}-canary":
                ref["weight"] = canary
        self.custom.replace_namespaced_custom_object(*GW[:2], self.namespace, GW[2], ROUTE, route)


def gateway_plan(cluster, version: str, backend: str = "Service", **traffic: Any) -> dict:
    spec = plan(cluster.info.prometheus_url, version, manual=True)
    gateway: dict[str, Any] = {"httpRoute": ROUTE, "rule": "serve", "backend": backend}
    if backend == "InferencePool":
        gateway["inferencePool"] = {
            "endpointPickers": {
                "stable": {"name": "epp-stable", "port": 9002},
                "canary": {"name": "epp-canary", "port": 9002},
            }
        }
    spec["rollout"]["traffic"] = {"gatewayAPI": gateway, **traffic}
    return spec


def start(cluster, api_client, namespace, backend="Service", **traffic) -> tuple[Aid, Route]:
    route = Route(api_client, namespace)
    if backend == "Service":
        first = {"name": f"{NAME}-stable", "port": 8080, "weight": 1}
    else:
        first = {
            "group": "inference.networking.k8s.io",
            "kind": "InferencePool",
            "name": f"{NAME}-stable",
            "weight": 1,
        }
    route.create(route_manifest(first))
    aid = Aid(api_client, namespace, NAME)
    spec = gateway_plan(cluster, "2.4.0", backend, **traffic)
    aid.create(spec)
    approve(aid, spec)
    wait_for(lambda: aid.phase() == "Stable", timeout=TIMEOUT, what="v1 Stable")
    wait_for(
        lambda: route.weights() == {f"{NAME}-stable": 100, "fallback": 0, f"{NAME}-canary": 0},
        timeout=TIMEOUT,
        what="route at stable 100, canary 0 (canary ref added, fallback untouched)",
    )
    return aid, route


def canary_and_route(aid: Aid, route: Route) -> tuple[str, bool, int]:
    """(stage, canary Deployment gone or going, canary weight), the canary read first: a
    canary seen going while a later read of the route still gives it weight means the
    route was not set to 0 before the canary went."""
    stage = aid.status().get("stage", "")
    canary = [d for d in aid.deployments() if d.metadata.name == f"{NAME}-canary"]
    going = not canary or canary[0].metadata.deletion_timestamp is not None
    return stage, going, route.weights().get(f"{NAME}-canary", 0)


def paused_at_canary_50(aid: Aid) -> bool:
    status = aid.status()
    return status.get("phase") == "Paused" and status.get("stage") == "canary-50"


def test_weights_follow_stages_a_foreign_edit_is_reverted_and_abort_restores(
    cluster, api_client, namespace, servers
):
    aid, route = start(cluster, api_client, namespace)
    services = {
        s.metadata.name: s.spec.selector
        for s in client.CoreV1Api(api_client).list_namespaced_service(namespace).items
    }
    assert services[f"{NAME}-stable"]["aigate.dev/track"] == "stable"
    assert services[f"{NAME}-canary"]["aigate.dev/track"] == "canary"
    other_before = route.rule("other")
    spec = gateway_plan(cluster, "2.5.0")
    with Sampler(lambda: canary_and_route(aid, route)) as sampler:
        aid.patch({"spec": spec})
        approve(aid, spec)
        wait_for(lambda: paused_at_canary_50(aid), timeout=TIMEOUT, what="Paused at canary-50")
        wait_for(
            lambda: route.weights() == {f"{NAME}-stable": 50, "fallback": 0, f"{NAME}-canary": 50},
            timeout=30,
            what="route at 50/50",
        )
        traffic = aid.status()["traffic"]
        assert traffic["router"] == "GatewayAPI" and traffic["stageWeight"] == 50
        assert traffic["canaryPercent"] == 50.0

        route.set_weights(stable=0, canary=100)  # someone shifts everything to the canary
        drift = wait_for(
            lambda: aid.event_messages("TrafficRouteDrift"), timeout=30, what="drift Event"
        )
        assert f"HTTPRoute {namespace}/{ROUTE} rule serve" in drift[0]
        assert "expected stable=50, canary=50; found stable=0, canary=100" in drift[0]
        wait_for(lambda: route.weights()[f"{NAME}-canary"] == 50, timeout=30, what="edit reverted")
        assert any(h["reason"] == "TrafficRouteDrift" for h in aid.status()["history"])

        aid.annotate({"aigate.dev/abort": "by=sre enough"})
        wait_for(lambda: aid.phase() == "RolledBack", timeout=TIMEOUT, what="RolledBack")
        wait_for(lambda: not aid.pods("canary"), timeout=TIMEOUT, what="canary pods gone")
    assert route.weights() == {f"{NAME}-stable": 100, "fallback": 0, f"{NAME}-canary": 0}
    assert route.rule("other") == other_before  # another rule is never touched
    by_stage: dict[str, set[int]] = {}
    for stage, _going, weight in sampler.samples:
        if weight:
            by_stage.setdefault(stage, set()).add(weight)
    # Each stage shows its weight, or the previous stage's while the canary is resized (and
    # the status is written before the route); 100 at canary-50 is the test's own edit.
    assert by_stage["canary-10"] == {10}
    assert by_stage["canary-50"] <= {10, 50, 100} and 50 in by_stage["canary-50"]
    late = [s for s in sampler.samples if s[1] and s[2] > 0]
    assert not late, f"the canary went while the route still gave it weight: {late}"
    assert aid.status()["traffic"]["canaryWeight"] == 0


def test_inference_pools_and_rollback_on_breach_restore_100_0(
    cluster, api_client, namespace, servers
):
    aid, route = start(cluster, api_client, namespace, backend="InferencePool", canaryReplicas=1)
    custom = client.CustomObjectsApi(api_client)
    pool = custom.get_namespaced_custom_object(*POOLS[:2], namespace, POOLS[2], f"{NAME}-canary")
    assert pool["spec"]["selector"]["matchLabels"]["aigate.dev/track"] == "canary"
    assert pool["spec"]["endpointPickerRef"]["name"] == "epp-canary"
    assert pool["spec"]["targetPorts"] == [{"number": 8080}]
    spec = gateway_plan(cluster, "2.5.0", "InferencePool", canaryReplicas=1)
    with Sampler(lambda: canary_and_route(aid, route)) as sampler:
        aid.patch({"spec": spec})
        approve(aid, spec)
        wait_for(lambda: paused_at_canary_50(aid), timeout=TIMEOUT, what="Paused at canary-50")
        wait_for(lambda: route.weights()[f"{NAME}-canary"] == 50, timeout=30, what="canary at 50")
        # The canary budget: one pod whatever the weight.
        canary = [d for d in aid.deployments() if d.metadata.name == f"{NAME}-canary"]
        assert canary[0].spec.replicas == 1
        servers.set("canary", error=0.2)
        wait_for(lambda: aid.phase() == "RolledBack", timeout=TIMEOUT, what="RolledBack")
        wait_for(lambda: not aid.pods("canary"), timeout=TIMEOUT, what="canary pods gone")
    refs = {r["name"]: r for r in route.rule("serve")["backendRefs"]}
    assert refs[f"{NAME}-canary"]["kind"] == "InferencePool"
    assert route.weights() == {f"{NAME}-stable": 100, "fallback": 0, f"{NAME}-canary": 0}
    assert aid.status()["lastRollback"]["reason"] == "AnalysisFailed"
    late = [s for s in sampler.samples if s[1] and s[2] > 0]
    assert not late, f"the canary went while the route still gave it weight: {late}"


def test_a_missing_route_holds_the_canary_until_it_exists(cluster, api_client, namespace, servers):
    aid = Aid(api_client, namespace, NAME)
    spec = gateway_plan(cluster, "2.4.0")
    aid.create(spec)
    approve(aid, spec)
    wait_for(lambda: aid.phase() == "Stable", timeout=TIMEOUT, what="v1 Stable")
    routed = wait_for(
        lambda: (
            aid.condition("TrafficRouted").get("status") == "False"
            and aid.condition("TrafficRouted")
        ),
        timeout=30,
        what="TrafficRouted=False",
    )
    assert f"HTTPRoute {namespace}/{ROUTE} does not exist" in routed["message"]
    aid.wait_event("TrafficRouteUnavailable")
    spec = gateway_plan(cluster, "2.5.0")
    aid.patch({"spec": spec})
    approve(aid, spec)
    wait_for(
        lambda: aid.condition("Reconciling").get("reason") == "TrafficRouteUnavailable",
        timeout=TIMEOUT,
        what="canary held for the route",
    )
    holds_for(
        lambda: aid.status().get("stage") == "canary-10" and aid.phase() == "Progressing",
        duration=6,  # twice the stage's 3 s: it would have passed with traffic routed
        what="held at canary-10",
    )
    Route(api_client, namespace).create(
        route_manifest({"name": f"{NAME}-stable", "port": 8080, "weight": 1})
    )
    wait_for(lambda: paused_at_canary_50(aid), timeout=TIMEOUT, what="on to canary-50")
    assert aid.condition("TrafficRouted")["status"] == "True"


def test_a_new_plan_naming_another_route_takes_the_weight_off_the_old_one(
    cluster, api_client, namespace, servers
):
    aid, old_route = start(cluster, api_client, namespace)
    spec = gateway_plan(cluster, "2.5.0")
    aid.patch({"spec": spec})
    approve(aid, spec)
    wait_for(lambda: paused_at_canary_50(aid), timeout=TIMEOUT, what="Paused at canary-50")
    wait_for(lambda: old_route.weights()[f"{NAME}-canary"] == 50, timeout=30, what="canary at 50")
    new_manifest = route_manifest({"name": f"{NAME}-stable", "port": 8080, "weight": 1})
    new_manifest["metadata"]["name"] = "models-v2"
    Route(api_client, namespace).create(new_manifest)
    spec = gateway_plan(cluster, "2.6.0")
    spec["rollout"]["traffic"]["gatewayAPI"]["httpRoute"] = "models-v2"
    aid.patch({"spec": spec})
    approve(aid, spec)  # a new revision: its canary starts from the first stage
    wait_for(
        lambda: old_route.weights() == {f"{NAME}-stable": 100, "fallback": 0, f"{NAME}-canary": 0},
        timeout=60,
        what="the old route at 100/0",
    )
    written = wait_for(
        lambda: (
            (aid.status().get("traffic") or {}).get("written", {}).get("route")
            == f"{namespace}/models-v2"
            and aid.status()["traffic"]
        ),
        timeout=60,
        what="the new route written",
    )
    assert written["route"] == f"HTTPRoute {namespace}/models-v2 rule serve"


def test_an_edit_made_after_the_round_read_the_route_is_never_reverted_unrecorded(
    cluster, api_client, namespace, servers
):
    """Someone edits the rule between a round's read of the route and its write: the
    adapter does not write (its decision was made on other weights), so the edit stays for
    the next round to record as TrafficRouteDrift and revert, never silently overwritten."""
    aid, route = start(cluster, api_client, namespace)
    spec = spec_model(gateway_plan(cluster, "2.4.0"))
    config = traffic.gateway_of(spec, None)
    assert config is not None
    owner = Owner(name=NAME, namespace=namespace, uid=aid.get()["metadata"]["uid"])
    router = GatewayRouter(api_client)
    seen = router.observe(owner, config)  # the round reads 100/0
    assert (seen.stable, seen.canary) == (100, 0)
    route.set_weights(stable=30, canary=70)  # then someone else edits
    intent = traffic.RouteIntent(config, 0, 8080, 8080)
    assert router.apply(owner, intent, seen) is None
    assert route.weights()[f"{NAME}-canary"] == 70
    assert router.apply(owner, intent, router.observe(owner, config)) is not None
    assert route.weights()[f"{NAME}-canary"] == 0
