"""The test exporter that stands in for model servers (part of the harness)."""

from __future__ import annotations

import threading
import urllib.request

import pytest

from localcluster.exporter import serve, set_values
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
