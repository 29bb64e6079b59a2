"""`report`: records -> the evidence pack, section by section, in each format."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from aigate import cli
from aigate.core.records import ChainCheck
from aigate.report import build_report, render
from aigate.report.charts import MAX_POINTS_PER_TRACK, downsample, render_chart
from aigate.report.markdown import md
from aigate.report.model import Point, Series
from aigate.report.source import check_links, read_items
from support.records import GOOD, T0, RecordLog, rollout, two_rollouts

INTACT = ChainCheck(intact=True, problems=())
NOW = datetime(2026, 4, 1, tzinfo=UTC)


def build(log: RecordLog, **kwargs: object):
    return build_report(log.records, kwargs.pop("check", INTACT), now=NOW, **kwargs)


def test_model_facts_come_from_the_latest_approved_content():
    log = RecordLog()
    log.approve(T0, "2.4.0", intendedUse="Score card payments.", limitations=["No crypto."])
    log.approve(T0 + timedelta(days=1), "2.5.0", owner="team-fraud")
    model = build(log).model
    assert (model.name, model.version, model.risk_tier, model.owner) == (
        "fraud-scorer",
        "2.5.0",
        "high",
        "team-fraud",
    )
    assert model.intended_use == "Score transactions for fraud review."
    assert model.limitations == ("Not validated for gambling merchants.",)
    assert model.revision == log.revision


def test_every_approval_with_who_when_conditions_and_signature_state():
    report = build(two_rollouts())
    first, second = report.approvals
    assert (first.version, first.approved_by, first.conditions) == (
        "2.4.0",
        "jane@example.com",
        "Review after 30 days.",
    )
    assert first.approval_signature.verified and second.approval_signature.verified is False
    assert "no registered key" in second.approval_signature.problem
    assert (second.risk_acceptance, second.risk_accepted_by, second.risk_signature) == (
        "RISK-1234",
        "ciso@example.com",
        None,
    )
    html = render(report, "html")
    assert "omar@example.com" in html and "not verified" in html and "unsigned" in html
    markdown = render(report, "md")
    assert "NOT verified: no registered key of jane@example.com matches" in markdown


def test_the_approved_plan_with_stages_and_thresholds():
    (plan, _) = build(two_rollouts()).plans
    assert [(s.name, s.weight, s.duration, s.manual_promotion) for s in plan.stages] == [
        ("canary-10", 10, "10m", False),
        ("canary-50", 50, "20m", True),
        ("full", 100, "0s", False),
    ]
    assert [(m.name, m.min, m.max) for m in plan.metrics] == [
        ("error-rate", None, 0.01),
        ("p99-latency-seconds", None, 0.25),
        ("mean-confidence", 0.7, None),
        ("input-drift-psi", None, 0.2),
    ]
    assert plan.monitor_for == "30m" and plan.interval == "30s"


def test_each_rollout_with_stages_series_promotions_and_requests():
    ok, bad = build(two_rollouts()).attempts
    assert (ok.number, ok.version, ok.started_by, ok.outcome) == (
        1,
        "2.4.0",
        "RolloutStarted",
        "WatchCompleted",
    )
    assert [(s.name, s.ended_by) for s in ok.stages] == [
        ("canary-10", "StageStarted"),
        ("canary-50", "StageStarted"),
        ("full", "WatchCompleted"),
    ]
    series = {s.metric: s for s in ok.series}
    assert list(series) == list(GOOD)
    # 20 + 40 + 1 canary measurements, then 60 on the stable track during the watch
    assert len(series["error-rate"].points) == 121
    assert {p.track for p in series["error-rate"].points} == {"canary", "stable"}
    assert series["mean-confidence"].min == 0.7 and series["error-rate"].max == 0.01
    assert series["error-rate"].failures == 0
    assert [e.reason for e in ok.promotions] == ["AllStagesPassed", "Promoted", "WatchCompleted"]
    (promote,) = ok.requests
    assert (promote.request, promote.by, promote.stage) == (
        "promote",
        "jane@example.com",
        "canary-50",
    )
    assert promote.value.startswith(f"canary-50@{ok.revision} by=jane@example.com")
    assert (bad.version, bad.outcome, bad.promotions) == ("2.5.0", "RollbackCompleted", ())


def test_a_rollback_shows_its_trigger_and_breaching_values():
    report = build(two_rollouts())
    bad = report.attempts[1]
    trigger, completed = bad.rollbacks
    assert (trigger.reason, trigger.to_phase) == ("AnalysisFailed", "RollingBack")
    assert "failureLimit 2" in trigger.message
    assert [(p.metric, p.text, p.verdict, p.threshold) for p in trigger.evidence] == [
        ("error-rate", "0.03", "Fail", "<= 0.01")
    ]
    assert completed.reason == "RollbackCompleted"
    assert {s.metric: s for s in bad.series}["error-rate"].failures == 3
    for fmt in ("html", "md"):
        text = render(report, fmt)
        assert "AnalysisFailed" in text and "error-rate failed 3 times" in text


def test_drift_requests_and_the_verification_result_are_shown():
    log = two_rollouts()
    log.request(T0 + timedelta(days=4), "abort", "sre@example.com", "nothing in flight: ignored")
    check = ChainCheck(intact=False, problems=("record 7 was altered after it was recorded",))
    report = build(log, check=check, checked="every digest and signature")
    assert [e.message for e in report.drift] == [
        "stable: spec.template.spec.containers[server].image differed"
    ]
    assert [(e.request, e.by) for e in report.requests] == [
        ("promote", "jane@example.com"),
        ("abort", "sre@example.com"),
    ]
    v = report.verification
    assert (v.intact, v.records, v.first_sequence, v.last_sequence) == (
        False,
        len(log.records),
        1,
        len(log.records),
    )
    html = render(report, "html")
    assert "NOT intact" in html and "record 7 was altered after it was recorded" in html
    assert "every digest and signature" in html and "containers[server].image differed" in html


def test_control_mapping_names_the_iso_and_eu_controls():
    report = build(two_rollouts())
    controls = {(c.framework, c.control) for c in report.controls}
    for control in ("A.6.2.5", "A.6.2.6", "A.6.2.8"):
        assert ("ISO/IEC 42001:2023", control) in controls
    for article in ("Art. 12", "Art. 14", "Art. 19", "Art. 72"):
        assert ("EU AI Act", article) in controls
    anchors = set(re.findall(r'id="([a-z]+)"', render(report, "html")))
    assert {s for c in report.controls for s in c.sections} <= anchors
    assert "| ISO/IEC 42001:2023 | A.6.2.8 | AI system recording of event logs |" in render(
        report, "md"
    )


HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_user_strings_are_escaped_in_html_and_markdown():
    log = RecordLog(name="fraud-scorer")
    log.approve(
        T0,
        "2.4.0",
        by=f"mallory{HOSTILE}",
        conditions=f"| {HOSTILE}",
        intendedUse=HOSTILE,
        limitations=[HOSTILE],
        name="x<script>y",
    )
    rollout(log, T0 + timedelta(minutes=1))
    log.drift(T0 + timedelta(days=1), HOSTILE)
    report = build(log)
    html = render(report, "html")
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "x&lt;script&gt;y" in html  # the model name
    markdown = render(report, "md")
    assert "<script" not in markdown.lower() and "<img" not in markdown.lower()
    assert md(f"a | b {HOSTILE}") == (
        'a \\| b &lt;script&gt;alert("x")&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;'
    )
    assert json.loads(render(report, "json"))["model"]["intended_use"] == HOSTILE


def test_since_keeps_what_happened_from_that_date_and_the_approvals_it_relies_on():
    log = two_rollouts()
    second_start = build(log).attempts[1].started_at
    since = datetime.fromisoformat(second_start.replace("Z", "+00:00")) - timedelta(hours=1)
    report = build(log, since=since)
    assert [a.number for a in report.attempts] == [2]
    assert [a.version for a in report.approvals] == ["2.5.0"]
    assert [p.version for p in report.plans] == ["2.5.0"]
    assert report.requests == () and len(report.drift) == 1
    assert report.since == since.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert report.period[0] >= report.since
    assert report.verification.records == len(log.records)  # always the whole chain
    # an attempt running across the date keeps its start and what followed
    mid = build(log, since=T0 + timedelta(minutes=20)).attempts[0]
    assert mid.started_at == "2026-03-01T09:01:00Z" and mid.outcome == "WatchCompleted"
    assert all(p.time >= "2026-03-01T09:20:00Z" for s in mid.series for p in s.points)


def test_json_has_every_measurement_and_a_format_tag():
    report = build(two_rollouts())
    data = json.loads(render(report, "json"))
    assert data["format"] == "aigate.dev/report/v1"
    points = data["attempts"][0]["series"][0]["points"]
    assert len(points) == 121 and points[0]["verdict"] == "Pass"


def test_charts_one_svg_per_metric_with_its_threshold():
    report = build(two_rollouts())
    html = render(report, "html")
    figures = re.findall(r'<figure class="chart" data-metric="([^"]+)">\s*<svg', html)
    assert figures == list(GOOD) * 2
    for attempt in (1, 2):
        for index in range(4):
            assert re.search(rf'<g id="chart-{attempt}-{index}-threshold-m(in|ax)"', html)
    # self-contained: no prolog, no reference outside the page, no script
    assert "<?xml" not in html and "<metadata>" not in html
    assert re.findall(r'(?:src|href)="(?!#)[^"]*"', html) == []
    assert "<script" not in html


def test_downsampling_keeps_every_non_pass_point_and_is_said():
    points = [
        Point(
            "m",
            f"2026-03-01T00:{i // 60:02d}:{i % 60:02d}Z",
            float(i % 7),
            str(i % 7),
            "Fail" if i == 777 else "Pass",
            "<= 10",
            "canary",
            "s",
            "",
        )
        for i in range(3000)
    ]
    kept = downsample(points)
    assert len(kept) <= MAX_POINTS_PER_TRACK + 1 and points[777] in kept
    chart = render_chart("c", Series("m", None, 10.0, "<= 10", tuple(points)))
    assert chart.points_total == 3000 and chart.points_drawn == len(kept)


def test_records_that_cannot_be_read_and_broken_links_are_problems():
    log = two_rollouts()
    export = log.export(publicKeys={"SHA256:x": "ssh-ed25519 AAAA"})
    export["items"][3]["spec"]["sequence"] = "three"
    del export["items"][5]
    loaded = read_items(export["items"], name="fraud-scorer", namespace="ml")
    check = check_links(loaded.records, loaded.problems)
    assert not check.intact
    assert any("cannot be read: spec.sequence" in p for p in check.problems)
    assert any("record sequence 4 missing" in p for p in check.problems)
    assert any("record sequence 6 missing" in p for p in check.problems)
    assert check_links(log.records).intact
    assert read_items(export["items"], name="other").records == []


def test_aigate_report_from_an_export(tmp_path, capsys):
    log = two_rollouts()
    source = tmp_path / "records.json"
    source.write_text(json.dumps(log.export(publicKeys={"SHA256:x": "ssh-ed25519 AAAA"})))
    out = tmp_path / "report.html"
    assert cli.main(["report", "--from", str(source), "--output", str(out)]) == 0
    assert f"report written to {out}" in capsys.readouterr().out
    html = out.read_text()
    assert "jane@example.com" in html and "built offline from exported records" in html
    assert (
        cli.main(
            ["report", "--from", str(source), "-o", "md", "--output", "-", "--since", "2026-03-03"]
        )
        == 0
    )
    markdown = capsys.readouterr().out
    assert markdown.startswith("# Evidence report: AIDeployment ml/fraud-scorer")
    assert "Rollout 2" in markdown and "Rollout 1:" not in markdown
    assert cli.main(["report", "--from", str(source), "--since", "March"]) == 2
    assert "--since 'March': expected a date" in capsys.readouterr().err
    assert cli.main(["report", "--from", str(source), "nobody"]) == 1
    assert "no AIRecord of nobody found" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["html", "md", "json"])
def test_a_report_with_no_rollout_still_renders(fmt):
    log = RecordLog()
    log.approve(T0, "2.4.0")
    text = render(build(log), fmt)
    assert "jane@example.com" in text
