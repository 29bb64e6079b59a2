"""The Gateway API router's I/O: read the user's HTTPRoute, set the weights of aigate's two
backendRefs in one rule, keep the per-track backends (Services or InferencePools).

Synchronous (the official client); callers run these off the event loop. The route is the
user's: it is read and written whole with its resourceVersion (a concurrent edit is a 409:
read again next round, never overwritten), and only aigate's two backendRefs in the one rule
change (core/traffic.with_weights). The backends are aigate's: created, and written back
whole when someone changed them; one with the name that aigate does not control is never
touched (the route reports the conflict and no stage shifts traffic).
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from aigate.adapters.kube import (
    FIELD_MANAGER,
    FIELD_MANAGER_QUERY,
    RejectedError,
    TransientError,
    _translate,
)
from aigate.adapters.rest import Objects, object_path
from aigate.api.v1alpha1 import GatewayAPIRoute, RouteWeights
from aigate.core import traffic
from aigate.core.workloads import (
    LABEL_OWNER,
    LABEL_TRACK,
    MANAGED_BY,
    OPERATOR_NAME,
    Owner,
    _owner_reference,
    service_selector,
)

log = logging.getLogger("aigate.gateway")

ROUTE_GROUP, ROUTE_VERSION, ROUTES = "gateway.networking.k8s.io", "v1", "httproutes"
POOL_VERSION, POOLS = "v1", "inferencepools"


class GatewayRouter:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.objects = Objects(api_client)

    # ---- reading ---------------------------------------------------------------------

    def observe(self, owner: Owner, config: GatewayAPIRoute) -> traffic.RouteView:
        """The rule as it is now; a backend with aigate's name that aigate does not control
        is reported as the route's problem."""
        where = f"{owner.namespace}/{config.http_route}"
        try:
            route = self._get_route(owner.namespace, config.http_route)
            view = traffic.read_rule(route, config, owner.name, owner.namespace)
            if view.problem:
                return view
            return self._check_backends(owner, config, view)
        except RejectedError as error:  # e.g. 403: the chart's rbac.gatewayAPI is off
            return traffic.RouteView(where, config.rule, f"cannot be read: {error}")

    def _check_backends(
        self, owner: Owner, config: GatewayAPIRoute, view: traffic.RouteView
    ) -> traffic.RouteView:
        for track in traffic.TRACKS:
            live = self._get_backend(
                config, owner.namespace, traffic.backend_name(owner.name, track)
            )
            if live is not None and _controller_uid(live) != owner.uid:
                kind = "InferencePool" if config.backend == "InferencePool" else "Service"
                name = traffic.backend_name(owner.name, track)
                problem = f"{kind} {owner.namespace}/{name} exists and was not created by aigate"
                return traffic.RouteView(view.route, view.rule, problem)
        return view

    def _get_route(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(
                ROUTE_GROUP, ROUTE_VERSION, namespace, ROUTES, name
            )
        except ApiException as error:
            if error.status == 404:
                return None  # also when the Gateway API CRDs are not installed
            raise _translate(error, f"get HTTPRoute {namespace}/{name}") from error

    def _get_backend(
        self, config: GatewayAPIRoute, namespace: str, name: str
    ) -> dict[str, Any] | None:
        try:
            if config.backend == "InferencePool":
                return self.custom.get_namespaced_custom_object(
                    traffic.POOL_GROUP, POOL_VERSION, namespace, POOLS, name
                )
            return self.objects.get(object_path("v1", "services", namespace, name))
        except ApiException as error:
            if error.status == 404:
                return None
            raise _translate(error, f"get {config.backend} {namespace}/{name}") from error

    # ---- writing ---------------------------------------------------------------------

    def apply(
        self, owner: Owner, intent: traffic.RouteIntent, seen: traffic.RouteView | None = None
    ) -> RouteWeights | None:
        """Makes the backends and the rule's weights what `intent` says. Returns what the
        rule now holds (None: the route or rule is missing, or its weights are no longer
        those the decision saw (`seen`); nothing written). Raises TransientError (retry:
        nothing else of this round may go ahead of it) or RejectedError (the API server
        refused: reported, the round goes on)."""
        route = self._get_route(owner.namespace, intent.config.http_route)
        view = traffic.read_rule(route, intent.config, owner.name, owner.namespace)
        if route is None or view.problem:
            return None
        if seen is not None and not seen.problem and _weights(view) != _weights(seen):
            # Edited by someone else since this round read it: written back now, the edit
            # would be reverted unrecorded; the next round reads it, records it and reverts.
            return None
        desired = traffic.with_weights(route, intent, owner.name, owner.namespace)
        stable, canary = intent.weights
        if intent.canary_weight == 0 and desired != route:
            self._put_route(desired)  # traffic off the canary first, before any backend
            route = desired
        self._ensure_backends(owner, intent)
        if desired != route:
            self._put_route(desired)
        return RouteWeights(route=view.route, rule=view.rule, stable=stable, canary=canary)

    def release(self, owner: Owner, written: RouteWeights) -> RouteWeights | None:
        """Takes the canary's weight off a rule the plan no longer names (stable 100,
        canary 0). Returns what the rule now holds, None if the route or rule is gone."""
        namespace, _, name = written.route.partition("/")
        route = self._get_route(namespace, name)
        if route is None:
            return None
        desired = traffic.released(route, written.rule, owner.name, namespace)
        if desired is None:
            return None
        if desired != route:
            self._put_route(desired)
        return written.model_copy(update={"stable": 100, "canary": 0})

    def _put_route(self, route: dict[str, Any]) -> None:
        metadata = route["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        try:
            self.custom.replace_namespaced_custom_object(
                ROUTE_GROUP,
                ROUTE_VERSION,
                namespace,
                ROUTES,
                name,
                route,
                field_manager=FIELD_MANAGER,
            )
        except ApiException as error:
            if error.status == 409:
                raise TransientError(f"HTTPRoute {namespace}/{name} changed meanwhile") from error
            raise _translate(error, f"update HTTPRoute {namespace}/{name}") from error

    def _ensure_backends(self, owner: Owner, intent: traffic.RouteIntent) -> None:
        config = intent.config
        for track in traffic.TRACKS:
            name = traffic.backend_name(owner.name, track)
            desired = traffic.backend_manifest(
                intent,
                track,
                owner.name,
                owner.namespace,
                {MANAGED_BY: OPERATOR_NAME, LABEL_OWNER: owner.name, LABEL_TRACK: track},
                {**service_selector(owner), LABEL_TRACK: track},
                _owner_reference(owner),
            )
            live = self._get_backend(config, owner.namespace, name)
            if live is None:
                self._write_backend(config, desired, create=True)
            elif _controller_uid(live) != owner.uid:
                raise RejectedError(
                    f"{config.backend} {owner.namespace}/{name} was not created by aigate"
                )
            elif traffic.backend_differs(live, desired):
                log.warning(
                    "%s %s/%s changed outside aigate: writing it back",
                    config.backend,
                    owner.namespace,
                    name,
                )
                desired["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
                self._write_backend(config, desired, create=False)

    def _write_backend(
        self, config: GatewayAPIRoute, manifest: dict[str, Any], create: bool
    ) -> None:
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        try:
            if config.backend == "InferencePool":
                if create:
                    self.custom.create_namespaced_custom_object(
                        traffic.POOL_GROUP,
                        POOL_VERSION,
                        namespace,
                        POOLS,
                        manifest,
                        field_manager=FIELD_MANAGER,
                    )
                else:
                    self.custom.replace_namespaced_custom_object(
                        traffic.POOL_GROUP,
                        POOL_VERSION,
                        namespace,
                        POOLS,
                        name,
                        manifest,
                        field_manager=FIELD_MANAGER,
                    )
            elif create:
                self.objects.request(
                    "POST", object_path("v1", "services", namespace), manifest, FIELD_MANAGER_QUERY
                )
            else:
                self.objects.request(
                    "PUT",
                    object_path("v1", "services", namespace, name),
                    manifest,
                    FIELD_MANAGER_QUERY,
                )
        except ApiException as error:
            if error.status == 409:
                raise TransientError(f"{config.backend} {namespace}/{name}: conflict") from error
            raise _translate(error, f"write {config.backend} {namespace}/{name}") from error


def _controller_uid(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    refs = metadata.get("ownerReferences") or []
    controller = next((r for r in refs if r.get("controller")), {})
    return str(controller.get("uid", ""))


def _weights(view: traffic.RouteView) -> tuple[int | None, int | None, int]:
    return (view.stable, view.canary, view.others)
