"""The traffic routers: the pure route logic (core/traffic.py) and what decide() does with
it, in the simulated cluster (tests/support/sim.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aigate.api.v1alpha1 import GatewayAPIRoute, RevisionSnapshot, RolloutState, RouteWeights
from aigate.core import traffic
from aigate.core.rollout import effects
from support.sim import GATEWAY, serving, upgrade

NAME, NS = "fraud-scorer", "risk"
SERVICE = GatewayAPIRoute.model_validate({"httpRoute": "models", "rule": "serve"})
POOL = GatewayAPIRoute.model_validate(
    {
        "httpRoute": "models",
        "rule": "1",
        "backend": "InferencePool",
        "inferencePool": {
            "endpointPickers": {
                "stable": {"name": "epp-s", "port": 9002},
                "canary": {"name": "epp-c", "port": 9002},
            }
        },
    }
)


def rollout_at(weight: int) -> RolloutState:
    candidate = RevisionSnapshot(revision="r2", version="2")
    return RolloutState(attempt=1, candidate=candidate, started_at="t", weight=weight)


@pytest.mark.parametrize(
    ("phase", "ready", "rolled_out", "expected"),
    [
        ("Progressing", 2, True, 50),  # the stage's weight, at the stage's size
        ("Paused", 2, True, 50),
        ("Promoting", 2, True, 50),  # the candidate serves on both while stable rolls
        ("Progressing", 1, False, 10),  # being resized: the previous stage's weight
        ("Progressing", 0, False, 0),  # no Ready pod: no traffic at all
        ("RollingBack", 2, True, 0),
        ("RolledBack", 2, True, 0),
        ("Verifying", 2, True, 0),
        ("Stable", 2, True, 0),
        ("AwaitingApproval", 2, True, 0),
        ("Failed", 2, True, 0),
        ("Deploying", 2, True, 0),
        ("Pending", 2, True, 0),
    ],
)
def test_canary_weight_in_every_phase(phase, ready, rolled_out, expected):
    assert traffic.canary_weight(phase, rollout_at(50), ready, rolled_out, 10) == expected


def route(*rules: dict) -> dict:
    return {"metadata": {"name": "models", "namespace": NS}, "spec": {"rules": list(rules)}}


OTHER = {"name": "other", "backendRefs": [{"name": "x", "port": 80, "weight": 3}]}


def test_weights_change_only_aigates_two_refs_in_one_rule():
    serve = {
        "name": "serve",
        "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
        "backendRefs": [
            {"name": f"{NAME}-stable", "port": 8080, "weight": 1, "filters": [{"type": "X"}]},
            {"name": "fallback", "port": 80, "weight": 0},
            {"name": f"{NAME}-canary", "namespace": "elsewhere", "port": 80, "weight": 9},
        ],
    }
    before = route(OTHER, serve)
    intent = traffic.RouteIntent(SERVICE, 10, 8080, 8080)
    after = traffic.with_weights(before, intent, NAME, NS)
    assert after["spec"]["rules"][0] == OTHER
    refs = after["spec"]["rules"][1]["backendRefs"]
    assert refs[0] == {**serve["backendRefs"][0], "weight": 90}  # its filters kept
    assert refs[1:3] == serve["backendRefs"][1:3]  # another namespace's ref is not aigate's
    assert refs[3] == {"name": f"{NAME}-canary", "port": 8080, "weight": 10}
    assert after["spec"]["rules"][1]["matches"] == serve["matches"]
    assert before["spec"]["rules"][1] == serve  # the input is not modified
    view = traffic.read_rule(after, SERVICE, NAME, NS)
    assert (view.stable, view.canary, view.others) == (90, 10, 9)
    assert traffic.with_weights(after, intent, NAME, NS) == after  # nothing more to write


def test_inference_pool_refs_by_rule_index_and_duplicates_get_nothing():
    pool_ref = {"group": traffic.POOL_GROUP, "kind": "InferencePool", "name": f"{NAME}-canary"}
    serve = {"backendRefs": [dict(pool_ref, weight=5), dict(pool_ref, weight=5)]}
    after = traffic.with_weights(
        route(OTHER, serve), traffic.RouteIntent(POOL, 0, 0, 8080), NAME, NS
    )
    refs = after["spec"]["rules"][1]["backendRefs"]
    assert [r["weight"] for r in refs] == [0, 0, 100]
    assert refs[2] == {**pool_ref, "name": f"{NAME}-stable", "weight": 100}
    assert "port" not in refs[2]
    # A Service ref of the same name is not the pool's.
    view = traffic.read_rule(
        route(OTHER, {"backendRefs": [{"name": f"{NAME}-canary", "port": 80}]}), POOL, NAME, NS
    )
    assert (view.stable, view.canary, view.others) == (None, None, 1)  # default weight 1


@pytest.mark.parametrize(
    ("obj", "config", "problem"),
    [
        (None, SERVICE, "HTTPRoute risk/models does not exist"),
        (route(OTHER), SERVICE, "has no rule named 'serve' (named rules: other)"),
        (route(OTHER), POOL, "has 1 rule(s), no rule 1"),
    ],
)
def test_a_missing_route_or_rule_is_a_problem_not_a_crash(obj, config, problem):
    view = traffic.read_rule(obj, config, NAME, NS)
    assert problem in view.problem and view.canary_percent() == 0.0


def test_backends_select_their_track_and_drift_is_told_from_server_defaults():
    intent = traffic.RouteIntent(POOL, 10, 0, 8000)
    labels, selector = {"a": "b"}, {"aigate.dev/track": "canary"}
    owner_ref = {"uid": "u", "controller": True}
    pool = traffic.backend_manifest(intent, "canary", NAME, NS, labels, selector, owner_ref)
    assert pool["spec"]["endpointPickerRef"] == {
        "name": "epp-c",
        "port": {"number": 9002},
        "failureMode": "FailClose",
    }
    assert pool["spec"]["targetPorts"] == [{"number": 8000}]
    live = {
        "metadata": {"labels": {"a": "b", "extra": "x"}, "ownerReferences": [owner_ref]},
        "spec": {
            **pool["spec"],
            "endpointPickerRef": {
                **pool["spec"]["endpointPickerRef"],
                "group": "",
                "kind": "Service",
            },
        },
    }
    assert not traffic.backend_differs(live, pool)
    widened = {**live, "spec": {**live["spec"], "selector": {"matchLabels": {"other": "pods"}}}}
    assert traffic.backend_differs(widened, pool)
    added = {"matchLabels": {**selector, "more": "pods"}}
    assert traffic.backend_differs({**live, "spec": {**live["spec"], "selector": added}}, pool)


# ---- decide() with the routers, in the simulated cluster -----------------------------------


def test_gateway_weights_follow_the_stages_and_an_abort_sets_100_0_before_the_canary_goes():
    world = serving(traffic=GATEWAY)
    assert world.route == {"stable": 100, "canary": 0}
    revision = upgrade(world, traffic=GATEWAY, manual=True)
    seen: dict[str, set[int]] = {}
    while world.status.phase != "Paused":
        world.step()
        assert world.route is not None
        seen.setdefault(world.status.stage, set()).add(world.route["canary"] or 0)
    assert seen["canary-10"] <= {0, 10} and 10 in seen["canary-10"]
    assert seen["canary-50"] <= {10, 50} and world.route == {"stable": 50, "canary": 50}
    assert world.status.traffic.canary_percent == 50.0
    world.annotations["aigate.dev/abort"] = f"@{revision} by=sre"
    decision = world.step()
    assert decision.status.phase == "RollingBack"
    assert any(a == effects.DeleteDeployment("canary") for a in decision.actions)
    assert world.weight_at_actions == 0  # the route was written before the canary went
    world.run_until(lambda w: w.status.phase == "RolledBack")
    assert world.route == {"stable": 100, "canary": 0}


def test_a_canary_budget_sizes_the_canary_apart_from_the_weight():
    world = serving(traffic={**GATEWAY, "canaryReplicas": 1}, replicas=10)
    upgrade(world, traffic={**GATEWAY, "canaryReplicas": 1}, replicas=10, manual=True)
    world.run_until(lambda w: w.status.phase == "Paused")
    assert world.deployments["canary"].replicas == 1
    assert world.route == {"stable": 50, "canary": 50}


def test_a_foreign_edit_is_recorded_once_and_reverted():
    world = serving(traffic=GATEWAY)
    upgrade(world, traffic=GATEWAY, manual=True)
    world.run_until(lambda w: w.status.phase == "Paused")
    world.edit_route(0, 100)
    first = world.step()
    drift = [h for h in first.new_history if h.reason == "TrafficRouteDrift"]
    assert len(drift) == 1
    assert drift[0].message == (
        "HTTPRoute risk/models rule serve was changed outside aigate: expected stable=50, "
        "canary=50; found stable=0, canary=100; setting stable=50, canary=50"
    )
    assert world.route == {"stable": 50, "canary": 50}
    world.edit_route(50, None)  # the canary's backendRef removed
    again = world.step()
    assert [h.message for h in again.new_history if h.reason == "TrafficRouteDrift"] == [
        "HTTPRoute risk/models rule serve was changed outside aigate: expected stable=50, "
        "canary=50; found stable=50, canary=absent; setting stable=50, canary=50"
    ]
    for _ in range(3):
        assert not [h for h in world.step().new_history if h.reason == "TrafficRouteDrift"]


def test_a_missing_route_holds_the_stage_and_a_rollback_still_proceeds():
    world = serving(traffic=GATEWAY)
    world.route = None
    revision = upgrade(world, traffic=GATEWAY)
    for _ in range(60):  # 5 minutes: the 1-minute stage would have passed
        world.step()
    s = world.status
    assert (s.phase, s.stage) == ("Progressing", "canary-10")
    routed = next(c for c in s.conditions if c.type == "TrafficRouted")
    assert routed.status == "False" and "HTTPRoute risk/models does not exist" in routed.message
    assert [e.reason for e in world.events()].count("TrafficRouteUnavailable") == 1
    world.route = {"stable": 100, "canary": None}
    world.run_until(lambda w: w.status.stage == "canary-50")
    world.route = None
    world.annotations["aigate.dev/abort"] = f"@{revision} by=sre"
    world.run_until(lambda w: w.status.phase == "RolledBack")


@pytest.mark.parametrize(
    ("replicas", "weight", "share"),
    [(1, 10, 50.0), (1, 50, 50.0), (4, 10, 20.0), (4, 50, 33.3), (10, 10, 9.1), (10, 50, 33.3)],
)
def test_the_replica_router_shows_its_real_share(replicas, weight, share):
    """The closing note's table: with one Service the canary's share is its share of Ready
    pods (stable keeps spec.replicas); the Gateway API router gives exactly the weight."""
    canary = effects.canary_replicas(replicas, weight)
    assert traffic.replica_share(replicas, canary) == share
    world = serving(replicas=replicas)
    upgrade(world, replicas=replicas, manual=True)
    world.run_until(lambda w: w.status.stage == "canary-10" and w.canary and w.canary.rolled_out)
    if weight == 50:
        world.run_until(lambda w: w.status.phase == "Paused")
    world.step()  # a decision that observed the canary rolled out
    assert world.status.traffic.router == "Replicas"
    assert world.status.traffic.stage_weight == weight
    assert world.status.traffic.canary_percent == share


def test_rolled_back_canary_keeps_no_weight_with_the_replica_router():
    world = serving()
    upgrade(world, manual=True)
    world.run_until(lambda w: w.status.phase == "Paused")
    world.annotations["aigate.dev/abort"] = "by=sre"
    world.run_until(lambda w: w.status.phase == "RolledBack", advance=timedelta(seconds=5))
    assert world.status.traffic.stage_weight == 0 and world.status.traffic.canary_percent == 0.0


def test_a_rule_the_plan_no_longer_names_loses_the_canarys_weight():
    written = RouteWeights(route="risk/models", rule="serve", stable=50, canary=50)
    same = traffic.RouteIntent(SERVICE, 50, 8080, 8080)
    other = traffic.RouteIntent(SERVICE.model_copy(update={"http_route": "v2"}), 0, 8080, 8080)
    assert not traffic.abandoned(written, same, NS)
    assert traffic.abandoned(written, other, NS)
    assert traffic.abandoned(written, None, NS)  # back to the replica router
    assert not traffic.abandoned(written.model_copy(update={"canary": 0}), None, NS)
    serve = {
        "name": "serve",
        "backendRefs": [
            {"name": f"{NAME}-stable", "port": 8080, "weight": 50},
            {"name": f"{NAME}-canary", "port": 8080, "weight": 50},
            {"name": "fallback", "port": 80, "weight": 0},
        ],
    }
    after = traffic.released(route(OTHER, serve), "serve", NAME, NS)
    assert after is not None and after["spec"]["rules"][0] == OTHER
    assert [r["weight"] for r in after["spec"]["rules"][1]["backendRefs"]] == [100, 0, 0]
    assert traffic.released(route(OTHER), "serve", NAME, NS) is None
