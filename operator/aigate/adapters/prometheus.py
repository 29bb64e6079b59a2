"""Prometheus queries through prometheus-api-client: pinned instants, timeouts, no retries.

The reconciler calls measure_async: queries run on the pool's own threads, through one
kept-alive session per endpoint and credentials, at most PER_ENDPOINT_CONCURRENCY
measurements at a time per endpoint. Every failure becomes a QueryOutcome with an error text
(never an exception, never a stale value: only an answer to the very same query at the very
same pinned instant is shared): "Prometheus is down" is an input to decide(), which judges
it inconclusive.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from aigate import metrics
from aigate.api.durations import parse_duration
from aigate.api.v1alpha1 import PrometheusSpec
from aigate.core.analysis import MeasurementPlan, Measurements, MetricResult
from aigate.core.verdict import QueryOutcome

_MAX_ERROR = 300


@dataclass(frozen=True)
class Credentials:
    """Read from Secrets by the reconciler; never logged."""

    bearer_token: str = ""
    ca_pem: str = ""


def redact_url(url: str) -> str:
    """The URL without user:password, for messages."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        parts = parts._replace(netloc=f"***@{host}")
    return urlunsplit(parts)


def measure(plan: MeasurementPlan, spec: PrometheusSpec, credentials: Credentials) -> Measurements:
    """Every planned query at the plan's pinned instant, through the endpoint's pooled
    session. Blocking: call it through measure_async (or a thread)."""
    if (
        credentials.bearer_token
        and spec.url.startswith("http://")
        and not (spec.allow_insecure_bearer_token)
    ):
        # A bearer token over plain HTTP can be read by anyone on the path: refused unless
        # the spec says so explicitly. Every metric is then an error outcome, never a pass.
        refused = QueryOutcome.failed(
            f"refusing to send the bearer token to {redact_url(spec.url)} over plain http: use "
            f"https, or set prometheus.allowInsecureBearerToken"
        )
        return Measurements.of(
            plan, tuple(MetricResult(q.metric, q.query, refused) for q in plan.queries)
        )
    timeout = max(parse_duration(spec.timeout).total_seconds(), 0.1)
    connection = POOL.connection(spec, credentials)
    at = plan.at.timestamp()
    results = []
    for planned in plan.queries:
        outcome = connection.query(planned.query, at, timeout)
        guard = connection.query(planned.guard_query, at, timeout) if planned.guard_query else None
        baseline = (
            connection.query(planned.baseline_query, at, timeout)
            if planned.baseline_query
            else None
        )
        results.append(
            MetricResult(
                planned.metric,
                planned.query,
                outcome,
                guard,
                baseline,
                planned.baseline_query or "",
            )
        )
    return Measurements.of(plan, tuple(results))


async def measure_async(
    plan: MeasurementPlan, spec: PrometheusSpec, credentials: Credentials
) -> Measurements:
    """measure() on the Prometheus threads, at most PER_ENDPOINT_CONCURRENCY at a time per
    endpoint: a slow Prometheus delays only the resources that use it, never the
    Kubernetes calls (which run on asyncio's default threads)."""
    async with POOL.limit(spec, credentials):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(POOL.executor, measure, plan, spec, credentials)


@dataclass(frozen=True)
class EndpointKey:
    """One pooled session per URL and credentials; credentials appear only as digests."""

    url: str
    insecure_skip_verify: bool
    token_digest: str
    ca_digest: str

    @classmethod
    def of(cls, spec: PrometheusSpec, credentials: Credentials) -> EndpointKey:
        return cls(
            spec.url,
            spec.insecure_skip_verify,
            _digest(credentials.bearer_token),
            _digest(credentials.ca_pem),
        )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest() if secret else ""


@dataclass(frozen=True)
class _Answer:
    future: Future[QueryOutcome]
    asked_at: float


class Connection:
    """A requests session kept open for one endpoint (keep-alive, one TLS handshake), and
    single-flight for identical queries: the same query at the same pinned instant is asked
    once while it is in flight or answered within ANSWER_TTL seconds (an instant query
    pinned to a time has one answer)."""

    def __init__(self, key: EndpointKey, spec: PrometheusSpec, credentials: Credentials) -> None:
        self.key = key
        self.last_used = time.monotonic()
        self._ca_file = ""
        self._lock = threading.Lock()
        self._answers: OrderedDict[tuple[str, float], _Answer] = OrderedDict()
        session = requests.Session()
        if spec.insecure_skip_verify:
            session.verify = False
        elif credentials.ca_pem:
            handle, self._ca_file = tempfile.mkstemp(prefix="aigate-ca-", suffix=".pem")
            with os.fdopen(handle, "w") as stream:
                stream.write(credentials.ca_pem)
            session.verify = self._ca_file
        # One attempt per interval: the next interval is the retry, and a down Prometheus
        # must not stall the reconcile.
        adapter = HTTPAdapter(max_retries=Retry(total=0), pool_maxsize=PER_ENDPOINT_CONCURRENCY * 2)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        headers = (
            {"Authorization": f"Bearer {credentials.bearer_token}"}
            if credentials.bearer_token
            else None
        )
        self._session = session
        self._client = PrometheusConnect(
            url=spec.url, headers=headers, session=session, retry=Retry(total=0)
        )

    def query(self, query: str, at: float, timeout: float) -> QueryOutcome:
        self.last_used = time.monotonic()
        key = (query, at)
        with self._lock:
            self._forget_old()
            answer = self._answers.get(key)
            mine = answer is None
            if answer is None:
                answer = self._answers[key] = _Answer(Future(), time.monotonic())
        if not mine:
            metrics.PROMETHEUS_QUERIES_SHARED.inc()
            return answer.future.result()
        try:
            outcome = _query(self._client, query, at, timeout, self.key.url)
        except BaseException as error:  # never leave the others waiting
            answer.future.set_exception(error)
            raise
        if outcome.error:  # an error is not an answer: the next caller asks again
            with self._lock:
                self._answers.pop(key, None)
        answer.future.set_result(outcome)
        return outcome

    def _forget_old(self) -> None:
        now = time.monotonic()
        while self._answers:
            oldest = next(iter(self._answers.values()))
            if oldest.future.done() and (
                now - oldest.asked_at > ANSWER_TTL or len(self._answers) > MAX_ANSWERS
            ):
                self._answers.popitem(last=False)
            else:
                break

    def close(self) -> None:
        self._session.close()
        if self._ca_file:
            with contextlib.suppress(OSError):
                os.unlink(self._ca_file)


class Pool:
    """The operator's Prometheus connections: at most MAX_ENDPOINTS sessions, the least
    recently used closed first; each endpoint with its own concurrency bound."""

    def __init__(self, workers: int = 32) -> None:
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prometheus")
        self._lock = threading.Lock()
        self._connections: OrderedDict[EndpointKey, Connection] = OrderedDict()
        self._limits: dict[EndpointKey, asyncio.Semaphore] = {}
        self._limits_loop: asyncio.AbstractEventLoop | None = None

    def connection(self, spec: PrometheusSpec, credentials: Credentials) -> Connection:
        key = EndpointKey.of(spec, credentials)
        with self._lock:
            connection = self._connections.get(key)
            if connection is None:
                connection = self._connections[key] = Connection(key, spec, credentials)
            self._connections.move_to_end(key)
            while len(self._connections) > MAX_ENDPOINTS:
                _, evicted = self._connections.popitem(last=False)
                evicted.close()
            return connection

    def limit(self, spec: PrometheusSpec, credentials: Credentials) -> asyncio.Semaphore:
        key = EndpointKey.of(spec, credentials)
        loop = asyncio.get_running_loop()
        if loop is not self._limits_loop:  # semaphores belong to one event loop
            self._limits, self._limits_loop = {}, loop
        if key not in self._limits:
            if len(self._limits) > MAX_ENDPOINTS * 4:
                self._limits = {k: s for k, s in self._limits.items() if s.locked()}
            self._limits[key] = asyncio.Semaphore(PER_ENDPOINT_CONCURRENCY)
        return self._limits[key]

    def close(self) -> None:
        with self._lock:
            for connection in self._connections.values():
                connection.close()
            self._connections.clear()


PER_ENDPOINT_CONCURRENCY = 4
MAX_ENDPOINTS = 64
ANSWER_TTL = 30.0
MAX_ANSWERS = 4096
POOL = Pool()


def _query(
    client: PrometheusConnect, query: str, at: float, timeout: float, url: str
) -> QueryOutcome:
    # Timed whatever the outcome; errors counted by kind (aigate_prometheus_query_*).
    with metrics.PROMETHEUS_QUERY_SECONDS.time():
        outcome, error_kind = _query_once(client, query, at, timeout, url)
    if error_kind:
        metrics.PROMETHEUS_QUERY_ERRORS.labels(kind=error_kind).inc()
    return outcome


def _query_once(
    client: PrometheusConnect, query: str, at: float, timeout: float, url: str
) -> tuple[QueryOutcome, str]:
    """The outcome, and the kind of error ("" when Prometheus answered usably)."""
    try:
        data = client.custom_query(
            query, params={"time": f"{at:.3f}", "timeout": f"{timeout:g}s"}, timeout=timeout
        )
    except PrometheusApiClientException as error:
        return QueryOutcome.failed(
            _short(f"Prometheus at {redact_url(url)} answered {_answer_summary(str(error))}")
        ), "http"
    except requests.exceptions.SSLError as error:
        return QueryOutcome.failed(
            _short(
                f"Prometheus at {redact_url(url)}: TLS verification failed ({type(error).__name__}); "
                f"set prometheus.caSecret to its CA"
            )
        ), "tls"
    except requests.exceptions.Timeout:
        return QueryOutcome.failed(
            f"Prometheus at {redact_url(url)} timed out after {timeout:g}s"
        ), "timeout"
    except requests.exceptions.RequestException as error:
        return QueryOutcome.failed(
            _short(f"Prometheus at {redact_url(url)} unreachable: {type(error).__name__}")
        ), "unreachable"
    except (ValueError, KeyError, TypeError) as error:  # not JSON, or not a query result
        return QueryOutcome.failed(
            f"unreadable answer from Prometheus at {redact_url(url)} ({type(error).__name__})"
        ), "unreadable"
    outcome = _samples(data)
    return outcome, "unreadable" if outcome.error else ""


def _samples(data: Any) -> QueryOutcome:
    """An instant vector's values, or a scalar's one value."""
    try:
        if isinstance(data, list) and len(data) == 2 and not isinstance(data[0], dict):
            return QueryOutcome(samples=(float(data[1]),))  # scalar: [time, "value"]
        return QueryOutcome(samples=tuple(float(series["value"][1]) for series in data))
    except (TypeError, KeyError, IndexError, ValueError) as error:
        return QueryOutcome.failed(_short(f"unexpected result shape ({type(error).__name__})"))


_STATUS = re.compile(r"HTTP Status Code (\d+)")
_BODY = re.compile(r"\(b'(.*)'\)\s*$", re.S)
_MAX_PROMQL_ERROR = 160


def _answer_summary(text: str) -> str:
    """HTTP status and, from a Prometheus error document, its errorType and a short error
    message (e.g. a PromQL parse error); never the raw response body."""
    status = _STATUS.search(text)
    summary = f"HTTP {status.group(1)}" if status else "an error"
    body = _BODY.search(text)
    try:
        document = json.loads(body.group(1)) if body else None
    except ValueError:
        document = None
    if isinstance(document, dict) and document.get("status") == "error":
        error = str(document.get("error", ""))[:_MAX_PROMQL_ERROR]
        summary += f" {document.get('errorType', '')}: {error}".rstrip(": ")
    return summary


def _short(text: str) -> str:
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"
