"""Baseline-relative analysis (compareTo: stable): the canary is judged against the stable
track measured at the same instant; no baseline is never a pass (issue 12 item 2)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from aigate.api.v1alpha1 import MetricSpec, RolloutSpec
from aigate.core import analysis as an
from aigate.core.verdict import QueryOutcome, judge, threshold_text
from support.factories import spec_dict
from support.sim import plan_spec, serving, upgrade

RATIO = {"compareTo": "stable", "maxRatio": 1.2}


def metric(**bounds) -> MetricSpec:
    return MetricSpec.model_validate({"name": "ttft", "query": 'q{track="{{track}}"}', **bounds})


def value(v: float) -> QueryOutcome:
    return QueryOutcome(samples=(v,))


@pytest.mark.parametrize(
    "bounds, canary, stable, verdict, reason",
    [
        (RATIO, 0.12, 0.1, "Pass", "canary 0.12, stable 0.1: within <= 1.2 x stable"),
        (RATIO, 0.13, 0.1, "Fail", "canary 0.13, stable 0.1: ratio 1.3 over maxRatio 1.2"),
        ({"compareTo": "stable", "maxDifference": 0.01}, 0.019, 0.01, "Pass", "within"),
        (
            {"compareTo": "stable", "maxDifference": 0.01},
            0.021,
            0.01,
            "Fail",
            "over stable + 0.01 = 0.02",
        ),
        ({"compareTo": "stable", "minRatio": 0.9}, 0.85, 1.0, "Fail", "under minRatio 0.9"),
        (
            {"compareTo": "stable", "minDifference": -0.05},
            0.94,
            1.0,
            "Fail",
            "under stable - 0.05",
        ),
        ({"compareTo": "stable", "minDifference": -0.05}, 0.96, 1.0, "Pass", "within"),
        # a ratio to zero: equal zeros pass, anything else cannot be judged by a ratio
        (RATIO, 0.0, 0.0, "Pass", "within"),
        (RATIO, 0.001, 0.0, "Inconclusive", "zero baseline is undefined"),
        # ...but a difference bound still judges it
        (
            {"compareTo": "stable", "maxRatio": 1.2, "maxDifference": 0.0005},
            0.001,
            0.0,
            "Fail",
            "over stable + 0.0005",
        ),
        # absolute bounds are checked first and still apply
        ({**RATIO, "max": 0.1}, 0.11, 0.1, "Fail", "0.11 > max 0.1"),
    ],
)
def test_canary_against_stable(bounds, canary, stable, verdict, reason):
    judgement = judge(metric(**bounds), value(canary), baseline=value(stable), relative=True)
    assert (judgement.verdict, judgement.baseline) == (verdict, stable)
    assert reason in judgement.reason


@pytest.mark.parametrize(
    "baseline, reason",
    [
        (None, "baseline query not run"),
        (QueryOutcome(), "stable baseline: no data (empty result)"),
        (QueryOutcome.failed("Prometheus down"), "stable baseline: Prometheus down"),
        (value(float("nan")), "stable baseline: nan is not a measurement"),
        (QueryOutcome(samples=(1.0, 2.0)), "stable baseline: 2 series returned"),
    ],
)
def test_no_baseline_is_never_a_pass(baseline, reason):
    judgement = judge(metric(**RATIO), value(0.1), baseline=baseline, relative=True)
    assert judgement.verdict == "Inconclusive"
    assert reason in judgement.reason


def test_no_canary_data_is_judged_before_the_baseline_which_is_still_recorded():
    judgement = judge(metric(**RATIO), QueryOutcome(), baseline=value(0.1), relative=True)
    assert judgement.verdict == "Inconclusive" and "no data" in judgement.reason
    assert judgement.baseline == 0.1


def test_relative_bounds_apply_only_where_a_canary_runs():
    both = metric(max=0.5, **RATIO)
    assert judge(both, value(0.4), relative=False).verdict == "Pass"
    assert threshold_text(both, relative=False) == "<= 0.5"
    assert threshold_text(both) == "<= 0.5 and <= 1.2 x stable"


@pytest.mark.parametrize(
    "bounds, problem",
    [
        ({}, "a metric needs min, max or compareTo"),
        ({"compareTo": "stable"}, "compareTo needs maxRatio"),
        ({"maxRatio": 1.2}, "need compareTo: stable"),
        ({"compareTo": "stable", "maxRatio": -1}, "greater than or equal to 0"),
    ],
)
def test_meaningless_bounds_are_refused(bounds, problem):
    with pytest.raises(ValidationError, match=problem):
        metric(**bounds)


def test_a_watch_needs_a_metric_it_can_judge_alone():
    raw = spec_dict()["rollout"]
    raw["analysis"]["metrics"] = [{"name": "ttft", "query": "q", **RATIO}]
    RolloutSpec.model_validate(raw)  # no watch: fine
    raw["postPromotion"] = {"monitorFor": "10m"}
    with pytest.raises(ValidationError, match="needs at least one metric with min or max"):
        RolloutSpec.model_validate(raw)


def relative_plan(**extra):
    metrics = [
        {"name": "error-rate", "query": 'err{app="{{name}}",track="{{track}}"}', "max": 0.01},
        {
            "name": "ttft",
            "query": 'ttft{revision="{{revision}}",track="{{track}}"}',
            "compareTo": "stable",
            "maxRatio": 1.2,
        },
    ]
    return {"metrics": metrics, **extra}


def test_the_baseline_query_names_the_stable_track_and_revision():
    spec = plan_spec(**relative_plan())
    analysis = spec.rollout.analysis
    canary = an.Subject("fraud-scorer", "risk", "c" * 64, "2.5.0", "canary")
    stable = an.Subject("fraud-scorer", "risk", "s" * 64, "2.4.0", "stable")
    error_rate, ttft = an.plan_queries(analysis, canary, stable)
    assert error_rate.baseline_query is None
    assert ttft.query == f'ttft{{revision="{"c" * 12}",track="canary"}}'
    assert ttft.baseline_query == f'ttft{{revision="{"s" * 12}",track="stable"}}'
    # In the watch there is no other track: the relative-only metric is not measured.
    (watched,) = an.plan_queries(analysis, stable)
    assert watched.metric == "error-rate" and watched.baseline_query is None


def test_a_canary_worse_than_stable_is_rolled_back_with_both_values_recorded():
    slower = {"canary": 0.30, "stable": 0.20}

    def outcome(track, metric_name, at):
        return value(slower[track] if metric_name == "ttft" else 0.001)

    world = serving(**relative_plan())
    world.outcome = outcome
    upgrade(world, **relative_plan())
    world.run_until(lambda w: w.status.phase == "RolledBack", advance=timedelta(seconds=30))
    trigger = world.status.last_rollback.trigger
    assert (trigger.metric, trigger.value, trigger.baseline_value) == ("ttft", "0.3", "0.2")
    assert trigger.threshold == "<= 1.2 x stable"
    assert "against stable 0.2" in trigger.detail
    ttft = [m for m in world.status.recent_measurements if m.metric == "ttft"]
    assert ttft and all(m.baseline_value == "0.2" and m.verdict == "Fail" for m in ttft)
    assert all('track="stable"' in m.baseline_query for m in ttft)


def test_a_canary_as_good_as_stable_is_promoted():
    def outcome(track, metric_name, at):
        return value(0.2 if metric_name == "ttft" else 0.001)

    world = serving(**relative_plan())
    world.outcome = outcome
    v2 = upgrade(world, **relative_plan())
    world.run_until(
        lambda w: w.status.phase == "Stable" and w.status.stable_revision == v2,
        advance=timedelta(seconds=30),
    )
    passed = [m for m in world.status.recent_measurements if m.metric == "ttft"]
    assert passed and all(m.verdict == "Pass" and m.baseline_value == "0.2" for m in passed)
