"""End to end: the operator, the control plane, Prometheus and a model-server exporter.

Metric values are driven through the exporter per track; the operator queries the real
Prometheus. Timings are short (1 s interval, 3 s stages) but every wait is on a condition.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from aigate.core.revision import compute_revision
from support.background import Background
from support.factories import approval_annotations, spec_model
from support.kube import Aid
from support.scenarios import NAME, plan
from support.waiting import holds_for, wait_for

pytestmark = pytest.mark.usefixtures("operator")

TIMEOUT = 120


def approve(aid: Aid, spec: dict) -> str:
    revision = compute_revision(spec_model(spec))
    aid.annotate(approval_annotations(revision, datetime.now(UTC) - timedelta(seconds=5)))
    return revision


def stable_v1(cluster, api_client, namespace, **kwargs) -> tuple[Aid, str]:
    aid = Aid(api_client, namespace, NAME)
    spec = plan(cluster.info.prometheus_url, "2.4.0", **kwargs)
    aid.create(spec)
    revision = approve(aid, spec)
    wait_for(
        lambda: aid.phase() == "Stable",
        timeout=TIMEOUT,
        what="v1 Stable",
    )
    return aid, revision


def roll_out_v2(cluster, aid: Aid, **kwargs) -> str:
    spec = plan(cluster.info.prometheus_url, "2.5.0", **kwargs)
    aid.patch({"spec": spec})
    return approve(aid, spec)


class StableWatch(Background):
    """Samples the stable track's Ready pods in the background for the whole rollout."""

    def __init__(self, aid: Aid) -> None:
        super().__init__()
        self.aid = aid
        self.minimum: int | None = None
        self.samples = 0

    def _run(self) -> None:
        while not self.stopping:
            ready = len(self.aid.ready_pods("stable"))
            self.minimum = ready if self.minimum is None else min(self.minimum, ready)
            self.samples += 1
            time.sleep(0.2)


def phase_is(aid: Aid, phase: str):
    return lambda: aid.phase() == phase


def test_healthy_version_goes_through_every_stage_to_stable(
    cluster, api_client, namespace, servers
):
    aid, v1 = stable_v1(cluster, api_client, namespace)
    v2 = roll_out_v2(cluster, aid)
    seen: dict[str, int] = {}

    def observe_until_promoted():
        status = aid.status()
        canary = [d for d in aid.deployments() if d.metadata.name == f"{NAME}-canary"]
        if canary and status.get("stage") in ("canary-10", "canary-50", "full"):
            seen[status["stage"]] = canary[0].spec.replicas
        return status.get("phase") == "Stable" and status.get("stableRevision") == v2

    with StableWatch(aid) as watch:
        wait_for(observe_until_promoted, timeout=TIMEOUT, what="v2 Stable", interval=0.2)
    assert seen == {"canary-10": 1, "canary-50": 2, "full": 4}
    assert watch.samples > 10 and watch.minimum == 4
    wait_for(lambda: not aid.pods("canary"), timeout=TIMEOUT, what="canary pods gone")
    assert len(aid.ready_pods("stable")) == 4
    assert all(
        p.metadata.labels["aigate.dev/revision"] == v2[:12] for p in aid.ready_pods("stable")
    )
    history = aid.status()["history"]
    passed = [h for h in history if h["reason"] == "StagePassed" and h["revision"] == v2]
    assert [h["stage"] for h in passed] == ["canary-10", "canary-50", "full"]
    # status names each decision's record; the record holds its evidence
    wait_for(lambda: not aid.status()["records"].get("outbox"), timeout=60, what="records out")
    by_sequence = {r["sequence"]: r for r in aid.records()}
    for summary in passed:
        entry = by_sequence[summary["sequence"]]
        assert entry["digest"] == summary["digest"] and not summary["evidence"]
        metrics = {e["metric"]: e for e in entry["evidence"]}
        assert set(metrics) == {"error-rate", "p99-latency"}
        assert metrics["error-rate"]["verdict"] == "Pass"
        assert metrics["error-rate"]["value"] == "0.001"
        assert 'track="canary"' in metrics["error-rate"]["query"]
        assert f'namespace="{namespace}"' in metrics["error-rate"]["query"]
    promoted = next(h for h in history if h["reason"] == "Promoted" and h["revision"] == v2)
    assert "2.5.0" in promoted["message"] and aid.status()["serving"]["revision"] == v2
    assert v1 in {h["revision"] for h in history}


def test_breaching_version_is_rolled_back_automatically(cluster, api_client, namespace, servers):
    aid, v1 = stable_v1(cluster, api_client, namespace)
    servers.set("canary", error=0.2)
    with StableWatch(aid) as watch:
        v2 = roll_out_v2(cluster, aid)
        wait_for(phase_is(aid, "RolledBack"), timeout=TIMEOUT, what="RolledBack")
    assert watch.minimum == 4  # the documented policy: stable stays at full strength
    wait_for(lambda: not aid.pods("canary"), timeout=TIMEOUT, what="canary gone")
    assert {d.metadata.name for d in aid.deployments()} == {f"{NAME}-stable"}
    ready = aid.ready_pods("stable")
    assert len(ready) == 4 and all(
        p.metadata.labels["aigate.dev/revision"] == v1[:12] for p in ready
    )
    status = aid.status()
    assert status["rolledBackRevisions"] == [v2] and status["stableRevision"] == v1
    stalled = aid.condition("Stalled")
    assert stalled["reason"] == "RolledBack"
    rollback = next(h for h in status["history"] if h["toPhase"] == "RollingBack")
    for text in ("error-rate", "0.2", "<= 0.01"):
        assert text in rollback["message"]
    aid.wait_event("AnalysisFailed", "error-rate", "0.2", "<= 0.01")
    # not retried while the spec is unchanged
    holds_for(
        lambda: aid.phase() == "RolledBack" and not aid.pods("canary"),
        duration=5,
        what="no retry of a rolled-back revision",
    )


def test_prometheus_down_pauses_the_stage_and_progress_resumes_when_it_is_back(
    cluster, api_client, namespace, servers
):
    aid, _ = stable_v1(cluster, api_client, namespace)
    v2 = roll_out_v2(cluster, aid)
    wait_for(
        lambda: (
            (aid.status().get("rollout") or {}).get("readySince")
            and aid.status().get("stage") == "canary-10"
        ),
        timeout=TIMEOUT,
        what="canary-10 analysing",
    )
    cluster.stop_prometheus()
    try:
        wait_for(phase_is(aid, "Paused"), timeout=TIMEOUT, what="Paused while Prometheus is down")
        reconciling = aid.condition("Reconciling")
        assert reconciling["reason"] == "AnalysisInconclusive"
        assert (
            "inconclusiveLimit" in reconciling["message"]
            and "unreachable" in reconciling["message"]
        )
        holds_for(
            lambda: (
                aid.phase() == "Paused"
                and aid.status()["stage"] == "canary-10"
                and aid.status()["stableRevision"] != v2
            ),
            duration=5,
            what="no promotion while down",
        )
    finally:
        cluster.restart_prometheus()
    wait_for(
        lambda: aid.phase() == "Stable" and aid.status()["stableRevision"] == v2,
        timeout=TIMEOUT,
        what="progress resumed to Stable",
    )


def test_manual_promotion_waits_for_promote_and_abort_rolls_back(
    cluster, api_client, namespace, servers
):
    aid, v1 = stable_v1(cluster, api_client, namespace, manual=True)
    roll_out_v2(cluster, aid, manual=True)
    wait_for(
        lambda: aid.phase() == "Paused" and aid.status()["stage"] == "canary-50",
        timeout=TIMEOUT,
        what="waiting for promotion at canary-50",
    )
    assert aid.condition("Reconciling")["reason"] == "AwaitingPromotion"
    holds_for(
        lambda: aid.phase() == "Paused" and aid.status()["stage"] == "canary-50",
        duration=4,
        what="no promotion without the annotation",
    )
    aid.annotate({"aigate.dev/abort": "by=sre incident-77"})
    wait_for(phase_is(aid, "RolledBack"), timeout=30, what="RolledBack after abort")
    assert aid.status()["requests"]["abort"]["value"] == "by=sre incident-77"
    assert aid.status()["requests"]["abort"]["by"] == "sre"
    assert aid.status()["stableRevision"] == v1
    assert "aigate.dev/abort" in aid.get()["metadata"]["annotations"]  # never deleted


def test_promote_annotation_continues_a_manual_stage(cluster, api_client, namespace, servers):
    aid, _ = stable_v1(cluster, api_client, namespace, manual=True)
    v2 = roll_out_v2(cluster, aid, manual=True)
    wait_for(
        lambda: aid.phase() == "Paused" and aid.status()["stage"] == "canary-50",
        timeout=TIMEOUT,
        what="waiting for promotion",
    )
    value = f"canary-50@{v2} by=approver"
    aid.annotate({"aigate.dev/promote": value})
    wait_for(
        lambda: aid.phase() == "Stable" and aid.status()["stableRevision"] == v2,
        timeout=TIMEOUT,
        what="Stable after promote",
    )
    promote = aid.status()["requests"]["promote"]
    assert promote["value"] == value and promote["by"] == "approver"  # the user in the value


def test_operator_killed_mid_stage_resumes_the_same_stage(
    cluster, api_client, namespace, servers, operator
):
    aid, _ = stable_v1(cluster, api_client, namespace, manual=True)
    v2 = roll_out_v2(cluster, aid, manual=True)
    wait_for(
        lambda: (
            aid.status().get("stage") == "canary-10"
            and (aid.status().get("rollout") or {}).get("readySince")
        ),
        timeout=TIMEOUT,
        what="canary-10 under analysis",
    )
    operator.kill()
    before = aid.status()
    operator.start()
    wait_for(
        lambda: aid.phase() == "Paused" and aid.status()["stage"] == "canary-50",
        timeout=TIMEOUT,
        what="resumed to canary-50",
    )
    after = aid.status()
    # the stage that was running kept its start time and counters: it resumed, not restarted
    first_stage = [h for h in after["history"] if h["stage"] == "canary-10" and h["revision"] == v2]
    assert [h["reason"] for h in first_stage].count("RolloutStarted") == 1
    assert [h["reason"] for h in first_stage].count("StagePassed") == 1
    assert before["rollout"]["readySince"] <= next(
        h["time"] for h in first_stage if h["reason"] == "StagePassed"
    )
    aid.annotate({"aigate.dev/promote": f"canary-50@{v2} by=approver"})
    wait_for(
        lambda: aid.phase() == "Stable" and aid.status()["stableRevision"] == v2,
        timeout=TIMEOUT,
        what="Stable",
    )
    keys = [
        (h["reason"], h["stage"], h["message"])
        for h in aid.status()["history"]
        if h["revision"] == v2
    ]
    assert len(keys) == len(set(keys)), "duplicated history entries"


def test_breach_during_post_promotion_watch_restores_previous_version(
    cluster, api_client, namespace, servers
):
    aid, v1 = stable_v1(cluster, api_client, namespace, monitor="60s")
    v2 = roll_out_v2(cluster, aid, monitor="60s")
    wait_for(
        lambda: aid.phase() == "Verifying" and aid.status()["stableRevision"] == v2,
        timeout=TIMEOUT,
        what="v2 promoted, watch running",
    )
    assert aid.status()["watch"]["revision"] == v2
    servers.set("stable", error=0.3)
    wait_for(phase_is(aid, "RolledBack"), timeout=TIMEOUT, what="RolledBack from the watch")
    wait_for(
        lambda: (
            len(aid.ready_pods("stable")) == 4
            and all(
                p.metadata.labels["aigate.dev/revision"] == v1[:12]
                for p in aid.ready_pods("stable")
            )
        ),
        timeout=TIMEOUT,
        what="v1 pods back at full strength",
    )
    status = aid.status()
    assert status["stableRevision"] == v1 and status["stableVersion"] == "2.4.0"
    assert status["rolledBackRevisions"] == [v2]
    assert aid.event_messages("PostPromotionBreach")


def test_prometheus_credentials_from_a_missing_secret_pause_with_the_reason(
    cluster, api_client, namespace, servers, operator
):
    aid, _ = stable_v1(cluster, api_client, namespace)
    spec = plan(cluster.info.prometheus_url, "2.5.0")
    spec["rollout"]["analysis"]["prometheus"]["bearerTokenSecret"] = {
        "name": "prom-token",
        "key": "token",
    }
    # the test Prometheus listens on plain http (loopback): sending a token there is refused
    # unless the spec allows it explicitly
    spec["rollout"]["analysis"]["prometheus"]["allowInsecureBearerToken"] = True
    aid.patch({"spec": spec})
    approve(aid, spec)
    wait_for(phase_is(aid, "Paused"), timeout=TIMEOUT, what="Paused without credentials")
    message = aid.condition("Reconciling")["message"]
    assert "credentials unavailable" in message and "prom-token" in message
    # the Secret appears: the token is read and sent; this Prometheus ignores it, so data flows
    from kubernetes import client

    client.CoreV1Api(api_client).create_namespaced_secret(
        namespace, {"metadata": {"name": "prom-token"}, "stringData": {"token": "not-logged"}}
    )
    wait_for(
        lambda: aid.phase() == "Stable" and aid.status()["stableVersion"] == "2.5.0",
        timeout=TIMEOUT,
        what="Stable once the Secret exists",
    )
    assert "not-logged" not in operator.log_path.read_text()  # secrets never logged
