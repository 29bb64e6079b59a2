"""The resource schema as pydantic sees it, the committed CRD, and `aigate revision`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from aigate import cli, crdgen
from aigate.api.v1alpha1 import AIDeploymentSpec
from aigate.core import gate
from support.factories import spec_dict

ROOT = Path(__file__).resolve().parents[2]


def test_committed_crd_matches_the_models():
    committed = (ROOT / "crds" / crdgen.CRD_FILENAME).read_text()
    assert committed == crdgen.render(), "crds/ is stale: run `make crds`"


def test_crd_has_status_subresource_short_name_and_columns():
    crd = crdgen.build_crd()
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert crd["spec"]["names"]["shortNames"] == ["aid"]
    columns = [c["name"].upper() for c in version["additionalPrinterColumns"]]
    for expected in ("PHASE", "VERSION", "STAGE", "WEIGHT", "APPROVED-BY", "AGE"):
        assert expected in columns


def test_crd_schema_has_no_defaults_or_unresolved_refs():
    text = yaml.safe_dump(crdgen.build_crd())
    assert "$ref" not in text
    assert "default:" not in text  # defaults are applied by the models, not written into objects
    assert "anyOf" not in text


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s.update(replicas=0), "replicas"),
        (lambda s: s["model"].update(riskTier="extreme"), "riskTier"),
        (lambda s: s["model"].pop("owner"), "owner"),
        (lambda s: s["model"].update(version="2.4.0 beta"), "version"),
        (lambda s: s["template"]["spec"].update(containers=[]), "containers"),
        (lambda s: s["rollout"]["analysis"].update(interval="soon"), "interval"),
        (lambda s: s["rollout"]["stages"][0].update(weight=101), "weight"),
        (lambda s: s["rollout"]["analysis"]["metrics"][0].update(onNoData="Pass"), "onNoData"),
        (lambda s: s.update(service={"port": 70000}), "port"),
    ],
)
def test_bad_specs_are_rejected_naming_the_field(mutate, field):
    raw = spec_dict()
    mutate(raw)
    with pytest.raises(ValidationError) as error:
        AIDeploymentSpec.model_validate(raw)
    assert field in str(error.value)


def test_examples_are_valid_and_the_approved_one_names_its_own_revision(capsys):
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(example.read_text()):
            AIDeploymentSpec.model_validate(doc["spec"])
    approved = ROOT / "examples" / "fraud-scorer-approved.yaml"
    assert cli.main(["revision", "-q", "-f", str(approved)]) == 0
    revision = capsys.readouterr().out.strip()
    annotations = yaml.safe_load(approved.read_text())["metadata"]["annotations"]
    assert annotations[gate.APPROVED_REVISION] == revision


def test_revision_command_reads_stdin_and_reports_bad_input(tmp_path, capsys, monkeypatch):
    manifest = {
        "apiVersion": "aigate.dev/v1alpha1",
        "kind": "AIDeployment",
        "metadata": {"name": "a"},
        "spec": spec_dict(),
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump_all([{"kind": "ConfigMap"}, manifest]))
    assert cli.main(["revision", "-f", str(path)]) == 0
    assert capsys.readouterr().out.startswith("a\t")

    bad = dict(manifest, spec=spec_dict(replicas="many"))
    path.write_text(yaml.safe_dump(bad))
    assert cli.main(["revision", "-f", str(path)]) == 1
    assert "replicas" in capsys.readouterr().err

    path.write_text("kind: ConfigMap\n")
    assert cli.main(["revision", "-f", str(path)]) == 1


def test_unquoted_dates_in_a_manifest_stay_strings_as_kubectl_sends_them(tmp_path, capsys):
    text = (
        (ROOT / "examples" / "fraud-scorer.yaml")
        .read_text()
        .replace(
            "    spec:\n      containers:",
            "    metadata:\n      annotations:\n        built: 2026-11-20\n    spec:\n      containers:",
        )
    )
    path = tmp_path / "dated.yaml"
    path.write_text(text)
    assert cli.main(["revision", "-q", "-f", str(path)]) == 0
    assert len(capsys.readouterr().out.strip()) == 64


def test_kubectl_plugin_renders_status_and_history():
    from aigate.kubectl_plugin import (
        render_history,
        render_status,
        request_target,
        request_value,
    )

    obj = {
        "metadata": {"name": "fraud-scorer", "namespace": "risk", "generation": 3},
        "spec": {
            "replicas": 4,
            "model": {
                "name": "fraud-scorer",
                "version": "2.5.0",
                "riskTier": "high",
                "owner": "team",
            },
        },
        "status": {
            "phase": "Paused",
            "revision": "abc",
            "observedGeneration": 3,
            "stableVersion": "2.4.0",
            "stableRevision": "old",
            "readyReplicas": 4,
            "canaryRevision": "abc",
            "canaryVersion": "2.5.0",
            "canaryReadyReplicas": 2,
            "stage": "canary-50",
            "canaryWeight": 50,
            "approval": {
                "revision": "abc",
                "approvedBy": "jane",
                "approvedAt": "t",
                "riskAcceptance": "R-1",
                "riskAcceptedBy": "ciso",
            },
            "conditions": [
                {
                    "type": "Reconciling",
                    "status": "True",
                    "reason": "AwaitingPromotion",
                    "message": "annotate aigate.dev/promote=canary-50",
                }
            ],
            "rollout": {
                "analysis": {
                    "track": "canary",
                    "metrics": {
                        "error-rate": {
                            "failures": 0,
                            "last": {"verdict": "Pass", "value": "0.001", "threshold": "<= 0.01"},
                        }
                    },
                },
            },
            "lastRollback": {
                "revision": "bad",
                "toRevision": "old",
                "reason": "AnalysisFailed",
                "completedAt": "t9",
                "trigger": {"detail": "metric error-rate failed 3 time(s): value 0.2"},
            },
            "rolledBackRevisions": ["bad"],
            "history": [
                {
                    "time": "t1",
                    "toPhase": "Progressing",
                    "reason": "StagePassed",
                    "version": "2.5.0",
                    "message": "stage canary-10 passed",
                    "evidence": [
                        {
                            "metric": "error-rate",
                            "verdict": "Pass",
                            "value": "0.001",
                            "threshold": "<= 0.01",
                            "time": "t0",
                            "reason": "ok",
                        }
                    ],
                }
            ],
        },
    }
    text = render_status(obj)
    for expected in (
        "risk/fraud-scorer",
        "Paused",
        "2.4.0 (revision old), 4/4 Ready",
        "stage canary-50 at weight 50%",
        "risk R-1 accepted by ciso",
        "annotate aigate.dev/promote=canary-50",
        "error-rate",
        "Analysis (canary track)",
        "revision bad to old at t9 (AnalysisFailed: metric error-rate failed 3 time(s)",
        "1 rolled-back revision(s)",
        "StagePassed",
    ):
        assert expected in text
    assert "error-rate: Pass value 0.001 (<= 0.01)" in render_history(obj["status"]["history"])
    assert (
        request_value("promote", "T", "jane", "abc", stage="canary-50") == "canary-50@abc by=jane T"
    )
    assert request_value("abort", "T", "sre", "abc", reason="INC-7") == "@abc by=sre T INC-7"
    assert request_value("abort", "T", "sre", "", reason="INC-7") == "by=sre T INC-7"
    assert request_value("retry", "T", "jane", "abc") == "@abc by=jane T"
    status = {"revision": "r3", "rollout": {"candidate": {"revision": "r2"}, "stage": "c50"}}
    assert request_target("promote", status) == ("r2", "c50")
    assert request_target("abort", status) == ("r2", "")
    assert request_target("abort", {"watch": {"revision": "r2"}}) == ("r2", "")
    assert request_target("retry", status) == ("r3", "")


FULL = "abc123456789" + "0" * 52


@pytest.mark.parametrize(
    ("kind", "value", "stage", "revision", "by", "for_full"),
    [
        (
            "promote",
            f"canary-50@{FULL} by=jane 2026-11-23T10:00:00Z",
            "canary-50",
            FULL,
            "jane",
            True,
        ),
        ("promote", f"canary-50@{FULL}ff by=jane", "canary-50", FULL + "ff", "jane", False),
        ("promote", "canary-50@abc123456789 by=jane", "canary-50", "abc123456789", "jane", False),
        ("promote", "canary-50 by=jane", "canary-50", "", "jane", False),  # names no revision
        ("promote", f"canary-50@{FULL}", "canary-50", FULL, "", False),  # names nobody
        ("promote", "yes", "yes", "", "", False),
        ("retry", f"@{FULL} by=jane fixed", "", FULL, "jane", True),
        ("retry", "INC-7 fixed", "INC-7", "", "", False),
        ("abort", f"@{FULL} by=sre p99", "", FULL, "sre", True),
        ("abort", "by=sre p99", "", "", "sre", True),  # stopping: any revision in flight
        ("abort", "stop it", "stop", "", "", False),
    ],
)
def test_request_values_bind_to_the_full_revision_and_the_user(
    kind, value, stage, revision, by, for_full
):
    from aigate.core.requests import Request

    request = Request(kind, value)
    assert (request.stage, request.revision, request.by) == (stage, revision, by)
    assert request.names_revision(FULL) is for_full
    assert (request.malformed() == "") is for_full


def test_kubectl_aigate_history_reads_records_and_names_decisions_not_yet_recorded():
    from aigate.kubectl_plugin import history_entries, render_history

    def record(sequence: int, reason: str, **extra) -> dict:
        return {"sequence": sequence, "reason": reason, "toPhase": "Progressing", **extra}

    passed = record(
        3,
        "StagePassed",
        evidence=[
            {"metric": "error-rate", "verdict": "Pass", "value": "0.001", "threshold": "<= 0.01"}
        ],
    )
    records = [record(1, "RolloutStarted"), record(2, "MeasurementsRecorded"), passed]
    summary = [
        {"sequence": 3, "reason": "StagePassed", "message": "canary-10 passed"},
        {"sequence": 4, "reason": "Promoted", "message": "v2 serving"},
    ]
    shown = history_entries(records, summary)
    assert [e["reason"] for e in shown] == ["RolloutStarted", "StagePassed", "Promoted"]
    assert shown[-1]["message"] == "v2 serving (record not written yet)"
    assert [e["sequence"] for e in history_entries(records, summary, measurements=True)] == [
        1,
        2,
        3,
        4,
    ]
    text = render_history(shown)
    assert "error-rate: Pass value 0.001 (<= 0.01)" in text and "MeasurementsRecorded" not in text
