"""The traffic router's part of a decision: the canary's weight, status.traffic, the
TrafficRouted condition, and others' edits of the route (recorded once, then reverted).

Runs after the phase handlers, so the weight is that of the phase the decision ends in: a
rollback or abort decided this round already gives the canary 0, and the reconciler writes
the route before any other action (docs/decisions/0015-traffic-routers.md)."""

from __future__ import annotations

from aigate.api.v1alpha1 import AIDeploymentSpec, TrafficStatus
from aigate.core import conditions as cond
from aigate.core import traffic
from aigate.core.rollout.draft import Draft
from aigate.core.rollout.snapshots import plan_of, service_of

TRAFFIC_ROUTED = "TrafficRouted"
# How soon a route edited by someone else is seen while a canary or rollback is in flight
# (HTTPRoutes are the user's objects: aigate does not watch them).
ROUTE_RECHECK = 10.0


def serving_plan(d: Draft) -> AIDeploymentSpec | None:
    return plan_of(d.status.serving) if d.status.serving is not None else None


def route_problem(d: Draft) -> str:
    """Why the Gateway API route cannot carry the canary's weight now ("" when it can, or
    with the replica router)."""
    if traffic.gateway_of(d.spec, serving_plan(d) if d.spec is None else None) is None:
        return ""
    view = d.inputs.route
    if view is None:
        return "the HTTPRoute was not read"
    return view.problem


def route_traffic(d: Draft) -> None:
    s = d.status
    rollout = s.rollout
    in_canary = rollout is not None and s.phase in traffic.CANARY_PHASES
    stage_weight = rollout.weight if rollout is not None and in_canary else 0
    stable, canary = d.sit.stable, d.sit.canary
    config = traffic.gateway_of(d.spec, serving_plan(d) if d.spec is None else None)
    if config is None:
        s.traffic = TrafficStatus(
            router="Replicas",
            stage_weight=stage_weight,
            canary_percent=traffic.replica_share(
                stable.ready_replicas if stable else 0, canary.ready_replicas if canary else 0
            ),
            # A route aigate wrote under an earlier plan: the reconciler takes the canary's
            # weight off it (traffic.released).
            written=s.traffic.written,
        )
        s.conditions = [c for c in s.conditions if c.type != TRAFFIC_ROUTED]
        return
    weight = _canary_weight(d)
    port, target_port = _ports(d)
    intent = traffic.RouteIntent(config, weight, port, target_port)
    view = d.inputs.route or traffic.RouteView(
        f"{d.inputs.namespace}/{config.http_route}", config.rule, "the HTTPRoute was not read"
    )
    shown = s.traffic
    s.traffic = TrafficStatus(
        router="GatewayAPI",
        stage_weight=stage_weight,
        canary_weight=weight,
        canary_percent=view.canary_percent() if not view.problem else 0.0,
        route=f"HTTPRoute {view.route} rule {view.rule}",
        found=view.found if not view.problem else "",
        problem=view.problem,
        written=shown.written,
        drift_noted=shown.drift_noted,
        problem_noted=shown.problem_noted,
    )
    _note_problem(d, view)
    _note_foreign_edit(d, view, intent)
    if port:
        d.route = intent
    if s.phase in traffic.CANARY_PHASES or s.phase == "RollingBack":
        d.requeue_within(ROUTE_RECHECK)


def _canary_weight(d: Draft) -> int:
    s, canary, rollout = d.status, d.sit.canary, d.status.rollout
    if rollout is None:
        return 0
    candidate = rollout.candidate.revision
    ready = canary.updated_ready if canary and canary.revision == candidate else 0
    rolled_out = canary is not None and canary.serves(candidate, rollout.canary_replicas)
    previous = 0
    plan = plan_of(rollout.candidate)
    if plan is not None and 0 < rollout.stage_index < len(plan.rollout.stages):
        previous = plan.rollout.stages[rollout.stage_index - 1].weight
    return traffic.canary_weight(s.phase, rollout, ready, rolled_out, previous)


def _ports(d: Draft) -> tuple[int, int]:
    if d.spec is not None:
        service = d.spec.service
        return service.port, service.target_port or service.port
    return service_of(d.status.serving) if d.status.serving is not None else (0, 0)


def _note_problem(d: Draft, view: traffic.RouteView) -> None:
    s = d.status
    g, now = d.inputs.generation, d.now_iso
    where = f"HTTPRoute {view.route} rule {view.rule}"
    if not view.problem:
        s.traffic.problem_noted = ""
        stable, canary = 100 - s.traffic.canary_weight, s.traffic.canary_weight
        text = f"{where}: stable {stable}, canary {canary} (found {view.found})"
        s.conditions = cond.set_condition(
            s.conditions, TRAFFIC_ROUTED, True, "RouteWeightsSet", text, now, g
        )
        return
    text = (
        f"spec.rollout.traffic.gatewayAPI: {view.problem}; no stage shifts traffic until the "
        f"route has rule {view.rule} (a rollback still proceeds)"
    )
    s.conditions = cond.set_condition(
        s.conditions, TRAFFIC_ROUTED, False, "RouteUnavailable", text, now, g
    )
    if s.traffic.problem_noted != view.problem:
        s.traffic.problem_noted = view.problem
        d.note("TrafficRouteUnavailable", text, "Warning")


def _note_foreign_edit(d: Draft, view: traffic.RouteView, intent: traffic.RouteIntent) -> None:
    """Weights that are neither what aigate last wrote nor what it is about to write were
    changed by someone else: recorded once per content found; the write reverts them."""
    s = d.status
    written = s.traffic.written
    found = (view.stable, view.canary)
    same_rule = written is not None and (written.route, written.rule) == (view.route, view.rule)
    if view.problem or not same_rule or written is None:
        return
    if found in ((written.stable, written.canary), intent.weights):
        s.traffic.drift_noted = ""
        return
    if s.traffic.drift_noted == view.found:
        return
    s.traffic.drift_noted = view.found
    d.note(
        "TrafficRouteDrift",
        f"HTTPRoute {view.route} rule {view.rule} was changed outside aigate: expected "
        f"stable={written.stable}, canary={written.canary}; found {view.found}; setting "
        f"stable={intent.weights[0]}, canary={intent.weights[1]}",
        "Warning",
    )
