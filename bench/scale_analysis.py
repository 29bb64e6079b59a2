"""The numbers of bench/scale.py, computed from what any aigate version leaves behind: the
AIRecords (measurement times), the API server's audit log (requests by user), /proc (CPU and
memory) and Prometheus text exposition (counters). No cluster needed: unit-tested in
tests/unit/test_bench_scale_analysis.py."""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

MEASUREMENTS_RECORDED = "MeasurementsRecorded"

# ---- small statistics --------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: list[float]) -> dict[str, float | int | None]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    return {
        "count": len(values),
        "p50": r(percentile(values, 50)),
        "p95": r(percentile(values, 95)),
        "max": r(max(values)) if values else None,
        "min": r(min(values)) if values else None,
    }


def parse_time(text: str) -> datetime:
    """RFC 3339 as the API server and aigate write it ("Z" or an offset, any precision)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---- measurement lag from AIRecords --------------------------------------------------------


@dataclass
class LagReport:
    """Measurement lags: lag_i = t_i - t_(i-1) - interval within one stage of one subject,
    metric and track (the first measurement of a stage has none)."""

    lags: list[float] = field(default_factory=list)
    explicit_lags: list[float] = field(default_factory=list)  # a `lagSeconds` field, if any
    per_stage_counts: Counter[str] = field(default_factory=Counter)  # stage -> measurements
    stages_by_count: Counter[int] = field(default_factory=Counter)  # n measurements -> stages
    measurements: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "measurements": self.measurements,
            "lag_seconds": summary(self.lags),
            "explicit_lag_seconds": summary(self.explicit_lags) if self.explicit_lags else None,
            "measurements_per_stage": {
                stage: self.per_stage_counts[stage] for stage in sorted(self.per_stage_counts)
            },
            "stages_by_measurement_count": {
                str(n): self.stages_by_count[n] for n in sorted(self.stages_by_count)
            },
        }


def measurement_lags(
    records: Iterable[dict],
    interval: float,
    is_transition: Callable[[str, str, str], bool],
) -> LagReport:
    """Lags from AIRecord specs (camelCase, as stored). The ledger flushes pending
    measurements before every transition, so the measurements in batches between two
    transition records (by sequence) belong to the segment the first one opened — a stage
    opened by RolloutStarted or StageStarted, named by that record's `stage` (the watch by
    its phase). Measurement
    times have the records' resolution (seconds)."""
    by_subject: dict[str, list[dict]] = defaultdict(list)
    for spec in records:
        by_subject[spec["subject"]["uid"]].append(spec)
    report = LagReport()
    for chain in by_subject.values():
        _subject_lags(sorted(chain, key=lambda s: s["sequence"]), interval, is_transition, report)
    return report


def _subject_lags(
    chain: list[dict],
    interval: float,
    is_transition: Callable[[str, str, str], bool],
    report: LagReport,
) -> None:
    segment = ""  # "" until the first transition: measurements before it are not counted
    series: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for spec in chain:
        reason = spec.get("reason", "")
        if is_transition(spec.get("fromPhase", ""), spec.get("toPhase", ""), reason):
            # A canary stage is named by its stage, anything else (the watch) by its phase.
            segment = f"{spec['sequence']}:{spec.get('stage') or spec.get('toPhase', '')}"
            continue
        if reason != MEASUREMENTS_RECORDED or not segment:
            continue
        for item in spec.get("evidence") or []:
            series[(segment, item["metric"], item["track"])].append(item)
    for (segment, _metric, _track), items in series.items():
        stage = segment.split(":", 1)[1]
        report.per_stage_counts[stage] += len(items)
        report.stages_by_count[len(items)] += 1
        report.measurements += len(items)
        times = [parse_time(i["time"]) for i in items]
        for previous, current in itertools.pairwise(times):
            report.lags.append((current - previous).total_seconds() - interval)
        report.explicit_lags.extend(
            float(i["lagSeconds"]) for i in items if i.get("lagSeconds") is not None
        )


# ---- API requests from the audit log -------------------------------------------------------

Window = tuple[datetime, datetime]


def resource_of(event: dict) -> str:
    ref = event.get("objectRef") or {}
    resource = ref.get("resource") or event.get("requestURI", "?").split("?")[0]
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    return resource


def agent_of(event: dict) -> str:
    """The client's product name from its User-Agent (kopf, OpenAPI-Generator, ...)."""
    return (event.get("userAgent") or "?").split("/", 1)[0].split(" ", 1)[0]


RequestKey = tuple[str, str, str]  # verb, resource[/subresource], client


def count_requests(
    lines: Iterable[str], user: str, windows: dict[str, Window]
) -> dict[str, Counter[RequestKey]]:
    """Requests of `user` per window, by (verb, resource[/subresource], client). One request
    per auditID (a watch logs ResponseStarted and ResponseComplete), placed by the time the
    server received it."""
    counts: dict[str, Counter[RequestKey]] = {name: Counter() for name in windows}
    seen: set[str] = set()
    for line in lines:
        if user not in line:  # cheap pre-filter; the JSON is checked below
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line cut off while the server was writing it
        if (event.get("user") or {}).get("username") != user or event["auditID"] in seen:
            continue
        seen.add(event["auditID"])
        at = parse_time(event["requestReceivedTimestamp"])
        key = (event.get("verb", "?"), resource_of(event), agent_of(event))
        for name, (start, end) in windows.items():
            if start <= at < end:
                counts[name][key] += 1
    return counts


READ_VERBS = ("get", "list")


def requests_table(counts: Counter[RequestKey], per: int = 1) -> dict[str, object]:
    """Totals by verb, by verb and resource, by client, and reads (get/list); divided by
    `per`."""
    by_verb: Counter[str] = Counter()
    by_resource: Counter[str] = Counter()
    by_client: Counter[str] = Counter()
    for (verb, resource, agent), n in counts.items():
        by_verb[verb] += n
        by_resource[f"{verb} {resource}"] += n
        by_client[agent] += n
    total = sum(counts.values())
    reads = sum(n for (verb, _, _), n in counts.items() if verb in READ_VERBS)

    def d(n: int) -> float:
        return round(n / per, 2)

    return {
        "total": d(total),
        "reads": d(reads),
        "writes_and_watches": d(total - reads),
        "by_verb": {verb: d(n) for verb, n in sorted(by_verb.items())},
        "by_verb_resource": {key: d(n) for key, n in sorted(by_resource.items())},
        "by_client": {agent: d(n) for agent, n in sorted(by_client.items())},
    }


# ---- processes -----------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcSample:
    cpu_seconds: float  # user + system of the process itself
    rss_bytes: int  # VmRSS now
    hwm_bytes: int  # VmHWM: the peak resident set since the process started


def proc_sample(pid: int) -> ProcSample | None:
    """CPU and memory of a live process from /proc; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return parse_proc(stat, status)


def parse_proc(stat: str, status: str) -> ProcSample:
    # Fields after the command name (which may hold spaces) in ")"; utime and stime are the
    # 14th and 15th fields of the line, i.e. 11th and 12th after the state.
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    memory = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            memory[key] = int(value.split()[0]) * 1024
    return ProcSample(cpu, memory.get("VmRSS", 0), memory.get("VmHWM", 0))


# ---- Prometheus text exposition ------------------------------------------------------------

Series = tuple[str, tuple[tuple[str, str], ...]]


def parse_exposition(text: str) -> dict[Series, float]:
    """Samples of a /metrics page by (name, sorted labels)."""
    samples: dict[Series, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def counter_delta(
    before: dict[Series, float], after: dict[Series, float], name: str, by: str | None = None
) -> dict[str, float]:
    """How much the samples named `name` grew, summed, or per value of label `by`."""
    grown: dict[str, float] = defaultdict(float)
    for (sample, labels), value in after.items():
        if sample != name:
            continue
        key = dict(labels).get(by, "") if by else "total"
        grown[key] += value - before.get((sample, labels), 0.0)
    return dict(sorted(grown.items()))
