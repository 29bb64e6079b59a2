"""A Prometheus exporter whose values are set over HTTP, standing in for model servers.

Prometheus scrapes ``GET /metrics``. Tests and the demo set gauges with
``PUT /values`` and a JSON body ``{"name": ..., "labels": {...}, "value": ...}``
(``"value": null`` removes the series) and clear everything with ``DELETE /values``.

Run: ``python -m localcluster.exporter --port PORT``.
"""

from __future__ import annotations

import argparse
import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_SeriesKey = tuple[tuple[str, str], ...]


class SettableGauges(Collector):
    """Gauges with arbitrary label sets, replaced wholesale by each set call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[_SeriesKey, float]] = {}

    def set(self, name: str, labels: dict[str, str], value: float | None) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values.setdefault(name, {})
            if value is None:
                series.pop(key, None)
            else:
                series[key] = value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            snapshot = {name: dict(series) for name, series in self._values.items()}
        for name, series in snapshot.items():
            # One family per label-name set: a family must have fixed label names.
            by_label_names: dict[tuple[str, ...], GaugeMetricFamily] = {}
            for key, value in series.items():
                label_names = tuple(k for k, _ in key)
                family = by_label_names.get(label_names)
                if family is None:
                    family = GaugeMetricFamily(name, f"test value {name}", labels=label_names)
                    by_label_names[label_names] = family
                family.add_metric([v for _, v in key], value)
            yield from by_label_names.values()


def _parse_value(raw: object) -> float | None:
    """None removes the series; numbers and "NaN" / "+Inf" / "-Inf" strings set it."""
    return None if raw is None else float(raw)  # type: ignore[arg-type]


def serve(port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    gauges = SettableGauges()
    registry = CollectorRegistry()
    registry.register(gauges)

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                self._reply(200, generate_latest(registry), "text/plain; version=0.0.4")
            elif self.path == "/healthz":
                self._reply(200, b"ok")
            else:
                self._reply(404, b"not found")

        def do_PUT(self) -> None:
            if self.path != "/values":
                self._reply(404, b"not found")
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                items = body if isinstance(body, list) else [body]
                for item in items:
                    labels = {str(k): str(v) for k, v in (item.get("labels") or {}).items()}
                    gauges.set(str(item["name"]), labels, _parse_value(item.get("value")))
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                self._reply(400, f"bad request: {error}".encode())
                return
            self._reply(204, b"")

        def do_DELETE(self) -> None:
            if self.path != "/values":
                self._reply(404, b"not found")
                return
            gauges.clear()
            self._reply(204, b"")

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per scrape every second is noise

    server = ThreadingHTTPServer((host, port), Handler)
    return server


def set_values(exporter_url: str, values: dict[str, object] | list[dict[str, object]]) -> None:
    """Client side of PUT /values, for tests and the demo."""
    request = urllib.request.Request(
        f"{exporter_url}/values", data=json.dumps(values).encode(), method="PUT"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        if response.status != 204:
            raise RuntimeError(f"exporter refused {values!r}: HTTP {response.status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(args.port).serve_forever()


if __name__ == "__main__":
    main()
