"""The operator's metrics: what one reconcile's outcome adds, bounded series, removal on
delete, approval age, and Prometheus query timing and error counts."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY, generate_latest

from aigate import metrics
from aigate.adapters.prometheus import Credentials, measure
from aigate.api.v1alpha1 import MeasurementRecord, PrometheusSpec
from aigate.core.analysis import MeasurementPlan, PlannedQuery
from localcluster.processes import free_port

NS, NAME = "team-a", "fraud-scorer"


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str = ""


def value(metric_name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric_name, labels)


def resource(**labels: str) -> dict[str, str]:
    return {"namespace": NS, "name": NAME, **labels}


def record(metric: str, track: str, value_text: str, verdict: str) -> MeasurementRecord:
    return MeasurementRecord(
        metric=metric,
        track=track,
        query="q",
        value=value_text,
        verdict=verdict,
        time="2026-11-20T10:00:00Z",
    )


def entry(digest: str, from_phase: str, to_phase: str, reason: str) -> dict:
    return {"digest": digest, "fromPhase": from_phase, "toPhase": to_phase, "reason": reason}


@pytest.fixture(autouse=True)
def clean():
    metrics.forget(NS, NAME)
    yield
    metrics.forget(NS, NAME)


def test_phase_stage_and_weight_one_series_each():
    status = {"phase": "Progressing", "stage": "canary-10", "canaryWeight": 10}
    metrics.observe_outcome(NS, NAME, {}, status, (), ())
    assert value("aigate_rollout_phase", **resource(phase="Progressing")) == 1
    assert value("aigate_rollout_phase", **resource(phase="Stable")) == 0
    assert value("aigate_rollout_stage_info", **resource(stage="canary-10")) == 1
    assert value("aigate_rollout_canary_weight_ratio", **resource()) == 0.1

    status = {"phase": "Paused", "stage": "canary-50", "canaryWeight": 50}
    metrics.observe_outcome(NS, NAME, {}, status, (), ())
    assert value("aigate_rollout_phase", **resource(phase="Progressing")) == 0
    assert value("aigate_rollout_phase", **resource(phase="Paused")) == 1
    assert value("aigate_rollout_stage_info", **resource(stage="canary-10")) is None
    assert value("aigate_rollout_stage_info", **resource(stage="canary-50")) == 1
    phases = [
        line
        for line in generate_latest().decode().splitlines()
        if line.startswith("aigate_rollout_phase{") and f'name="{NAME}"' in line
    ]
    assert len(phases) == len(metrics.PHASES)  # bounded: one series per known phase


def test_measurements_value_verdict_and_counts_and_their_end():
    status = {"phase": "Progressing", "rollout": {"analysis": {"track": "canary"}}}
    records = (
        record("error-rate", "canary", "0.2", "Fail"),
        record("latency", "canary", "", "Inconclusive"),
    )
    metrics.observe_outcome(NS, NAME, {}, status, (), records)
    metrics.observe_outcome(NS, NAME, {}, status, (), records[:1])
    labels = resource(metric="error-rate", track="canary")
    assert value("aigate_analysis_measurement_value", **labels) == 0.2
    assert value("aigate_analysis_measurement_verdict", **labels, verdict="Fail") == 1
    assert value("aigate_analysis_measurement_verdict", **labels, verdict="Pass") == 0
    assert value("aigate_analysis_measurements_total", **labels, verdict="Fail") == 2
    latency = resource(metric="latency", track="canary")
    assert math.isnan(value("aigate_analysis_measurement_value", **latency))
    assert value("aigate_analysis_measurement_verdict", **latency, verdict="Inconclusive") == 1

    # The post-promotion watch measures stable: the canary's latest values go.
    watch = {"phase": "Verifying", "watch": {"analysis": {"track": "stable"}}}
    metrics.observe_outcome(NS, NAME, {}, watch, (), (record("error-rate", "stable", "0", "Pass"),))
    assert value("aigate_analysis_measurement_value", **labels) is None
    stable = resource(metric="error-rate", track="stable")
    assert value("aigate_analysis_measurement_value", **stable) == 0
    # No analysis runs: no "latest measurement" stays behind; counters stay.
    metrics.observe_outcome(NS, NAME, {}, {"phase": "Stable"}, (), ())
    assert value("aigate_analysis_measurement_value", **stable) is None
    assert value("aigate_analysis_measurements_total", **labels, verdict="Fail") == 2


def test_rollbacks_and_promotions_count_new_history_transitions_once():
    before = {"history": [entry("a", "Progressing", "Progressing", "StageStarted")]}
    after = {
        "phase": "RolledBack",
        "history": [
            *before["history"],
            entry("b", "Progressing", "RollingBack", "AnalysisFailed"),
            entry("c", "RollingBack", "RolledBack", "AnalysisFailed"),
        ],
    }
    metrics.observe_outcome(NS, NAME, before, after, (), ())
    metrics.observe_outcome(NS, NAME, after, after, (), ())  # nothing new: nothing counted
    assert value("aigate_rollbacks_total", **resource(reason="AnalysisFailed")) == 1
    promoted = {
        "phase": "Promoting",
        "history": [
            *after["history"],
            entry("d", "Paused", "Paused", "RequestHandled"),
            entry("e", "Paused", "Promoting", "Promoting"),
        ],
    }
    metrics.observe_outcome(NS, NAME, after, promoted, (), ())
    assert value("aigate_promotions_total", **resource(reason="Promoting")) == 1
    # A dropped round (status None) counts nothing from history.
    metrics.observe_outcome(NS, NAME, {}, None, (), ())
    assert value("aigate_rollbacks_total", **resource(reason="AnalysisFailed")) == 1


def test_drift_comes_from_events():
    events = (Event("Warning", "DriftDetected"), Event("Normal", "StageStarted"))
    metrics.observe_outcome(NS, NAME, {}, {"phase": "Stable"}, events, ())
    assert value("aigate_drift_detected_total", **resource()) == 1


def test_post_promotion_breaches_count_once_whether_rolled_back_or_not():
    rolled_back = {
        "phase": "RolledBack",
        "history": [
            entry("p", "Stable", "RollingBack", "PostPromotionBreach"),
            entry("q", "RollingBack", "RolledBack", "PostPromotionBreach"),
        ],
    }
    metrics.observe_outcome(NS, NAME, {}, rolled_back, (), ())
    assert value("aigate_post_promotion_breaches_total", **resource()) == 1
    assert value("aigate_rollbacks_total", **resource(reason="PostPromotionBreach")) == 1
    # The first version has nothing to restore: the breach is a note, still counted.
    noted = {"phase": "Stable", "history": [entry("r", "Stable", "Stable", "PostPromotionBreach")]}
    metrics.observe_outcome(
        NS,
        NAME,
        rolled_back,
        {**noted, "history": rolled_back["history"] + noted["history"]},
        (),
        (),
    )
    assert value("aigate_post_promotion_breaches_total", **resource()) == 2


def test_approval_waiting_and_its_age_from_the_condition():
    since = time.time() - 120
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
    status = {
        "phase": "AwaitingApproval",
        "conditions": [{"type": "Authorized", "status": "False", "lastTransitionTime": stamp}],
    }
    metrics.observe_outcome(NS, NAME, {}, status, (), ())
    assert value("aigate_approvals_waiting") >= 1
    age = value("aigate_approval_waiting_seconds", **resource())
    assert 119 <= age < 200
    metrics.observe_outcome(NS, NAME, {}, {"phase": "Deploying"}, (), ())
    assert value("aigate_approval_waiting_seconds", **resource()) is None


def test_forget_removes_every_series_of_the_resource():
    status = {"phase": "Paused", "stage": "canary-10", "analysis": {"track": "canary"}}
    history = {"history": [entry("x", "Progressing", "RollingBack", "AbortRequested")]}
    metrics.observe_outcome(
        NS,
        NAME,
        {},
        {**status, **history},
        (Event("Warning", "DriftDetected"),),
        (record("error-rate", "canary", "0.1", "Pass"),),
    )
    metrics.forget(NS, NAME)
    text = generate_latest().decode()
    assert f'name="{NAME}"' not in text


def test_prometheus_queries_are_timed_and_errors_counted_by_kind():
    def errors(kind: str) -> float:
        return value("aigate_prometheus_query_errors_total", kind=kind) or 0

    count_before = value("aigate_prometheus_query_duration_seconds_count") or 0
    unreachable_before = errors("unreachable")
    url = f"http://127.0.0.1:{free_port()}"
    plan = MeasurementPlan("canary", metrics_time(), (PlannedQuery("m", "up", None),))
    measure(plan, PrometheusSpec(url=url, timeout="1s"), Credentials())
    assert errors("unreachable") == unreachable_before + 1
    assert value("aigate_prometheus_query_duration_seconds_count") == count_before + 1


def metrics_time():
    from datetime import UTC, datetime

    return datetime(2026, 11, 20, tzinfo=UTC)


def test_api_requests_are_counted_by_verb_and_resource():
    from aigate.adapters.kube import CountingApiClient, resource_of

    assert resource_of("https://h:6443/apis/apps/v1/namespaces/ns/deployments/x") == "deployments"
    assert resource_of("https://h/api/v1/namespaces/ns/services/x") == "services"
    assert (
        resource_of("https://h/apis/aigate.dev/v1alpha1/namespaces/ns/aideployments/x/status")
        == "aideployments/status"
    )
    assert resource_of("https://h/api/v1/namespaces/ns") == "namespaces"
    assert resource_of("https://h/apis/apps/v1/deployments") == "deployments"

    seen: list[tuple[str, str]] = []
    api = CountingApiClient(lambda verb, resource: seen.append((verb, resource)))

    class Answer:  # what the REST layer returns; no server is involved in counting
        status = 200

    api.rest_client = type("Rest", (), {"request": lambda *a, **k: Answer()})()
    api.call_api("get", "https://h/apis/apps/v1/namespaces/ns/deployments/x")
    assert seen == [("GET", "deployments")]


def test_each_measurement_s_lag_is_observed():
    status = {"phase": "Progressing", "rollout": {"analysis": {"track": "canary"}}}
    late = record("error-rate", "canary", "0.001", "Pass").model_copy(update={"lag_seconds": 3.4})
    count = value("aigate_measurement_lag_seconds_count") or 0.0
    on_time = value("aigate_measurement_lag_seconds_bucket", le="0.1") or 0.0
    within_5 = value("aigate_measurement_lag_seconds_bucket", le="5.0") or 0.0
    metrics.observe_outcome(NS, NAME, {}, status, (), (late,))
    assert value("aigate_measurement_lag_seconds_count") == count + 1
    assert value("aigate_measurement_lag_seconds_bucket", le="0.1") == on_time  # late
    assert value("aigate_measurement_lag_seconds_bucket", le="5.0") == within_5 + 1
