"""The test exporter that stands in for model servers (part of the harness)."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest

from localcluster.exporter import GrowingSeries, serve, set_values
from localcluster.processes import free_port


@pytest.fixture
def exporter_url():
    server = serve(free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def put(url: str, body) -> int:
    set_values(url, body)
    return 204


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        return response.read().decode()


def test_set_replace_and_remove_series(exporter_url):
    assert (
        put(exporter_url, {"name": "model_error_rate", "labels": {"track": "canary"}, "value": 0.5})
        == 204
    )
    assert 'model_error_rate{track="canary"} 0.5' in scrape(exporter_url)
    put(
        exporter_url,
        [
            {"name": "model_error_rate", "labels": {"track": "canary"}, "value": 0.01},
            {"name": "model_error_rate", "labels": {"track": "stable"}, "value": "NaN"},
        ],
    )
    text = scrape(exporter_url)
    assert 'model_error_rate{track="canary"} 0.01' in text
    assert 'model_error_rate{track="stable"} NaN' in text
    put(exporter_url, {"name": "model_error_rate", "labels": {"track": "canary"}, "value": None})
    assert 'track="canary"' not in scrape(exporter_url)


def test_bad_request_is_refused(exporter_url):
    request = urllib.request.Request(f"{exporter_url}/values", data=b"{}", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=5)
    assert error.value.code == 400


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def samples(collector) -> dict[str, float]:
    return {
        f"{s.name}{{{','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))}}}": s.value
        for family in collector.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_counters_grow_at_the_rate_set_and_never_go_down():
    clock = Clock()
    growing = GrowingSeries(clock)
    growing.set("counter", "http_requests_total", {"status": "2xx"}, {"": 10.0})
    clock.now += 3
    assert samples(growing) == {"http_requests_total{status=2xx}": 30.0}
    growing.set("counter", "http_requests_total", {"status": "2xx"}, {"": 1.0})
    clock.now += 2
    assert samples(growing) == {"http_requests_total{status=2xx}": 32.0}  # continues
    growing.set("counter", "http_requests_total", {"status": "2xx"}, None)
    assert samples(growing) == {}


def test_histograms_grow_bucket_by_bucket():
    clock = Clock()
    growing = GrowingSeries(clock)
    rates = {"0.1": 1.0, "0.5": 4.0, "+Inf": 5.0, "sum": 1.5}
    growing.set("histogram", "vllm:time_to_first_token_seconds", {"track": "canary"}, rates)
    clock.now += 10
    assert samples(growing) == {
        "vllm:time_to_first_token_seconds_bucket{le=0.1,track=canary}": 10.0,
        "vllm:time_to_first_token_seconds_bucket{le=0.5,track=canary}": 40.0,
        "vllm:time_to_first_token_seconds_bucket{le=+Inf,track=canary}": 50.0,
        "vllm:time_to_first_token_seconds_count{track=canary}": 50.0,
        "vllm:time_to_first_token_seconds_sum{track=canary}": 15.0,
    }


def test_model_server_series_over_http(exporter_url):
    labels = {"track": "canary"}
    put(
        exporter_url,
        [
            {"name": "http_requests_total", "type": "counter", "labels": labels, "perSecond": 5},
            {
                "name": "vllm:time_to_first_token_seconds",
                "type": "histogram",
                "labels": labels,
                "perSecond": {"0.25": 1, "+Inf": 2},
                "sumPerSecond": 0.5,
            },
        ],
    )
    text = scrape(exporter_url)
    assert "# TYPE http_requests_total counter" in text
    assert "# TYPE vllm:time_to_first_token_seconds histogram" in text
    assert 'vllm:time_to_first_token_seconds_bucket{le="+Inf",track="canary"}' in text


@pytest.mark.parametrize(
    "item",
    [
        {"name": "http_requests", "type": "counter", "perSecond": 1},  # no _total
        {"name": "x_total", "type": "counter", "perSecond": -1},
        {"name": "h", "type": "histogram", "perSecond": {"0.1": 2, "+Inf": 1}},  # not cumulative
        {"name": "h", "type": "histogram", "perSecond": {"0.1": 1}},  # no +Inf
        {"name": "s", "type": "summary", "perSecond": 1},
    ],
)
def test_series_prometheus_could_not_read_are_refused(exporter_url, item):
    request = urllib.request.Request(
        f"{exporter_url}/values", data=json.dumps(item).encode(), method="PUT"
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=5)
    assert error.value.code == 400
