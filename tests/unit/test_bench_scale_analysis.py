"""bench/scale_analysis.py: the scale benchmark's numbers from records, audit events, /proc
and metrics pages, on hand-made inputs."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import scale_analysis as sa

from aigate.core.rollout.table import declared

UID = "uid-1"


def record(sequence: int, reason: str, phases=("Progressing", "Progressing"), **extra) -> dict:
    return {
        "subject": {"namespace": "bench", "name": "m-0", "uid": extra.pop("uid", UID)},
        "sequence": sequence,
        "reason": reason,
        "fromPhase": phases[0],
        "toPhase": phases[1],
        **extra,
    }


def measured(sequence: int, *seconds: int, track="canary", uid=UID, **item_extra) -> dict:
    evidence = [
        {
            "metric": "error-rate",
            "track": track,
            "time": f"2026-01-01T00:00:{s:02d}Z",
            **item_extra,
        }
        for s in seconds
    ]
    return record(sequence, sa.MEASUREMENTS_RECORDED, evidence=evidence, uid=uid)


def test_lags_are_per_stage_and_split_at_the_transition_records_by_sequence():
    chain = [
        # before the rollout started: not in any stage, not counted
        measured(1, 0, 5),
        record(2, "RolloutStarted", ("Stable", "Progressing"), stage="canary-50"),
        measured(3, 10, 20, 32),  # lags 0 and 2
        record(4, "StagePassed", stage="canary-50"),  # a fact, not a transition
        # flushed by the next transition, so still the first stage, although written after
        # StagePassed and (as the ledger does) labelled with the next stage
        {**measured(5, 42), "stage": "full"},  # lag 0
        record(6, "StageStarted", stage="full"),
        measured(7, 42, 53),  # same second as the last of the previous stage: lag 1 here
        record(8, "AllStagesPassed", ("Progressing", "Promoting")),
    ]
    report = sa.measurement_lags(reversed(chain), 10, declared)  # order by sequence
    assert sorted(report.lags) == [0, 0, 1, 2]
    assert report.per_stage_counts == {"canary-50": 4, "full": 2}
    assert report.stages_by_count == {4: 1, 2: 1}
    assert report.measurements == 6
    assert report.explicit_lags == []


def test_subjects_and_tracks_are_separate_series_and_an_explicit_lag_is_reported():
    chain = [
        record(1, "RolloutStarted", ("Stable", "Progressing"), stage="s1"),
        measured(2, 0, 10, lagSeconds=0.4),
        record(1, "RolloutStarted", ("Stable", "Progressing"), stage="s1", uid="uid-2"),
        measured(2, 5, 17, uid="uid-2"),
        measured(3, 30, track="stable"),  # uid-1, one measurement: no lag
    ]
    report = sa.measurement_lags(chain, 10, declared)
    assert sorted(report.lags) == [0, 2]
    assert report.explicit_lags == [0.4, 0.4]
    assert report.stages_by_count == {2: 2, 1: 1}
    assert report.as_dict()["lag_seconds"]["p95"] == pytest.approx(1.9)


def audit(audit_id: str, verb: str, at: str, user="op", stage="ResponseComplete", **extra) -> str:
    event = {
        "auditID": audit_id,
        "stage": stage,
        "verb": verb,
        "user": {"username": user},
        "userAgent": extra.pop("agent", "kopf/1.45.2"),
        "objectRef": {"resource": "deployments", **extra},
        "requestReceivedTimestamp": f"2026-01-01T00:00:{at}Z",
    }
    return json.dumps(event)


def test_requests_are_counted_once_per_audit_id_per_window_for_the_user_only():
    lines = [
        audit("w", "watch", "01.5", stage="ResponseStarted"),
        audit("w", "watch", "01.5"),  # the same watch ending
        audit("g1", "get", "02.0", agent="OpenAPI-Generator/37.0.2/python"),
        audit("g2", "get", "09.999999", subresource="status"),
        audit("g3", "get", "10.0"),  # the end is outside
        audit("x", "get", "03.0", user="admin"),
        '{"cut off',
    ]
    start = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    end = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
    counts = sa.count_requests(lines, "op", {"rollout": (start, end)})["rollout"]
    table = sa.requests_table(counts, per=2)
    assert table["total"] == 1.5
    assert table["reads"] == 1.0
    assert table["by_verb_resource"] == {
        "get deployments": 0.5,
        "get deployments/status": 0.5,
        "watch deployments": 0.5,
    }
    assert table["by_client"] == {"OpenAPI-Generator": 0.5, "kopf": 1.0}


def test_proc_fields_are_read_after_a_command_name_with_spaces_and_parentheses():
    stat = "42 (python (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 2 3"
    status = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
    sample = sa.parse_proc(stat, status)
    assert sample.cpu_seconds == pytest.approx(300 / sa.CLOCK_TICKS)
    assert (sample.rss_bytes, sample.hwm_bytes) == (100 * 2**20, 200 * 2**20)


def test_counter_deltas_by_label():
    before = sa.parse_exposition('q_total{handler="/api/v1/query"} 5\n')
    after = sa.parse_exposition(
        'q_total{handler="/api/v1/query"} 12\nq_total{handler="/metrics"} 1\n'
    )
    assert sa.counter_delta(before, after, "q_total", "handler") == {
        "/api/v1/query": 7,
        "/metrics": 1,
    }
    assert sa.counter_delta(before, after, "q_total") == {"total": 8}
