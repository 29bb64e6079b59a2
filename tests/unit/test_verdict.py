"""Verdicts of single measurements (DESIGN.md section 4), each case explicit."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aigate.api.v1alpha1 import MetricSpec
from aigate.core.verdict import QueryOutcome, judge, threshold_text


def metric(**fields) -> MetricSpec:
    return MetricSpec.model_validate({"name": "m", "query": "q", **fields})


MAX = metric(max=0.01)
MIN = metric(min=0.7)
BAND = metric(min=0.1, max=0.2)


@pytest.mark.parametrize(
    ("spec", "value", "verdict"),
    [
        (MAX, 0.0, "Pass"),
        (MAX, 0.01, "Pass"),
        (MAX, 0.0100001, "Fail"),
        (MAX, -5, "Pass"),
        (MIN, 0.7, "Pass"),
        (MIN, 0.69, "Fail"),
        (MIN, 1e9, "Pass"),
        (BAND, 0.1, "Pass"),
        (BAND, 0.2, "Pass"),
        (BAND, 0.05, "Fail"),
        (BAND, 0.25, "Fail"),
    ],
)
def test_single_sample_compared_with_thresholds(spec, value, verdict):
    judgement = judge(spec, QueryOutcome(samples=(value,)))
    assert judgement.verdict == verdict
    assert judgement.value == value


def test_failure_reason_names_value_and_threshold():
    assert judge(MAX, QueryOutcome(samples=(0.05,))).reason == "0.05 > max 0.01"
    assert judge(MIN, QueryOutcome(samples=(0.5,))).reason == "0.5 < min 0.7"


@pytest.mark.parametrize(
    ("outcome", "reason_part"),
    [
        (
            QueryOutcome.failed("Prometheus at http://p:9090 unreachable: ConnectionError"),
            "unreachable",
        ),
        (QueryOutcome.failed("Prometheus at http://p:9090 timed out after 10s"), "timed out"),
        (QueryOutcome.failed("HTTP Status Code 400 (bad_data: parse error)"), "400"),
        (QueryOutcome(samples=()), "empty"),
        (QueryOutcome(samples=(math.nan,)), "NaN"),
        (QueryOutcome(samples=(math.inf,)), "inf"),
        (QueryOutcome(samples=(-math.inf,)), "inf"),
        (QueryOutcome(samples=(0.001, 0.002)), "2 series"),
    ],
)
def test_anything_but_one_finite_sample_is_inconclusive_by_default(outcome, reason_part):
    judgement = judge(MAX, outcome)
    assert judgement.verdict == "Inconclusive"
    assert reason_part in judgement.reason


def test_on_no_data_fail_turns_missing_data_into_a_failure_never_a_pass():
    strict = metric(max=0.01, onNoData="Fail")
    assert judge(strict, QueryOutcome(samples=())).verdict == "Fail"
    assert judge(strict, QueryOutcome(samples=(math.nan,))).verdict == "Fail"
    assert judge(strict, QueryOutcome.failed("down")).verdict == "Inconclusive"  # onError applies


def test_on_error_fail():
    strict = metric(max=0.01, onError="Fail")
    assert judge(strict, QueryOutcome.failed("down")).verdict == "Fail"
    assert judge(strict, QueryOutcome(samples=())).verdict == "Inconclusive"


def test_pass_is_not_an_allowed_policy_for_missing_data():
    with pytest.raises(ValueError, match=r"onNoData|on_no_data"):
        metric(max=0.01, onNoData="Pass")


GUARDED = metric(max=0.01, trafficGuard={"query": "sum(rate(requests[1m]))", "minSamples": 5})


def test_traffic_guard_makes_an_idle_canary_inconclusive():
    good = QueryOutcome(samples=(0.0,))
    assert judge(GUARDED, good, QueryOutcome(samples=(10,))).verdict == "Pass"
    low = judge(GUARDED, good, QueryOutcome(samples=(1,)))
    assert low.verdict == "Inconclusive" and "below the guard" in low.reason
    assert judge(GUARDED, good, QueryOutcome(samples=())).verdict == "Inconclusive"
    assert judge(GUARDED, good, QueryOutcome.failed("down")).verdict == "Inconclusive"
    assert judge(GUARDED, good, None).verdict == "Inconclusive"
    assert judge(GUARDED, good, QueryOutcome(samples=(math.nan,))).verdict == "Inconclusive"


def test_traffic_guard_does_not_hide_a_failure_it_cannot_judge():
    # A failing value with too little traffic is inconclusive, not a failure: the guard says
    # the sample is too small to judge either way.
    assert (
        judge(GUARDED, QueryOutcome(samples=(0.5,)), QueryOutcome(samples=(1,))).verdict
        == "Inconclusive"
    )


def test_threshold_text():
    assert threshold_text(MAX) == "<= 0.01"
    assert threshold_text(BAND) == ">= 0.1 and <= 0.2"


@given(
    samples=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4),
    error=st.sampled_from(["", "down"]),
)
def test_pass_only_for_exactly_one_finite_sample_within_bounds(samples, error):
    outcome = QueryOutcome(samples=tuple(samples), error=error)
    judgement = judge(BAND, outcome)
    if judgement.verdict == "Pass":
        assert not error and len(samples) == 1
        assert math.isfinite(samples[0]) and 0.1 <= samples[0] <= 0.2
