"""Prometheus queries through prometheus-api-client: pinned instants, timeouts, no retries.

Synchronous; the reconciler runs it with asyncio.to_thread. Every failure becomes a
QueryOutcome with an error text (never an exception, never a cached value): "Prometheus
is down" is an input to decide(), which judges it inconclusive.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
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
    ca_file = None
    session = requests.Session()
    try:
        if spec.insecure_skip_verify:
            session.verify = False
        elif credentials.ca_pem:
            handle, ca_file = tempfile.mkstemp(prefix="aigate-ca-", suffix=".pem")
            with os.fdopen(handle, "w") as stream:
                stream.write(credentials.ca_pem)
            session.verify = ca_file
        # One attempt per interval: the next interval is the retry, and a down Prometheus
        # must not stall the reconcile.
        session.mount("http://", HTTPAdapter(max_retries=Retry(total=0)))
        session.mount("https://", HTTPAdapter(max_retries=Retry(total=0)))
        headers = (
            {"Authorization": f"Bearer {credentials.bearer_token}"}
            if credentials.bearer_token
            else None
        )
        client = PrometheusConnect(
            url=spec.url, headers=headers, session=session, timeout=timeout, retry=Retry(total=0)
        )
        at = plan.at.timestamp()
        results = []
        for planned in plan.queries:
            outcome = _query(client, planned.query, at, timeout, spec.url)
            guard = (
                _query(client, planned.guard_query, at, timeout, spec.url)
                if planned.guard_query
                else None
            )
            results.append(MetricResult(planned.metric, planned.query, outcome, guard))
        return Measurements.of(plan, tuple(results))
    finally:
        session.close()
        if ca_file:
            os.unlink(ca_file)


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
