"""End to end, metric presets on the real control plane and the real Prometheus: the exporter
speaks vLLM's metric names (time-to-first-token and time-per-output-token histograms, the
HTTP request counter, the queue gauge) with the label set a scrape config gives aigate's
pods. A rollout analysed only with vLLM presets is promoted when the canary is as fast as
stable, and rolled back when its time to first token is worse; the CRD refuses a preset
name it does not know."""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes.client.rest import ApiException

from aigate.api.presets import PRESETS
from aigate.core.analysis import Subject, render_query
from aigate.core.revision import compute_revision, short
from localcluster.exporter import set_values
from support.factories import approval_annotations, spec_model
from support.kube import Aid
from support.scenarios import NAME, plan
from support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("operator")

TIMEOUT = 120
TTFT = "vllm-v1/time-to-first-token-p95"
METRICS = [
    {"name": "ttft-p95", "preset": TTFT, "max": 0.5},
    {"name": "ttft-vs-stable", "preset": TTFT, "compareTo": "stable", "maxRatio": 1.2},
    {"name": "tpot-p95", "preset": "vllm-v1/time-per-output-token-p95", "max": 0.1},
    {"name": "error-rate", "preset": "vllm-v1/error-rate", "max": 0.01},
    {"name": "queue-length", "preset": "vllm-v1/queue-length", "max": 10},
]
# Observations per second at or under each bound (cumulative, as histogram buckets are).
# 10 requests/s; p95 interpolates inside the bucket holding the 9.5th of them:
FAST_TTFT = {"0.1": 5, "0.25": 9, "0.5": 10, "1": 10, "+Inf": 10}  # p95 0.375 s
SLOW_TTFT = {"0.1": 0, "0.25": 0, "0.5": 2, "1": 10, "+Inf": 10}  # p95 0.96875 s
TPOT = {"0.025": 8, "0.05": 10, "+Inf": 10}  # p95 0.04375 s


def vllm_plan(prometheus_url: str, version: str) -> dict:
    raw = plan(prometheus_url, version)
    raw["rollout"]["analysis"]["metrics"] = METRICS
    return raw


class VllmServers:
    """The exporter's vLLM series for one revision on one track, labelled as the PodMonitor
    of examples/monitoring relabels aigate's pods."""

    def __init__(self, exporter_url: str, namespace: str) -> None:
        self.url = exporter_url
        self.namespace = namespace

    def serve(self, track: str, revision: str, ttft: dict[str, int]) -> None:
        labels = {
            "namespace": self.namespace,
            "aideployment": NAME,
            "track": track,
            "revision": short(revision),
            "model_name": "support-chat",
            "engine": "0",
        }
        http = {k: v for k, v in labels.items() if k not in ("model_name", "engine")}
        set_values(
            self.url,
            [
                histogram("vllm:time_to_first_token_seconds", labels, ttft),
                histogram("vllm:time_per_output_token_seconds", labels, TPOT),
                {"name": "vllm:num_requests_waiting", "labels": labels, "value": 1},
                # No request failed: the 5xx series does not exist, as with the real server.
                {
                    "name": "http_requests_total",
                    "type": "counter",
                    "labels": {
                        **http,
                        "handler": "/v1/chat/completions",
                        "method": "POST",
                        "status": "2xx",
                    },
                    "perSecond": 10,
                },
            ],
        )


def histogram(name: str, labels: dict[str, str], per_second: dict[str, int]) -> dict:
    return {
        "name": name,
        "type": "histogram",
        "labels": labels,
        "perSecond": per_second,
        "sumPerSecond": 1,
    }


def preset_value(prometheus_url: str, preset: str, subject: Subject) -> float | None:
    query = render_query(PRESETS[preset].query, subject.values())
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as answer:
        result = json.load(answer)["data"]["result"]
    return float(result[0]["value"][1]) if len(result) == 1 else None


def prometheus_reads(prometheus_url: str, subject: Subject, expected: dict[str, float]) -> bool:
    """Whether every preset already reads `expected` for `subject` (rate() needs two scrapes
    of a new series)."""
    for preset, value in expected.items():
        got = preset_value(prometheus_url, preset, subject)
        if got is None or not math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-12):
            return False
    return True


def subject(namespace: str, revision: str, version: str, track: str) -> Subject:
    return Subject(NAME, namespace, revision, version, track)


HEALTHY = {
    TTFT: 0.375,
    "vllm-v1/time-per-output-token-p95": 0.04375,
    "vllm-v1/error-rate": 0.0,
    "vllm-v1/queue-length": 1.0,
}


def roll_out(aid: Aid, spec: dict, *, first: bool = False) -> None:
    revision = compute_revision(spec_model(spec))
    if first:
        aid.create(spec)
    else:
        aid.patch({"spec": spec})
    aid.annotate(approval_annotations(revision, datetime.now(UTC) - timedelta(seconds=5)))


def test_vllm_presets_promote_a_canary_as_fast_as_stable_and_roll_back_a_slower_one(
    cluster, api_client, namespace
):
    url = cluster.info.prometheus_url
    servers = VllmServers(cluster.info.exporter_url, namespace)
    aid = Aid(api_client, namespace, NAME)
    specs = {v: vllm_plan(url, v) for v in ("2.4.0", "2.5.0", "2.6.0")}
    v1, v2, v3 = (compute_revision(spec_model(s)) for s in specs.values())

    servers.serve("stable", v1, FAST_TTFT)
    roll_out(aid, specs["2.4.0"], first=True)
    wait_for(lambda: aid.phase() == "Stable", timeout=TIMEOUT, what="v1 Stable")

    # v2's time to first token: p95 0.97 s, over max 0.5 and 2.6 x stable's 0.375 s.
    servers.serve("canary", v2, SLOW_TTFT)
    wait_for(
        lambda: prometheus_reads(
            url, subject(namespace, v2, "2.5.0", "canary"), {**HEALTHY, TTFT: 0.96875}
        ),
        timeout=TIMEOUT,
        what="Prometheus reading v2's slow time to first token",
    )
    roll_out(aid, specs["2.5.0"])
    wait_for(lambda: aid.phase() == "RolledBack", timeout=TIMEOUT, what="v2 RolledBack")
    status = aid.status()
    assert status["stableRevision"] == v1 and status["rolledBackRevisions"] == [v2]
    trigger = status["lastRollback"]["trigger"]
    assert trigger["metric"] in ("ttft-p95", "ttft-vs-stable")
    assert float(trigger["value"]) == pytest.approx(0.96875)
    failed = [
        m
        for m in status["recentMeasurements"]
        if m["metric"] == "ttft-vs-stable" and m["verdict"] == "Fail"
    ]
    assert failed, status["recentMeasurements"]
    for measurement in failed:  # the resolved preset, for the canary's own revision
        assert "vllm:time_to_first_token_seconds_bucket" in measurement["query"]
        assert f'track="canary",revision="{short(v2)}"' in measurement["query"]
        assert f'track="stable",revision="{short(v1)}"' in measurement["baselineQuery"]
        assert float(measurement["baselineValue"]) == pytest.approx(0.375)
    # The other presets judged the same canary healthy.
    passed = {m["metric"] for m in status["recentMeasurements"] if m["verdict"] == "Pass"}
    assert {"tpot-p95", "error-rate", "queue-length"} <= passed

    # v3 as fast as stable: every preset passes, on every stage.
    servers.serve("canary", v3, FAST_TTFT)
    wait_for(
        lambda: prometheus_reads(url, subject(namespace, v3, "2.6.0", "canary"), HEALTHY),
        timeout=TIMEOUT,
        what="Prometheus reading v3's series",
    )
    roll_out(aid, specs["2.6.0"])
    wait_for(
        lambda: aid.phase() == "Stable" and aid.status()["stableRevision"] == v3,
        timeout=TIMEOUT,
        what="v3 Stable",
    )
    status = aid.status()
    assert v3 not in status.get("rolledBackRevisions", [])
    judged = [m for m in status["recentMeasurements"] if short(v3) in m["query"]]
    assert {m["metric"] for m in judged if m["verdict"] == "Pass"} == {m["name"] for m in METRICS}
    assert not [m for m in judged if m["verdict"] == "Fail"]


@pytest.mark.parametrize(
    "metric, message",
    [
        ({"preset": "vllm/ttft-p95"}, "supported values: "),
        ({"preset": TTFT, "query": "up"}, "a metric needs exactly one of query or preset"),
    ],
)
def test_the_crd_refuses_an_unknown_preset_and_a_metric_with_both(
    cluster, api_client, namespace, metric, message
):
    raw = plan(cluster.info.prometheus_url, "2.4.0")
    raw["rollout"]["analysis"]["metrics"] = [{"name": "m", "max": 1, **metric}]
    with pytest.raises(ApiException) as refused:
        Aid(api_client, namespace, "refused").create(raw)
    assert refused.value.status == 422 and message in refused.value.body
    if "supported values" in message:
        assert f'\\"{TTFT}\\"' in refused.value.body and "preset" in refused.value.body
