"""Metric presets (issue 12 item 3, decision 0016): named query templates for model servers.
Every preset resolves to a query with the usual placeholders and escaping; a published preset
never changes meaning; the revision an approval names covers the resolved query, so a
changed catalogue cannot slip under an existing approval; presets work with compareTo."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from aigate import cli, kubectl_plugin
from aigate.api import presets
from aigate.api.presets import PRESETS
from aigate.api.records import AIRecordSpec
from aigate.api.v1alpha1 import MetricSpec
from aigate.core import analysis as an
from aigate.core.revision import compute_revision, vouched_content
from aigate.core.rollout.snapshots import plan_of, snapshot_of
from aigate.reconciler import parse_spec
from aigate.report import model as report_model
from support.factories import spec_dict
from support.sim import plan_spec, serving, upgrade

ROOT = Path(__file__).resolve().parents[2]
TTFT = "vllm-v1/time-to-first-token-p95"

# What each published preset means, pinned: sha256 of its query, first 16 hex digits.
# A published preset never changes: a better query is a new name (vllm-v2/...), and the old
# name stays so that stored AIDeployments stay valid (decision 0016). Add lines; never edit.
PUBLISHED = {
    "vllm-v1/time-to-first-token-p95": "959f3079b3b82e47",
    "vllm-v1/time-to-first-token-p99": "16706decd92c4794",
    "vllm-v1/time-per-output-token-p95": "741bfffefb62dfec",
    "vllm-v1/inter-token-latency-p95": "d32e7087f7e40467",
    "vllm-v1/e2e-latency-p95": "11c5f94ff7d2dec9",
    "vllm-v1/error-rate": "7077654120528c0b",
    "vllm-v1/queue-length": "aefd8fe4b14396dd",
    "kserve-v1/predict-latency-p95": "4e5507aa439602e7",
    "kserve-v1/predict-latency-p99": "f4c7bc4bd04bc394",
    "http-v1/error-rate": "712a5f44cf98a01b",
    "http-v1/latency-p95": "a4445e0db008c5be",
}


def preset_metrics(name: str = TTFT) -> list[dict]:
    return [
        {"name": "ttft", "preset": name, "max": 0.5},
        {"name": "ttft-vs-stable", "preset": name, "compareTo": "stable", "maxRatio": 1.2},
    ]


def test_published_presets_never_change_meaning():
    digests = {n: hashlib.sha256(p.query.encode()).hexdigest()[:16] for n, p in PRESETS.items()}
    for name, digest in PUBLISHED.items():
        assert name in digests, f"{name} was published: it may be deprecated, never removed"
        assert digests[name] == digest, (
            f"{name} changed meaning: publish the new query under a new name (e.g. "
            f"{name.replace('-v1/', '-v2/')}) and keep this one"
        )
    assert set(digests) == set(PUBLISHED), "pin each new preset in PUBLISHED"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_resolves_to_a_query_that_selects_one_tracks_revision(name):
    metric = MetricSpec.model_validate({"name": "m", "preset": name, "max": 1})
    template = metric.query_template()
    assert template == PRESETS[name].query
    assert an.unknown_placeholders(template) == set()
    for placeholder in ("namespace", "name", "track", "revision"):
        assert f'"{{{{{placeholder}}}}}"' in template  # inside a label matcher's quotes
    assert name.split("/")[0].rsplit("-", 1)[1].startswith("v"), "preset names are versioned"
    canary = an.Subject("fraud-scorer", "risk", "c" * 64, "2.5.0", "canary")
    rendered = an.render_query(template, canary.values())
    assert "{{" not in rendered and f'revision="{"c" * 12}"' in rendered


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_placeholder_values_are_escaped_in_every_preset(name):
    hostile = an.Subject('x"} or vector(1) #', "ns", "r" * 64, "v", "canary\\")
    rendered = an.render_query(PRESETS[name].query, hostile.values())
    assert 'aideployment="x\\"} or vector(1) #"' in rendered
    assert 'track="canary\\\\"' in rendered


@pytest.mark.parametrize(
    "fields, problem",
    [
        ({"query": "q", "preset": TTFT}, "exactly one of query or preset; found both"),
        ({}, "exactly one of query or preset; found neither"),
        ({"preset": "vllm/ttft"}, "unknown preset 'vllm/ttft'; expected one of: vllm-v1/"),
    ],
)
def test_a_metric_names_a_query_or_a_known_preset(fields, problem):
    with pytest.raises(ValidationError, match=re.escape(problem)):
        MetricSpec.model_validate({"name": "m", "max": 1, **fields})


def test_an_unknown_preset_that_reaches_the_operator_names_field_expected_and_found():
    raw = spec_dict()
    raw["rollout"]["analysis"]["metrics"] = [{"name": "ttft", "preset": "vllm/ttft-p95", "max": 1}]
    spec, error = parse_spec(raw)
    assert spec is None
    assert error.startswith("spec.rollout.analysis.metrics.0.preset: ")
    assert "unknown preset 'vllm/ttft-p95'" in error and TTFT in error


def test_the_revision_covers_the_query_a_preset_stands_for(monkeypatch):
    spec = plan_spec(metrics=preset_metrics())
    content = vouched_content(spec)
    ttft = content["rollout"]["analysis"]["metrics"][0]
    assert ttft == {"name": "ttft", "preset": TTFT, "max": 0.5, "presetQuery": PRESETS[TTFT].query}
    before = compute_revision(spec)
    assert compute_revision(plan_spec(metrics=preset_metrics())) == before  # deterministic
    changed = dataclasses.replace(PRESETS[TTFT], query=PRESETS[TTFT].query.replace("0.95", "0.5"))
    monkeypatch.setitem(presets.PRESETS, TTFT, changed)
    assert compute_revision(spec) != before


def test_metrics_without_a_preset_keep_their_revision():
    spec = plan_spec()
    assert "presetQuery" not in json.dumps(vouched_content(spec))


def test_a_changed_preset_meaning_voids_the_approval_of_the_serving_version(monkeypatch):
    world = serving(metrics=preset_metrics())
    serving_revision = world.status.stable_revision
    changed = dataclasses.replace(PRESETS[TTFT], query=PRESETS[TTFT].query.replace("0.95", "0.5"))
    monkeypatch.setitem(presets.PRESETS, TTFT, changed)  # e.g. an aigate upgrade
    decision = world.step()
    assert decision.status.phase == "AwaitingApproval" and decision.actions == ()
    assert decision.status.stable_revision == serving_revision  # keeps serving, untouched
    assert world.revision != serving_revision
    authorized = next(c for c in decision.status.conditions if c.type == "Authorized")
    assert "aigate.dev/approved-revision" in authorized.message


def test_a_preset_changed_mid_rollout_stops_the_canary_and_its_analysis(monkeypatch):
    world = serving(metrics=preset_metrics())
    v2 = upgrade(world, metrics=preset_metrics())
    world.run_until(lambda w: w.status.phase == "Progressing" and bool(w.plans))
    changed = dataclasses.replace(PRESETS[TTFT], query=PRESETS[TTFT].query.replace("0.95", "0.5"))
    monkeypatch.setitem(presets.PRESETS, TTFT, changed)
    measured = len(world.plans)
    for _ in range(10):
        world.step(timedelta(seconds=30))
    assert world.status.phase == "AwaitingApproval" and world.revision != v2
    assert "canary" not in world.deployments
    assert len(world.plans) == measured  # nothing measured with a query nobody approved


def test_a_snapshot_of_a_preset_plan_is_trusted_only_while_the_preset_means_the_same(monkeypatch):
    spec = plan_spec(metrics=preset_metrics())
    snapshot = snapshot_of(spec)
    restored = plan_of(snapshot)  # rollback to it works
    assert restored is not None and compute_revision(restored) == compute_revision(spec)
    changed = dataclasses.replace(PRESETS[TTFT], query="vector(0)")
    monkeypatch.setitem(presets.PRESETS, TTFT, changed)
    assert plan_of(snapshot) is None


def test_presets_work_with_compare_to_stable():
    spec = plan_spec(metrics=preset_metrics())
    canary = an.Subject("fraud-scorer", "risk", "c" * 64, "2.5.0", "canary")
    stable = an.Subject("fraud-scorer", "risk", "s" * 64, "2.4.0", "stable")
    absolute, relative = an.plan_queries(spec.rollout.analysis, canary, stable)
    assert absolute.baseline_query is None
    assert 'track="canary",revision="cccccccccccc"' in relative.query
    assert relative.baseline_query == relative.query.replace(
        'track="canary",revision="cccccccccccc"', 'track="stable",revision="ssssssssssss"'
    )


def test_aigate_presets_lists_the_catalogue(capsys):
    assert cli.main(["presets", "-o", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in listed] == list(PRESETS)
    assert all(p["query"] == PRESETS[p["name"]].query for p in listed)
    assert cli.main(["presets", TTFT]) == 0
    out = capsys.readouterr().out
    assert out.startswith(TTFT) and "vllm:time_to_first_token_seconds_bucket" in out
    assert cli.main(["presets", "vllm/ttft"]) == 2
    assert "unknown preset(s) ['vllm/ttft']" in capsys.readouterr().err
    assert kubectl_plugin.main(["presets", "-o", "json", TTFT]) == 0  # needs no cluster
    assert [p["name"] for p in json.loads(capsys.readouterr().out)] == [TTFT]


def test_the_approver_sees_the_preset_and_the_query_it_stands_for():
    spec = plan_spec(metrics=preset_metrics())
    shown = kubectl_plugin.render_approval("fraud-scorer", spec, compute_revision(spec), None)
    assert f"    preset: {TTFT}\n    query: {PRESETS[TTFT].query}" in shown


def test_the_readme_documents_every_preset_with_its_query():
    readme = (ROOT / "README.md").read_text()
    for name, preset in PRESETS.items():
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{name}`")), "")
        assert row, f"README has no row for {name}"
        assert preset.query.replace("|", "\\|") in row, f"README's query for {name} is stale"


def test_the_report_shows_the_query_the_approval_covered_from_the_record_alone(monkeypatch):
    spec = plan_spec(metrics=preset_metrics())
    record = AIRecordSpec.model_construct(
        content=vouched_content(spec), revision=compute_revision(spec), version="2.4.0"
    )
    # Years later, with an aigate whose catalogue differs: the record still says what ran.
    monkeypatch.setitem(presets.PRESETS, TTFT, dataclasses.replace(PRESETS[TTFT], query="x"))
    ttft = report_model.plan_of(record).metrics[0]
    assert ttft.name == "ttft" and ttft.query.startswith(f"preset {TTFT}: histogram_quantile(0.95")
