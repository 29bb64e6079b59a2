"""The traffic router (pure): how much the canary gets, and the HTTPRoute rule that says so.

Decisions say "the canary gets W %"; adapters do it. Two routers:
- Replicas (default): one Service selects both tracks, so the canary's share is its share
  of Ready pods; the canary is sized from the stage weight (effects.canary_replicas).
- GatewayAPI: one rule of an HTTPRoute the user owns gets two backendRefs aigate manages,
  `<name>-stable` weight 100-W and `<name>-canary` weight W (Services, or InferencePools of
  the Inference Extension). Nothing else in the route is changed: other rules, other
  backendRefs, and every field of aigate's own refs but weight (and a Service ref's port).

The canary is given a stage's weight only once it runs at the stage's size (before that, the
previous stage's, and none without Ready pods); every phase but Progressing, Paused and
Promoting gives it 0 (docs/decisions/0015-traffic-routers.md).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aigate.api.v1alpha1 import AIDeploymentSpec, GatewayAPIRoute, RolloutState, RouteWeights

POOL_GROUP = "inference.networking.k8s.io"
# The phases in which a canary may receive traffic.
CANARY_PHASES = frozenset({"Progressing", "Paused", "Promoting"})
TRACKS = ("stable", "canary")


@dataclass(frozen=True)
class RouteView:
    """aigate's rule of the HTTPRoute as read (adapters/gateway.py)."""

    route: str  # namespace/name
    rule: str  # as the spec names it
    problem: str = ""  # why the rule cannot be used: missing route or rule, a backend conflict
    stable: int | None = None  # the weight of aigate's stable backendRef (None: not in the rule)
    canary: int | None = None
    others: int = 0  # the weights of the rule's other backendRefs, added up

    @property
    def found(self) -> str:
        def shown(weight: int | None) -> str:
            return "absent" if weight is None else str(weight)

        others = f", other backends {self.others}" if self.others else ""
        return f"stable={shown(self.stable)}, canary={shown(self.canary)}{others}"

    def canary_percent(self) -> float:
        """The canary's share of this rule's requests, as the route says."""
        total = (self.stable or 0) + (self.canary or 0) + self.others
        return round(100.0 * (self.canary or 0) / total, 1) if total else 0.0


@dataclass(frozen=True)
class RouteIntent:
    """What the Gateway API router is to make true this round."""

    config: GatewayAPIRoute
    canary_weight: int
    port: int
    target_port: int

    @property
    def weights(self) -> tuple[int, int]:
        return 100 - self.canary_weight, self.canary_weight


def gateway_of(spec: AIDeploymentSpec | None, serving: AIDeploymentSpec | None):
    """The Gateway API route settings in force: the spec's, or (the spec unusable) the
    serving version's plan's. None: the replica router."""
    plan = spec if spec is not None else serving
    traffic = plan.rollout.traffic if plan is not None else None
    return traffic.gateway_api if traffic is not None else None


def canary_size(plan: AIDeploymentSpec | None, replicas: int, weight: int) -> int:
    """The canary's replicas for a stage: the plan's fixed budget (Gateway API only), or
    the stage weight's share of spec.replicas, rounded up, at least 1 and at most replicas.
    With the replica router the size IS the share, so it cannot be set apart."""
    traffic = plan.rollout.traffic if plan is not None else None
    if traffic is not None and traffic.gateway_api is not None and traffic.canary_replicas:
        return traffic.canary_replicas
    return max(1, min(replicas, math.ceil(replicas * weight / 100)))


def canary_weight(
    phase: str, rollout: RolloutState | None, ready: int, rolled_out: bool, previous: int
) -> int:
    """The weight the canary gets now. In a canary phase: the stage's once the canary runs
    its candidate at the stage's size (`rolled_out`); while it is still being resized, the
    previous stage's (`previous`) if it has Ready pods (`ready`); else 0. Every other phase
    (rollback, abort, promoted): 0. So a route never sends a stage's share to a canary
    without the pods the stage asked for, nor any share to one without endpoints."""
    if phase not in CANARY_PHASES or rollout is None or ready < 1:
        return 0
    return rollout.weight if rolled_out else previous


def replica_share(stable_ready: int, canary_ready: int) -> float:
    """The canary's share behind one Service selecting both tracks: its share of Ready pods."""
    total = stable_ready + canary_ready
    return round(100.0 * canary_ready / total, 1) if total else 0.0


# ---- the HTTPRoute rule --------------------------------------------------------------------


def backend_name(owner_name: str, track: str) -> str:
    return f"{owner_name}-{track}"


def _is_ours(ref: Mapping[str, Any], config: GatewayAPIRoute, name: str, namespace: str) -> bool:
    group = str(ref.get("group") or "")
    kind = str(ref.get("kind") or "Service")
    wanted = (POOL_GROUP, "InferencePool") if config.backend == "InferencePool" else ("", "Service")
    same_namespace = str(ref.get("namespace") or namespace) == namespace
    return (group, kind) == wanted and ref.get("name") == name and same_namespace


def find_rule(route: Mapping[str, Any], rule: str) -> tuple[int, str]:
    """The index of the rule the spec names (by name, or by index as digits), or -1 and
    why not."""
    rules = (route.get("spec") or {}).get("rules") or []
    names = [str(r.get("name") or "") for r in rules]
    if rule.isdigit():
        index = int(rule)
        if index < len(rules):
            return index, ""
        return -1, f"has {len(rules)} rule(s), no rule {index}"
    if rule in names:
        return names.index(rule), ""
    named = ", ".join(n for n in names if n) or "none"
    return -1, f"has no rule named {rule!r} (named rules: {named})"


def read_rule(
    route: Mapping[str, Any] | None, config: GatewayAPIRoute, owner_name: str, namespace: str
) -> RouteView:
    """What the rule holds for aigate's two backends, and the weight of the others."""
    where = f"{namespace}/{config.http_route}"
    if route is None:
        return RouteView(where, config.rule, problem=f"HTTPRoute {where} does not exist")
    index, problem = find_rule(route, config.rule)
    if index < 0:
        return RouteView(where, config.rule, problem=f"HTTPRoute {where} {problem}")
    refs = (route["spec"]["rules"][index].get("backendRefs")) or []
    weights: dict[str, int | None] = {track: None for track in TRACKS}
    others = 0
    for ref in refs:
        weight = int(ref.get("weight", 1))  # the API's default weight is 1
        track = next(
            (t for t in TRACKS if _is_ours(ref, config, backend_name(owner_name, t), namespace)),
            None,
        )
        if track is None:
            others += weight
        else:
            weights[track] = (weights[track] or 0) + weight
    return RouteView(where, config.rule, "", weights["stable"], weights["canary"], others)


def with_weights(
    route: Mapping[str, Any], intent: RouteIntent, owner_name: str, namespace: str
) -> dict[str, Any]:
    """The route with aigate's two backendRefs in its rule at the intent's weights (added
    if absent); everything else as it was. The route must have the rule (read_rule)."""
    new = copy.deepcopy(dict(route))
    index, _ = find_rule(new, intent.config.rule)
    rule = new["spec"]["rules"][index]
    refs = rule.setdefault("backendRefs", [])
    for track, weight in zip(TRACKS, intent.weights, strict=True):
        name = backend_name(owner_name, track)
        matches = [r for r in refs if _is_ours(r, intent.config, name, namespace)]
        if not matches:
            refs.append(_backend_ref(intent, name))
            continue
        for position, ref in enumerate(matches):
            ref["weight"] = weight if position == 0 else 0  # a duplicate gets nothing
            if intent.config.backend == "Service":
                ref["port"] = intent.port
    return new


def _backend_ref(intent: RouteIntent, name: str) -> dict[str, Any]:
    weight = intent.weights[0] if name.endswith("-stable") else intent.weights[1]
    if intent.config.backend == "InferencePool":
        return {"group": POOL_GROUP, "kind": "InferencePool", "name": name, "weight": weight}
    return {"name": name, "port": intent.port, "weight": weight}


def abandoned(written: RouteWeights | None, intent: RouteIntent | None, namespace: str) -> bool:
    """aigate last gave the canary weight in a rule that the plan no longer names (another
    route or rule, or the replica router): that weight is taken off before anything else."""
    if written is None or not written.canary:
        return False
    if intent is None:
        return True
    current = (f"{namespace}/{intent.config.http_route}", intent.config.rule)
    return (written.route, written.rule) != current


def released(route: Mapping[str, Any], rule: str, owner_name: str, namespace: str):
    """`route` with aigate's refs (of any backend kind) in `rule` at stable 100, canary 0;
    None when the rule is gone (nothing to release)."""
    new = copy.deepcopy(dict(route))
    index, _ = find_rule(new, rule)
    if index < 0:
        return None
    weights = {backend_name(owner_name, "stable"): 100, backend_name(owner_name, "canary"): 0}
    for ref in new["spec"]["rules"][index].get("backendRefs") or []:
        if ref.get("name") in weights and str(ref.get("namespace") or namespace) == namespace:
            ref["weight"] = weights[ref["name"]]
    return new


# ---- per-track backends --------------------------------------------------------------------


def backend_manifest(
    intent: RouteIntent,
    track: str,
    owner_name: str,
    namespace: str,
    labels: Mapping[str, str],
    selector: Mapping[str, str],
    owner_reference: Mapping[str, Any],
) -> dict[str, Any]:
    """The Service or InferencePool `<name>-<track>` selecting the track's pods."""
    metadata = {
        "name": backend_name(owner_name, track),
        "namespace": namespace,
        "labels": dict(labels),
        "ownerReferences": [dict(owner_reference)],
    }
    config = intent.config
    if config.backend == "InferencePool" and config.inference_pool is not None:
        picker = getattr(config.inference_pool.endpoint_pickers, track)
        return {
            "apiVersion": f"{POOL_GROUP}/v1",
            "kind": "InferencePool",
            "metadata": metadata,
            "spec": {
                "selector": {"matchLabels": dict(selector)},
                "targetPorts": [{"number": intent.target_port}],
                "endpointPickerRef": {
                    "name": picker.name,
                    "port": {"number": picker.port},
                    "failureMode": config.inference_pool.failure_mode,
                },
            },
        }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "selector": dict(selector),
            "ports": [
                {
                    "name": "http",
                    "port": intent.port,
                    "targetPort": intent.target_port,
                    "protocol": "TCP",
                }
            ],
        },
    }


def backend_differs(live: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether a live backend lost what aigate wrote: a field of its spec, or a label or
    owner reference (fields the API server adds, such as a Service's clusterIP, are not
    compared)."""
    live_meta, want_meta = live.get("metadata") or {}, desired["metadata"]
    labels = live_meta.get("labels") or {}
    if any(labels.get(k) != v for k, v in want_meta["labels"].items()):
        return True
    if (live_meta.get("ownerReferences") or []) != want_meta["ownerReferences"]:
        return True
    live_spec = live.get("spec") or {}
    return any(_differs(live_spec.get(k), v) for k, v in desired["spec"].items())


# Fields the API server fills in with these defaults (an InferencePool's endpointPickerRef).
_DEFAULTED = {"group": "", "kind": "Service"}


def _differs(live: Any, want: Any) -> bool:
    if isinstance(want, Mapping):
        if not isinstance(live, Mapping):
            return True
        added = {k: v for k, v in live.items() if k not in want}
        if any(_DEFAULTED.get(k, object()) != v for k, v in added.items()):
            return True  # e.g. a label someone added to a selector
        return any(_differs(live.get(k), v) for k, v in want.items())
    if isinstance(want, list):
        return (
            not isinstance(live, list)
            or len(live) != len(want)
            or any(_differs(a, b) for a, b in zip(live, want, strict=True))
        )
    return live != want
