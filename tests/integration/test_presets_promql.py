"""Metric presets, judged by Prometheus' own tool: every resolved query parses
(`promtool check rules`), also with hostile placeholder values, and each one computes what
its documentation says over series shaped like the model servers' exporters
(`promtool test rules`): the track's own revision only, a server without 5xx is 0 not
"no data", a server without traffic is no data, never 0."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from aigate.api.presets import PRESETS
from aigate.core.analysis import Subject, render_query

CANARY = Subject("fraud-scorer", "risk", "c" * 64, "2.5.0", "canary")
HOSTILE = Subject('x"} or vector(1) #', 'n\\"}', 'r"\n', "v{}", "canary")
SELECT = 'namespace="risk",aideployment="fraud-scorer"'
CANARY_SERIES = f'{SELECT},track="canary",revision="{"c" * 12}"'
# Series the query must leave out: the stable track, and the canary revision before this one
# (still inside the rate window after a rollback).
OTHERS = (
    f'{SELECT},track="stable",revision="{"s" * 12}"',
    f'{SELECT},track="canary",revision="{"o" * 12}"',
)


def run(*argv: str | Path) -> str:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_every_resolved_query_parses_also_with_hostile_values(binaries, tmp_path):
    queries = [
        render_query(p.query, s.values()) for p in PRESETS.values() for s in (CANARY, HOSTILE)
    ]
    rules = {
        "groups": [
            {
                "name": "presets",
                "rules": [{"record": f"preset:query{i}", "expr": q} for i, q in enumerate(queries)],
            }
        ]
    }
    path = tmp_path / "presets.yaml"
    path.write_text(yaml.safe_dump(rules))
    out = run(binaries / "promtool", "check", "rules", path)
    assert f"SUCCESS: {len(queries)} rules found" in out


def histogram(metric: str, labels: str, per_minute: dict[str, int]) -> list[dict[str, str]]:
    """Cumulative bucket counters growing by `per_minute` observations, for 20 minutes."""
    return [
        {"series": f'{metric}_bucket{{{labels},le="{le}"}}', "values": f"0+{n}x20"}
        for le, n in per_minute.items()
    ]


# Half the observations at <= 0.25 s, all at <= 0.5 s: p95 interpolates to 0.25 + 0.9 x 0.25.
CANARY_BUCKETS = {"0.1": 0, "0.25": 50, "0.5": 100, "+Inf": 100}
OTHER_BUCKETS = {"0.1": 100, "0.25": 100, "0.5": 100, "+Inf": 100}  # all fast: p95 0.095
EXPECTED_QUANTILE = {0.95: 0.475, 0.99: 0.495}

HISTOGRAM_PRESETS = sorted(
    n for n, p in PRESETS.items() if p.query.startswith("histogram_quantile")
)


def promtool_test(
    binaries: Path, tmp_path: Path, series: list[dict], expr: str, value: float | str
) -> None:
    sample = {"labels": "{}", "value": value} if value != "none" else None
    case = {
        "interval": "1m",
        "input_series": series,
        "promql_expr_test": [
            {"expr": expr, "eval_time": "10m", "exp_samples": [sample] if sample else []}
        ],
    }
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump({"rule_files": [], "tests": [case]}))
    run(binaries / "promtool", "test", "rules", path)


@pytest.mark.parametrize("name", HISTOGRAM_PRESETS)
def test_each_quantile_preset_reads_its_tracks_revision_only(name, binaries, tmp_path):
    query = PRESETS[name].query
    metric = re.search(r"rate\(([^{]+)_bucket", query).group(1)
    quantile = float(re.match(r"histogram_quantile\(([0-9.]+)", query).group(1))
    series = histogram(metric, CANARY_SERIES + ',model_name="m"', CANARY_BUCKETS)
    for labels in OTHERS:
        series += histogram(metric, labels + ',model_name="m"', OTHER_BUCKETS)
    rendered = render_query(query, CANARY.values())
    promtool_test(binaries, tmp_path, series, rendered, EXPECTED_QUANTILE[quantile])


def counter(labels: str, per_minute: int) -> dict[str, str]:
    return {"series": f"http_requests_total{{{labels}}}", "values": f"0+{per_minute}x20"}


def test_vllm_error_rate_counts_inference_endpoints_of_the_track(binaries, tmp_path):
    query = render_query(PRESETS["vllm-v1/error-rate"].query, CANARY.values())
    inference = CANARY_SERIES + ',handler="/v1/chat/completions",method="POST"'
    series = [
        counter(inference + ',status="2xx"', 99),
        counter(inference + ',status="5xx"', 1),
        counter(CANARY_SERIES + ',handler="/tokenize",method="POST",status="5xx"', 50),
        *[
            counter(o + ',handler="/v1/chat/completions",method="POST",status="5xx"', 50)
            for o in OTHERS
        ],
    ]
    promtool_test(binaries, tmp_path, series, query, 0.01)


@pytest.mark.parametrize("name", ["vllm-v1/error-rate", "http-v1/error-rate"])
def test_a_server_that_never_failed_has_error_rate_0(name, binaries, tmp_path):
    # The instrumentator creates a 5xx series only at the first 5xx.
    query = render_query(PRESETS[name].query, CANARY.values())
    series = [counter(CANARY_SERIES + ',handler="/v1/completions",method="POST",status="2xx"', 30)]
    promtool_test(binaries, tmp_path, series, query, 0)


@pytest.mark.parametrize("name", ["vllm-v1/error-rate", "http-v1/error-rate"])
def test_a_server_without_traffic_is_no_data_never_0(name, binaries, tmp_path):
    query = render_query(PRESETS[name].query, CANARY.values())
    idle = CANARY_SERIES + ',handler="/v1/completions",method="POST",status="2xx"'
    # No request in the window: 0 / 0 is NaN (only NaN differs from itself), which the
    # verdict judges as no data.
    promtool_test(binaries, tmp_path, [counter(idle, 0)], f"count(({query}) != ({query}))", 1)
    # Never scraped at all: an empty result.
    promtool_test(binaries, tmp_path, [counter(OTHERS[0] + ',status="2xx"', 5)], query, "none")


def test_generic_error_rate_matches_grouped_and_exact_status_codes(binaries, tmp_path):
    query = render_query(PRESETS["http-v1/error-rate"].query, CANARY.values())
    # Rates exact in binary (1.5, 0.25, 0.25 per second): Prometheus sums series in no
    # fixed order, and 96/60 + 2/60 + 2/60 rounds differently in different orders.
    series = [
        counter(CANARY_SERIES + ',handler="/predict",status="200"', 90),
        counter(CANARY_SERIES + ',handler="/predict",status="503"', 15),
        counter(CANARY_SERIES + ',handler="/predict",status="5xx"', 15),
    ]
    promtool_test(binaries, tmp_path, series, query, 0.25)


def test_queue_length_is_the_mean_per_server(binaries, tmp_path):
    query = render_query(PRESETS["vllm-v1/queue-length"].query, CANARY.values())
    series = [
        {
            "series": f'vllm:num_requests_waiting{{{CANARY_SERIES},pod="a",engine="0"}}',
            "values": "2x20",
        },
        {
            "series": f'vllm:num_requests_waiting{{{CANARY_SERIES},pod="b",engine="0"}}',
            "values": "4x20",
        },
        *[
            {"series": f'vllm:num_requests_waiting{{{o},pod="c",engine="0"}}', "values": "90x20"}
            for o in OTHERS
        ],
    ]
    promtool_test(binaries, tmp_path, series, query, 3)
