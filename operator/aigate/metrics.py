"""The operator's own Prometheus metrics (served by `aigate run --metrics-port`).

What a rollout looks like from Prometheus: its phase, stage and canary weight; the latest
measurement of each metric with its verdict; rollbacks, promotions and post-promotion
breaches by reason; approvals waiting and for how long; drift; the operator's own health
(reconciles, Prometheus queries). Names and labels: docs/monitoring.md.

Cardinality is bounded by design:
- per-resource series carry only `namespace` and `name`;
- `phase` and `verdict` are closed sets (11 and 3 values); `track` is canary or stable;
- `metric` is bounded by the spec (at most 32 metrics per AIDeployment);
- `stage` appears on one series per resource (the current stage), never accumulating;
- `reason` is one of the operator's own history reasons (a fixed set in the code);
- a resource's series are removed when it is deleted (forget()), and its measurement
  series when its analysis ends, so nothing stale stays behind.

Nothing here feeds a decision: it is an observer of what reconcile() already decided and
recorded (status and history), so metrics can never change a rollout's course.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, get_args

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from aigate.api.v1alpha1 import Phase

# ---- the operator's own work ---------------------------------------------------------------

RECONCILES = Counter("aigate_reconciles_total", "Reconciles of AIDeployments by result", ["result"])
RECONCILE_SECONDS = Histogram(
    "aigate_reconcile_duration_seconds", "Time spent in one reconcile (API calls included)"
)
EVENTS = Counter("aigate_events_total", "Kubernetes Events posted, by reason", ["reason"])
API_REQUESTS = Counter(
    "aigate_api_requests_total",
    "Requests the operator's reconciles sent to the Kubernetes API server, by verb and "
    "resource (kopf's watches and its Event posts are counted by aigate_events_total)",
    ["verb", "resource"],
)
# Present from the start at 0, so increase() sees the first error (a counter series that
# appears already at 1 shows no increase).
for _result in ("ok", "error", "transient-error"):
    RECONCILES.labels(result=_result)

PROMETHEUS_QUERY_SECONDS = Histogram(
    "aigate_prometheus_query_duration_seconds",
    "Time of one analysis query to Prometheus, whatever its outcome",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
MEASUREMENT_LAG_SECONDS = Histogram(
    "aigate_measurement_lag_seconds",
    "How long after its due time each measurement was taken (0 for an analysis's first)",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
MEASUREMENTS_AHEAD = Counter(
    "aigate_measurements_taken_ahead_total",
    "Measurements taken the moment they were due, while their round waited, by whether a "
    "round counted them (false: the analysis had moved on, e.g. after a transition)",
    ["used"],
)
PROMETHEUS_QUERIES_SHARED = Counter(
    "aigate_prometheus_queries_shared_total",
    "Analysis queries answered by an identical query (same endpoint, query and pinned "
    "instant) asked by another resource, instead of asking Prometheus again",
)
QUERY_ERROR_KINDS = ("timeout", "unreachable", "tls", "http", "unreadable")
PROMETHEUS_QUERY_ERRORS = Counter(
    "aigate_prometheus_query_errors_total",
    "Analysis queries that got no usable answer, by kind: timeout, unreachable, tls, "
    "http (an HTTP or PromQL error), unreadable (a body that is not the expected JSON)",
    ["kind"],
)
for _kind in QUERY_ERROR_KINDS:
    PROMETHEUS_QUERY_ERRORS.labels(kind=_kind)

# ---- per AIDeployment ---------------------------------------------------------------------

PHASES: tuple[str, ...] = get_args(Phase)  # the API's closed set of phases
VERDICTS = ("Pass", "Fail", "Inconclusive")
_RESOURCE = ["namespace", "name"]
_MEASURED = [*_RESOURCE, "metric", "track"]

PHASE = Gauge(
    "aigate_rollout_phase",
    "1 for the AIDeployment's current phase, 0 for the others",
    [*_RESOURCE, "phase"],
)
STAGE = Gauge(
    "aigate_rollout_stage_info",
    "1, labelled with the current canary stage (Promoting and Verifying are phases); absent "
    "when no stage runs",
    [*_RESOURCE, "stage"],
)
CANARY_WEIGHT = Gauge(
    "aigate_rollout_canary_weight_ratio",
    "The current stage's canary weight (status.canaryWeight / 100); 0 outside canary stages",
    _RESOURCE,
)
MEASUREMENT_VALUE = Gauge(
    "aigate_analysis_measurement_value",
    "The latest value measured for a metric of the running analysis (NaN when there was none)",
    _MEASURED,
)
MEASUREMENT_VERDICT = Gauge(
    "aigate_analysis_measurement_verdict",
    "1 for the latest verdict of a metric of the running analysis, 0 for the other verdicts",
    [*_MEASURED, "verdict"],
)
MEASUREMENTS = Counter(
    "aigate_analysis_measurements_total", "Measurements taken, by verdict", [*_MEASURED, "verdict"]
)
ROLLBACKS = Counter(
    "aigate_rollbacks_total",
    "Rollbacks started, by reason (AnalysisFailed, ProgressDeadlineExceeded, AbortRequested, "
    "PostPromotionBreach, PauseTimeout)",
    [*_RESOURCE, "reason"],
)
PROMOTIONS = Counter(
    "aigate_promotions_total", "Promotions of a canary to stable, by reason", [*_RESOURCE, "reason"]
)
POST_PROMOTION_BREACHES = Counter(
    "aigate_post_promotion_breaches_total",
    "Breaches found by the post-promotion watch (rolled back, or reported when there is no "
    "previous version to restore)",
    _RESOURCE,
)
DRIFT = Counter(
    "aigate_drift_detected_total",
    "Children found changed by someone else and reverted (Events with reason DriftDetected)",
    _RESOURCE,
)

_PER_RESOURCE: tuple[Any, ...] = (
    PHASE,
    STAGE,
    CANARY_WEIGHT,
    MEASUREMENT_VALUE,
    MEASUREMENT_VERDICT,
    MEASUREMENTS,
    ROLLBACKS,
    PROMOTIONS,
    POST_PROMOTION_BREACHES,
    DRIFT,
)


class _EventLike(Protocol):
    type: str
    reason: str
    message: str


class _Series:
    """Which label sets each metric holds per resource, so they can be removed exactly
    (prometheus_client removes one label set at a time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple[str, str], set[tuple[Any, tuple[str, ...]]]] = {}

    def labels(self, metric: Any, *values: str) -> Any:
        key = (values[0], values[1])
        with self._lock:
            self._held.setdefault(key, set()).add((metric, values))
        return metric.labels(*values)

    def remove(
        self,
        namespace: str,
        name: str,
        only: Iterable[Any] | None = None,
        unless: Callable[[tuple[str, ...]], bool] = lambda values: False,
    ) -> None:
        """Removes the resource's series (of the `only` metrics, if given), except those
        whose label values `unless` keeps."""
        wanted = None if only is None else set(only)
        with self._lock:
            held = self._held.get((namespace, name), set())
            for metric, values in list(held):
                if (wanted is not None and metric not in wanted) or unless(values):
                    continue
                held.discard((metric, values))
                with contextlib.suppress(KeyError):  # already gone
                    metric.remove(*values)
            if not held:
                self._held.pop((namespace, name), None)


_series = _Series()


class _Approvals(Collector):
    """Approvals waiting and their age, computed at scrape time so the age is always now's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: dict[tuple[str, str], float] = {}

    def waiting(self, namespace: str, name: str, since: float | None) -> None:
        with self._lock:
            if since is None:
                self._since.pop((namespace, name), None)
            else:
                self._since[(namespace, name)] = since

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = time.time()
        with self._lock:
            since = dict(self._since)
        count = GaugeMetricFamily(
            "aigate_approvals_waiting", "AIDeployments whose current revision awaits approval"
        )
        count.add_metric([], len(since))
        yield count
        age = GaugeMetricFamily(
            "aigate_approval_waiting_seconds",
            "How long an AIDeployment's current revision has been waiting for approval",
            labels=_RESOURCE,
        )
        for (namespace, name), started in sorted(since.items()):
            age.add_metric([namespace, name], max(0.0, now - started))
        yield age


APPROVALS = _Approvals()
REGISTRY.register(APPROVALS)


# ---- feeding them ---------------------------------------------------------------------------


def observe_outcome(
    namespace: str,
    name: str,
    previous_status: Mapping[str, Any] | None,
    status: Mapping[str, Any] | None,
    events: Sequence[_EventLike],
    measurements: Sequence[Any],
) -> None:
    """Updates the metrics from one reconcile: `previous_status` is what the round read,
    `status` what it wrote (None when it wrote nothing: a conflict dropped the round),
    `measurements` the MeasurementRecords it took. Counters count what the round recorded,
    so a dropped round or a restarted operator never counts twice."""
    for event in events:
        if event.reason == "DriftDetected":
            _series.labels(DRIFT, namespace, name).inc()
    if status is None:
        return
    _observe_state(namespace, name, status)
    for entry in _new_history(previous_status or {}, status):
        to_phase, reason = entry.get("toPhase", ""), entry.get("reason", "") or "Unknown"
        # A breach is recorded when found (a rollback starting, or a note when there is
        # nothing to restore); the rollback's completion repeats the reason: not counted.
        if reason == "PostPromotionBreach" and to_phase != "RolledBack":
            _series.labels(POST_PROMOTION_BREACHES, namespace, name).inc()
        if entry.get("fromPhase") == to_phase:
            continue  # a recorded fact, not a transition
        if to_phase == "RollingBack":
            _series.labels(ROLLBACKS, namespace, name, reason).inc()
        elif to_phase == "Promoting":
            _series.labels(PROMOTIONS, namespace, name, reason).inc()
    for record in measurements:
        _observe_measurement(namespace, name, record)
        MEASUREMENT_LAG_SECONDS.observe(record.lag_seconds)


def forget(namespace: str, name: str) -> None:
    """Removes every series of a deleted AIDeployment."""
    _series.remove(namespace, name)
    APPROVALS.waiting(namespace, name, None)


def _observe_state(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    phase = str(status.get("phase") or "Pending")
    for known in PHASES if phase in PHASES else (*PHASES, phase):
        _series.labels(PHASE, namespace, name, known).set(1 if known == phase else 0)
    stage = str(status.get("stage") or "")
    # One stage series per resource: the previous stage's goes when the stage changes.
    _series.remove(namespace, name, only=(STAGE,), unless=lambda values: values[2] == stage)
    if stage:
        _series.labels(STAGE, namespace, name, stage).set(1)
    weight = status.get("canaryWeight") or 0
    _series.labels(CANARY_WEIGHT, namespace, name).set(float(weight) / 100)

    track = _running_track(phase, status)
    if not track:
        # No analysis runs: the latest measurements belong to a finished one.
        _series.remove(namespace, name, only=(MEASUREMENT_VALUE, MEASUREMENT_VERDICT))
    else:
        # Only the running analysis's track (canary stage, or stable during the watch).
        _series.remove(
            namespace,
            name,
            only=(MEASUREMENT_VALUE, MEASUREMENT_VERDICT),
            unless=lambda values: values[3] == track,
        )

    APPROVALS.waiting(
        namespace, name, _waiting_since(status) if phase == "AwaitingApproval" else None
    )


def _observe_measurement(namespace: str, name: str, record: Any) -> None:
    metric, track, verdict = record.metric, record.track, record.verdict
    _series.labels(MEASUREMENT_VALUE, namespace, name, metric, track).set(_number(record.value))
    for known in VERDICTS:
        _series.labels(MEASUREMENT_VERDICT, namespace, name, metric, track, known).set(
            1 if known == verdict else 0
        )
    _series.labels(MEASUREMENTS, namespace, name, metric, track, verdict).inc()


def _number(text: str) -> float:
    try:
        return float(text) if text else math.nan
    except ValueError:
        return math.nan


def _running_track(phase: str, status: Mapping[str, Any]) -> str | None:
    """The track a running analysis measures: the canary during stages, stable during the
    post-promotion watch; None otherwise."""
    if phase == "Verifying":
        return "stable"
    if phase in ("Progressing", "Paused"):
        rollout = status.get("rollout")
        analysis = rollout.get("analysis") if isinstance(rollout, Mapping) else None
        return str(analysis.get("track") or "") or None if isinstance(analysis, Mapping) else None
    return None


def _new_history(previous: Mapping[str, Any], status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """History entries the round added: those whose digest the previous status lacked."""
    seen = {e.get("digest") for e in previous.get("history") or [] if isinstance(e, Mapping)}
    return [
        e
        for e in status.get("history") or []
        if isinstance(e, Mapping) and e.get("digest") and e.get("digest") not in seen
    ]


def _waiting_since(status: Mapping[str, Any]) -> float:
    """When the wait began: the Authorized condition turning False (else Stalled turning
    True), as recorded in status, so a restarted operator reports the same age."""
    conditions = {
        c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, Mapping)
    }
    for type_, wanted in (("Authorized", "False"), ("Stalled", "True")):
        condition = conditions.get(type_) or {}
        if condition.get("status") == wanted and condition.get("lastTransitionTime"):
            try:
                return datetime.fromisoformat(
                    str(condition["lastTransitionTime"]).replace("Z", "+00:00")
                ).timestamp()
            except ValueError:
                continue
    return time.time()
