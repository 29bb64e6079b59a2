"""The operator's own Prometheus metrics (served by `aigate run --metrics-port`)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECONCILES = Counter("aigate_reconciles_total", "Reconciles of AIDeployments by result", ["result"])
RECONCILE_SECONDS = Histogram(
    "aigate_reconcile_duration_seconds", "Time spent in one reconcile (API calls included)"
)
EVENTS = Counter("aigate_events_total", "Kubernetes Events posted, by reason", ["reason"])
