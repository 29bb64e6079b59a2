"""The Prometheus connection pool against local HTTP/1.1 endpoints: one kept-alive
session per endpoint, identical queries at the same instant asked once, and a stalled
endpoint that holds up only its own resources (issue 10)."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import REGISTRY

from aigate.adapters import prometheus
from aigate.adapters.prometheus import Credentials, measure, measure_async
from aigate.api.v1alpha1 import PrometheusSpec
from aigate.core.analysis import MeasurementPlan, PlannedQuery
from support.waiting import wait_for

AT = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
WAIT = 30  # seconds: generous for a loaded 2-core machine; the conditions decide


@dataclass
class Endpoint:
    """What one fake Prometheus saw; `gate` holds every answer until it is set."""

    url: str = ""
    queries: list[str] = field(default_factory=list)
    client_ports: set[int] = field(default_factory=set)
    in_flight: int = 0
    most_in_flight: int = 0
    gate: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def handler_for(endpoint: Endpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Prometheus speaks it

        def do_GET(self) -> None:
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            with endpoint.lock:
                endpoint.queries.append(query.get("query", ""))
                endpoint.client_ports.add(self.client_address[1])
                endpoint.in_flight += 1
                endpoint.most_in_flight = max(endpoint.most_in_flight, endpoint.in_flight)
            endpoint.gate.wait(WAIT)
            with endpoint.lock:
                endpoint.in_flight -= 1
            body = json.dumps(
                {
                    "status": "success",
                    "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "1"]}]},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def endpoints() -> Iterator[Callable[..., Endpoint]]:
    servers: list[tuple[ThreadingHTTPServer, Endpoint]] = []

    def start(open_gate: bool = True) -> Endpoint:
        endpoint = Endpoint()
        if open_gate:
            endpoint.gate.set()
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(endpoint))
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        endpoint.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        servers.append((httpd, endpoint))
        return endpoint

    yield start
    prometheus.POOL.close()
    for httpd, endpoint in servers:
        endpoint.gate.set()
        httpd.shutdown()
        httpd.server_close()


def shared() -> float:
    return REGISTRY.get_sample_value("aigate_prometheus_queries_shared_total") or 0.0


def plan(*queries: str, at: datetime = AT) -> MeasurementPlan:
    return MeasurementPlan("canary", at, tuple(PlannedQuery(q, q, None) for q in queries))


def test_one_kept_alive_session_per_endpoint(endpoints):
    endpoint = endpoints()
    spec = PrometheusSpec(url=endpoint.url)
    for minute in range(3):
        result = measure(plan("a", "b", at=AT + timedelta(minutes=minute)), spec, Credentials())
        assert all(r.outcome.samples == (1.0,) for r in result.results)
    assert len(endpoint.queries) == 6
    assert len(endpoint.client_ports) == 1, "every query should reuse one TCP connection"


def test_identical_queries_at_the_same_instant_are_asked_once(endpoints):
    endpoint = endpoints(open_gate=False)
    spec = PrometheusSpec(url=endpoint.url)
    shared_before = shared()
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(measure(plan("same"), spec, Credentials())))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    wait_for(lambda: endpoint.in_flight == 1, timeout=WAIT, what="the first query in flight")
    endpoint.gate.set()
    for thread in threads:
        thread.join(WAIT)
    assert endpoint.queries == ["same"]
    assert len(results) == 3
    assert all(r.results[0].outcome.samples == (1.0,) for r in results)
    assert shared() - shared_before == 2
    # Another instant is another question.
    measure(plan("same", at=AT + timedelta(seconds=30)), spec, Credentials())
    assert endpoint.queries == ["same", "same"]


def test_different_credentials_never_share_a_session_or_an_answer(endpoints):
    endpoint = endpoints()
    spec = PrometheusSpec(url=endpoint.url, allow_insecure_bearer_token=True)
    measure(plan("q"), spec, Credentials(bearer_token="team-a"))
    measure(plan("q"), spec, Credentials(bearer_token="team-b"))
    assert endpoint.queries == ["q", "q"]
    assert len(endpoint.client_ports) == 2


def test_a_stalled_endpoint_delays_only_its_own_resources(endpoints):
    stalled = endpoints(open_gate=False)
    healthy = endpoints()

    async def scenario() -> None:
        slow_spec = PrometheusSpec(url=stalled.url, timeout="60s")
        waiting = [
            asyncio.create_task(measure_async(plan(f"slow-{i}"), slow_spec, Credentials()))
            for i in range(prometheus.PER_ENDPOINT_CONCURRENCY * 2)
        ]
        fast = await asyncio.wait_for(
            measure_async(plan("fast"), PrometheusSpec(url=healthy.url), Credentials()), WAIT
        )
        assert fast.results[0].outcome.samples == (1.0,)
        assert not any(task.done() for task in waiting)
        await asyncio.to_thread(
            wait_for,
            lambda: stalled.in_flight == prometheus.PER_ENDPOINT_CONCURRENCY,
            timeout=WAIT,
            what="the stalled endpoint at its concurrency bound",
        )
        stalled.gate.set()
        done = await asyncio.wait_for(asyncio.gather(*waiting), WAIT)
        assert all(r.results[0].outcome.samples == (1.0,) for r in done)

    asyncio.run(scenario())
    assert stalled.most_in_flight == prometheus.PER_ENDPOINT_CONCURRENCY
    assert len(stalled.queries) == prometheus.PER_ENDPOINT_CONCURRENCY * 2
