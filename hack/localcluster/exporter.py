"""A Prometheus exporter whose values are set over HTTP, standing in for model servers.

Prometheus scrapes ``GET /metrics``. Tests and the demo set gauges with
``PUT /values`` and a JSON body ``{"name": ..., "labels": {...}, "value": ...}``
(``"value": null`` removes the series) and clear everything with ``DELETE /values``.

Model servers export counters and histograms, which PromQL reads through rate(): an item
with ``"type": "counter"`` and ``"perSecond": r`` is a counter growing by r per second from
where it is (``"name"`` ends in ``_total``, as exposed); ``"type": "histogram"`` with
``"perSecond": {"<le>": r, ..., "+Inf": r}`` (cumulative, as buckets are) and optional
``"sumPerSecond"`` is a histogram whose buckets grow so. A test thus drives a request rate,
an error ratio or a latency distribution that rate() and histogram_quantile() read exactly.
``"perSecond": null`` removes the series.

Run: ``python -m localcluster.exporter --port PORT``.
"""

from __future__ import annotations

import argparse
import json
import math
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
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


class Growth:
    """A counter growing at `rate` per second from `base` at `since`; a new rate continues
    from the value reached, so the counter never goes down."""

    def __init__(self, rate: float, now: float) -> None:
        self.base, self.rate, self.since = 0.0, rate, now

    def value(self, now: float) -> float:
        return self.base + self.rate * (now - self.since)

    def change(self, rate: float, now: float) -> None:
        self.base, self.rate, self.since = self.value(now), rate, now


class GrowingSeries(Collector):
    """Counters and histograms whose values grow at the rates tests set."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # (type, name) -> labels -> {"": counter} or {le: bucket, ..., "sum": sum}
        self._series: dict[tuple[str, str], dict[_SeriesKey, dict[str, Growth]]] = {}

    def set(
        self, kind: str, name: str, labels: dict[str, str], rates: dict[str, float] | None
    ) -> None:
        key = tuple(sorted(labels.items()))
        now = self._clock()
        with self._lock:
            series = self._series.setdefault((kind, name), {})
            if rates is None:
                series.pop(key, None)
                return
            growths = series.setdefault(key, {})
            if set(growths) != set(rates):  # other buckets: a new histogram
                growths.clear()
            for part, rate in rates.items():
                if part in growths:
                    growths[part].change(rate, now)
                else:
                    growths[part] = Growth(rate, now)

    def clear(self) -> None:
        with self._lock:
            self._series.clear()

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        now = self._clock()
        with self._lock:
            snapshot = {
                kind_name: {
                    key: {p: g.value(now) for p, g in parts.items()}
                    for key, parts in series.items()
                }
                for kind_name, series in self._series.items()
            }
        for (kind, name), series in snapshot.items():
            by_label_names: dict[tuple[str, ...], CounterMetricFamily | HistogramMetricFamily] = {}
            for key, values in series.items():
                label_names = tuple(k for k, _ in key)
                family = by_label_names.get(label_names)
                if family is None:
                    family_type = (
                        CounterMetricFamily if kind == "counter" else HistogramMetricFamily
                    )
                    family = family_type(name, f"test {kind} {name}", labels=label_names)
                    by_label_names[label_names] = family
                label_values = [v for _, v in key]
                if isinstance(family, CounterMetricFamily):
                    family.add_metric(label_values, values[""])
                else:
                    buckets = sorted(
                        ((le, v) for le, v in values.items() if le != "sum"),
                        key=lambda b: float(b[0]),
                    )
                    family.add_metric(label_values, buckets, sum_value=values.get("sum", 0.0))
            yield from by_label_names.values()


def _rates(item: dict) -> tuple[str, dict[str, float] | None]:
    """The kind and per-second rates of a counter or histogram item; ValueError if they
    cannot be a Prometheus counter or histogram."""
    kind, per_second = item["type"], item.get("perSecond")
    if kind not in ("counter", "histogram"):
        raise ValueError(f"type must be counter or histogram, not {kind!r}")
    if per_second is None:
        return kind, None
    if kind == "counter":
        if not str(item["name"]).endswith("_total"):
            raise ValueError("a counter's name ends in _total")
        rates = {"": float(per_second)}
    else:
        rates = {str(le): float(r) for le, r in dict(per_second).items()}
        ordered = [rates[le] for le in sorted(rates, key=float)]
        if "+Inf" not in rates or ordered != sorted(ordered):
            raise ValueError("histogram buckets are cumulative and end with +Inf")
        rates["sum"] = float(item.get("sumPerSecond", 0.0))
    if any(r < 0 or math.isnan(r) for r in rates.values()):
        raise ValueError("counters never go down: rates are >= 0")
    return kind, rates


def _parse_value(raw: object) -> float | None:
    """None removes the series; numbers and "NaN" / "+Inf" / "-Inf" strings set it."""
    return None if raw is None else float(raw)  # type: ignore[arg-type]


def serve(port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    gauges = SettableGauges()
    growing = GrowingSeries()
    registry = CollectorRegistry()
    registry.register(gauges)
    registry.register(growing)

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
                    if "type" in item:
                        kind, rates = _rates(item)
                        growing.set(kind, str(item["name"]), labels, rates)
                    else:
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
            growing.clear()
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
