"""What Argo CD, Flux and Prometheus see of a real rollout.

One AIDeployment goes through refusal, approval, a first deployment, a canary with a manual
stage, a promotion and a rolled-back canary, driven by the real operator against the real
control plane and Prometheus. A watch records every version of the object the API server
serves; afterwards each one is judged by:
- the Argo CD health script, in a real Lua 5.1 runtime, against the contract table;
- the real kstatus library (Flux), against the documented behaviour;
and the operator's /metrics is checked at the points where it matters.
"""

from __future__ import annotations

import copy
import json
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client, watch
from prometheus_client.parser import text_string_to_metric_families

from aigate.core.revision import compute_revision
from support import kstatus
from support.argocd import PHASE_HEALTH, evaluate, expected_message, generation_observed
from support.background import Background
from support.factories import approval_annotations, spec_model
from support.kube import GROUP, PLURAL, VERSION, Aid
from support.scenarios import HEALTHY, NAME, ModelServers, plan
from support.waiting import wait_for

TIMEOUT = 120
REQUIRED_PHASES = {
    "AwaitingApproval",
    "Deploying",
    "Progressing",
    "Paused",
    "Promoting",
    "Verifying",
    "Stable",
    "RolledBack",
}
# Flux: what kstatus must say in the phases every rollout goes through (docs/flux.md).
KSTATUS_BY_PHASE = {
    "AwaitingApproval": "Failed",
    "Progressing": "InProgress",
    "Paused": "InProgress",
    "Stable": "Current",
    "RolledBack": "Failed",
}
# Flux with the committed healthCheckExprs (integrations/flux/), by phase.
FLUX_FAILED = {"AwaitingApproval", "RollingBack", "RolledBack", "Failed"}
FLUX_EXPECTED = {
    "accepted": lambda phase: (
        "Failed" if phase in FLUX_FAILED else "InProgress" if phase == "Pending" else "Current"
    ),
    "complete": lambda phase: (
        "Failed" if phase in FLUX_FAILED else "Current" if phase == "Stable" else "InProgress"
    ),
}


class Recorder(Background):
    """Every version of one AIDeployment the API server serves, from a watch."""

    JOIN_TIMEOUT = 30.0

    def __init__(self, api_client: client.ApiClient, namespace: str, name: str) -> None:
        super().__init__()
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.name = name
        self.objects: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        # Listing first gives the resourceVersion just before the test's writes.
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        self._version = listed["metadata"]["resourceVersion"]

    def _run(self) -> None:
        # Short server-side timeouts, resumed from the last version seen: the thread notices
        # a stop within seconds and no event between two streams is lost.
        while not self.stopping:
            try:
                for event in watch.Watch().stream(
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    resource_version=self._version,
                    field_selector=f"metadata.name={self.name}",
                    timeout_seconds=3,
                ):
                    obj = event["object"]
                    self._version = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.objects.append(copy.deepcopy(obj))
            except Exception as error:  # recorded: a gap would make the record incomplete
                if not self.stopping:
                    self.errors.append(error)
                return

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        assert not self._thread.is_alive(), "watch did not stop"


def scrape_once(operator, metric_name: str, **labels: str) -> dict:
    """The operator's samples, once the series `name{labels}` reads 1."""

    def ready() -> dict | None:
        samples = scrape(operator)
        return samples if sample(samples, metric_name, **labels) == 1 else None

    return wait_for(ready, timeout=30, what=f"{metric_name}{labels} == 1 in /metrics")


def scrape(operator) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(operator.metrics_url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples, metric_name: str, **labels: str) -> float | None:
    return samples.get((metric_name, tuple(sorted(labels.items()))))


def approve(aid: Aid, spec: dict) -> None:
    revision = compute_revision(spec_model(spec))
    aid.annotate(approval_annotations(revision, datetime.now(UTC) - timedelta(seconds=5)))


@pytest.mark.usefixtures("operator")
def test_argocd_health_kstatus_and_metrics_through_a_whole_rollout(
    cluster, api_client, namespace, operator, binaries
):
    servers = ModelServers(cluster.info.exporter_url, namespace)
    servers.set("stable", **HEALTHY)
    servers.set("canary", **HEALTHY)
    aid = Aid(api_client, namespace, NAME)
    ours = {"namespace": namespace, "name": NAME}
    url = cluster.info.prometheus_url

    with Recorder(api_client, namespace, NAME) as recorder:
        # Refused: no approval yet. Metrics count the wait.
        v1 = plan(url, "2.4.0")
        aid.create(v1)
        wait_for(lambda: aid.phase() == "AwaitingApproval", timeout=TIMEOUT, what="refusal")
        wait_for(
            lambda: (
                (sample(scrape(operator), "aigate_approval_waiting_seconds", **ours) or -1) >= 0
            ),
            timeout=30,
            what="approval wait in /metrics",
        )
        assert sample(scrape(operator), "aigate_approvals_waiting") >= 1

        # First version: deployed straight to stable.
        approve(aid, v1)
        wait_for(lambda: aid.phase() == "Stable", timeout=TIMEOUT, what="v1 Stable")

        # A canary with a manual stage, promoted by a person, watched after promotion.
        v2 = plan(url, "2.5.0", manual=True, monitor="3s")
        aid.patch({"spec": v2})
        approve(aid, v2)
        wait_for(
            lambda: aid.phase() == "Paused" and aid.status().get("stage") == "canary-50",
            timeout=TIMEOUT,
            what="Paused at canary-50",
        )
        # The metrics follow the status write within the same reconcile: wait for them.
        samples = scrape_once(operator, "aigate_rollout_phase", **ours, phase="Paused")
        assert sample(samples, "aigate_rollout_stage_info", **ours, stage="canary-50") == 1
        assert sample(samples, "aigate_rollout_canary_weight_ratio", **ours) == 0.5
        labels = {**ours, "metric": "error-rate", "track": "canary"}
        assert sample(samples, "aigate_analysis_measurement_value", **labels) == 0.001
        assert sample(samples, "aigate_analysis_measurement_verdict", **labels, verdict="Pass") == 1
        v2_revision = compute_revision(spec_model(v2))
        aid.annotate({"aigate.dev/promote": f"canary-50@{v2_revision} by=approver"})
        wait_for(
            lambda: (
                aid.status().get("stableRevision") == v2_revision
                and aid.phase() == "Stable"
                and not aid.status().get("monitorUntil")
            ),
            timeout=TIMEOUT,
            what="v2 Stable after its post-promotion watch",
        )

        # A breaching canary: rolled back automatically.
        servers.set("canary", error=0.2)
        v3 = plan(url, "2.6.0")
        aid.patch({"spec": v3})
        approve(aid, v3)
        wait_for(lambda: aid.phase() == "RolledBack", timeout=TIMEOUT, what="v3 RolledBack")

    samples = scrape_once(operator, "aigate_rollout_phase", **ours, phase="RolledBack")
    assert sample(samples, "aigate_rollbacks_total", **ours, reason="AnalysisFailed") == 1
    promotions = [
        v
        for (metric, labels), v in samples.items()
        if metric == "aigate_promotions_total" and set(ours.items()) <= set(labels)
    ]
    assert sum(promotions) == 1  # v2's, whatever reason the history gives it
    failed = {**ours, "metric": "error-rate", "track": "canary", "verdict": "Fail"}
    assert sample(samples, "aigate_analysis_measurements_total", **failed) >= 1
    assert sample(samples, "aigate_prometheus_query_duration_seconds_count") > 0
    assert sample(samples, "aigate_approval_waiting_seconds", **ours) is None

    assert not recorder.errors, recorder.errors
    objects = recorder.objects
    table = judge(binaries, objects)
    print("\nphase -> Argo CD health, kstatus, Flux exprs (accepted, complete), as measured:")
    for phase, seen in sorted(table.items()):
        print(f"  {phase:26}" + "".join(f" {'/'.join(sorted(values)):12}" for values in seen))
    assert set(table) >= REQUIRED_PHASES, sorted(table)

    # Deleted: the resource's series go.
    aid.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, NAME)
    wait_for(
        lambda: (
            not [
                key
                for key in scrape(operator)
                if ("name", NAME) in key[1] and ("namespace", namespace) in key[1]
            ]
        ),
        timeout=60,
        what="the deleted AIDeployment's series removed from /metrics",
    )


def judge(binaries, objects: list[dict[str, Any]]) -> dict[str, tuple[set[str], ...]]:
    """Checks every recorded version against the contracts; returns what was measured per
    phase (or generation state): the Argo CD healths, kstatus statuses and Flux
    healthCheckExprs verdicts seen."""
    assert objects, "the watch recorded nothing"
    exprs = {
        name: kstatus.health_check_exprs(path) for name, path in kstatus.KUSTOMIZATIONS.items()
    }
    flux = kstatus.compute(binaries, objects, exprs)
    table: dict[str, tuple[set[str], ...]] = defaultdict(lambda: (set(), set(), set(), set()))
    for obj, verdict in zip(objects, flux, strict=True):
        status = obj.get("status") or {}
        health = evaluate(obj)
        where = json.dumps(
            {k: status.get(k) for k in ("phase", "stage", "observedGeneration")}
            | {"generation": obj["metadata"]["generation"]}
        )
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        # kopf's own bookkeeping (status.kopf, written once its deletion handler watches the
        # object) is no status of aigate's: kstatus sees it as none.
        if not {k: v for k, v in status.items() if k != "kopf"}:
            key = "(no status yet)"
            assert health.status == "Progressing", where
            # kstatus knows nothing of a resource without status: it calls it Current.
            assert verdict["status"] == "Current", where
            # Flux waits either way: the expressions cannot read a missing status (Unknown),
            # and a status holding only kopf's bookkeeping is InProgress.
            for name in exprs:
                expected = "InProgress" if status else "Error: "
                assert verdict["exprs"][name].startswith(expected), where
                verdict["exprs"][name] = "Unknown" if not status else "InProgress"
        elif not generation_observed(obj):
            key = "(generation not observed)"
            assert health.status == "Progressing", where
            assert "waiting for the aigate operator to observe generation" in health.message
            assert verdict["status"] == "InProgress", where
            assert set(verdict["exprs"].values()) == {"InProgress"}, where
        else:
            key = status["phase"]
            assert health.status == PHASE_HEALTH[key], where
            assert health.message == expected_message(obj), where
            if (conditions.get("Stalled") or {}).get("status") == "True":
                assert verdict["status"] == "Failed", where
            elif (conditions.get("Reconciling") or {}).get("status") == "True":
                assert verdict["status"] == "InProgress", where
            else:
                assert verdict["status"] == "Current", where
            if key in KSTATUS_BY_PHASE:
                assert verdict["status"] == KSTATUS_BY_PHASE[key], where
            for name, expected in FLUX_EXPECTED.items():
                assert verdict["exprs"][name] == expected(key), (name, where)
        table[key][0].add(health.status)
        table[key][1].add(verdict["status"])
        table[key][2].add(verdict["exprs"]["accepted"])
        table[key][3].add(verdict["exprs"]["complete"])
    return dict(table)
