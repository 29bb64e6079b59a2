"""The Prometheus adapter against local HTTP(S) endpoints that answer like Prometheus:
auth header, custom CA, pinned time, error shapes. (The real Prometheus is exercised by the
integration and end-to-end suites.)"""

from __future__ import annotations

import json
import ssl
import threading
import urllib.parse
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from aigate.adapters.prometheus import Credentials, measure, redact_url
from aigate.api.v1alpha1 import PrometheusSpec
from aigate.core.analysis import MeasurementPlan, PlannedQuery
from localcluster.pki import write_pki

AT = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


class FakePrometheus(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, object]]] = {}
    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        params = dict(urllib.parse.parse_qsl(url.query))
        FakePrometheus.seen.append({**params, "auth": self.headers.get("Authorization", "")})
        code, body = FakePrometheus.answers.get(
            params.get("query", ""),
            (200, {"status": "success", "data": {"resultType": "vector", "result": []}}),
        )
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def vector(*values: str) -> tuple[int, object]:
    return 200, {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {"i": str(i)}, "value": [1.0, v]} for i, v in enumerate(values)],
        },
    }


@pytest.fixture
def server():
    FakePrometheus.seen = []
    FakePrometheus.answers = {
        "one": vector("0.5"),
        "two": vector("0.5", "0.6"),
        "nan": vector("NaN"),
        "scalar": (
            200,
            {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3"]}},
        ),
        "bad": (
            400,
            {"status": "error", "errorType": "bad_data", "error": "parse error at char 4"},
        ),
    }
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakePrometheus)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def plan(*queries: str) -> MeasurementPlan:
    return MeasurementPlan("canary", AT, tuple(PlannedQuery(q, q, None) for q in queries))


def outcomes(result):
    return {r.metric: r.outcome for r in result.results}


def test_results_errors_and_pinned_time(server):
    url = f"http://127.0.0.1:{server.server_address[1]}"
    result = measure(
        plan("one", "two", "nan", "scalar", "bad", "empty"), PrometheusSpec(url=url), Credentials()
    )
    got = outcomes(result)
    assert got["one"].samples == (0.5,)
    assert got["two"].samples == (0.5, 0.6)
    assert str(got["nan"].samples[0]) == "nan"
    assert got["scalar"].samples == (3.0,)
    assert "400" in got["bad"].error and "parse error" in got["bad"].error
    assert got["empty"].samples == () and not got["empty"].error
    assert {s["time"] for s in FakePrometheus.seen} == {f"{AT.timestamp():.3f}"}
    assert all(s["auth"] == "" for s in FakePrometheus.seen)


def test_bearer_token_is_never_sent_over_plain_http_unless_allowed(server):
    url = f"http://127.0.0.1:{server.server_address[1]}"
    refused = outcomes(
        measure(plan("one"), PrometheusSpec(url=url), Credentials(bearer_token="s3cret"))
    )
    assert FakePrometheus.seen == []  # nothing went out
    assert (
        "plain http" in refused["one"].error and "allowInsecureBearerToken" in refused["one"].error
    )
    assert "s3cret" not in refused["one"].error
    allowed = PrometheusSpec(url=url, allowInsecureBearerToken=True)
    measure(plan("one"), allowed, Credentials(bearer_token="s3cret"))
    assert FakePrometheus.seen[-1]["auth"] == "Bearer s3cret"


def test_error_text_is_short_and_never_the_response_body(server):
    url = f"http://127.0.0.1:{server.server_address[1]}"
    FakePrometheus.answers["huge"] = (
        400,
        {"status": "error", "errorType": "bad_data", "error": "x" * 5000, "data": "secret-ish"},
    )
    FakePrometheus.answers["odd"] = (200, {"status": "success", "data": {"a": "secret-ish"}})
    got = outcomes(measure(plan("huge", "odd"), PrometheusSpec(url=url), Credentials()))
    assert got["huge"].error.startswith(f"Prometheus at {url} answered HTTP 400 bad_data: xxx")
    assert len(got["huge"].error) <= 300 and "secret-ish" not in got["huge"].error
    assert "unreadable answer" in got["odd"].error and "secret-ish" not in got["odd"].error


def test_unreachable_prometheus_is_an_error_outcome_quickly():
    from localcluster.processes import free_port

    url = f"http://127.0.0.1:{free_port()}"
    got = outcomes(measure(plan("one"), PrometheusSpec(url=url, timeout="1s"), Credentials()))
    assert "unreachable" in got["one"].error


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_https_with_custom_ca_and_without(server, tmp_path):
    paths = write_pki(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(paths["serving_cert"], paths["serving_key"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    url = f"https://127.0.0.1:{server.server_address[1]}"
    ca = paths["ca_cert"].read_text()
    trusted = outcomes(measure(plan("one"), PrometheusSpec(url=url), Credentials(ca_pem=ca)))
    assert trusted["one"].samples == (0.5,)
    untrusted = outcomes(measure(plan("one"), PrometheusSpec(url=url), Credentials()))
    assert "TLS verification failed" in untrusted["one"].error  # not trusted: never a value
    skip = outcomes(
        measure(plan("one"), PrometheusSpec(url=url, insecureSkipVerify=True), Credentials())
    )
    assert skip["one"].samples == (0.5,)


def test_credentials_never_appear_in_messages():
    assert redact_url("https://user:pw@prom.example:9090/x") == "https://***@prom.example:9090/x"
    assert redact_url("http://prom:9090") == "http://prom:9090"
