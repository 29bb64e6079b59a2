"""`kubectl aigate approve`: what it shows, and that it writes only the revision shown."""

from __future__ import annotations

import argparse
import copy

import pytest
from kubernetes.client.rest import ApiException

from aigate import kubectl_plugin as plugin
from aigate.api.v1alpha1 import AIDeploymentSpec
from aigate.core import gate
from aigate.core.revision import compute_revision, vouched_content
from support.factories import image_for
from support.sim import plan_spec


def changed(spec: AIDeploymentSpec, edit) -> AIDeploymentSpec:
    raw = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    edit(raw)
    return AIDeploymentSpec.model_validate(raw)


def v2_edit(raw: dict) -> None:
    pod = raw["template"]["spec"]
    pod["containers"][0]["env"] = [{"name": "MODE", "value": "fast"}]
    pod["initContainers"] = [{"name": "fetch", "image": "fetcher@sha256:" + "a" * 64}]
    raw["rollout"]["analysis"]["metrics"][0]["max"] = 0.05
    raw["rollout"]["analysis"]["metrics"].append(
        {"name": "confidence", "query": "conf", "min": 0.7, "onNoData": "Fail"}
    )


V1 = plan_spec("2.4.0")
V2 = changed(plan_spec("2.5.0", manual=True), v2_edit)
SERVING = {"revision": compute_revision(V1), "version": "2.4.0", "content": vouched_content(V1)}


def test_it_shows_model_images_plan_thresholds_and_the_change_against_what_serves():
    text = plugin.render_approval("risk/fraud-scorer", V2, compute_revision(V2), SERVING)
    for expected in (
        "fraud-scorer 2.5.0 (risk tier high, owner team-risk-ml)",
        f"Revision:       {compute_revision(V2)}",
        f"container server: {image_for('2.5.0')}",
        "init fetch: fetcher@sha256:" + "a" * 64,
        "canary-10: weight 10%, 1m",
        "canary-50: weight 50%, 1m, manual promotion",
        "full: weight 100%, 0s",
        "failureLimit 2",
        "error-rate: max 0.05",
        'query: err{app="{{name}}",track="{{track}}"}',
        "confidence: min 0.7, onNoData Fail",
        f"Changes against the serving version 2.4.0 (revision {compute_revision(V1)}):",
        '~ spec.model.version: "2.4.0" -> "2.5.0"',
        f'~ spec.template.spec.containers[server].image: "{image_for("2.4.0")}" -> "{image_for("2.5.0")}"',
        '+ spec.template.spec.containers[server].env[MODE].value: "fast"',
        "~ spec.rollout.analysis.metrics[error-rate].max: 0.01 -> 0.05",
        '+ spec.rollout.analysis.metrics[confidence].query: "conf"',
        "+ spec.rollout.analysis.metrics[confidence].min: 0.7",
        "~ spec.rollout.stages[canary-50].manualPromotion: false -> true",
        '+ spec.template.spec.initContainers[fetch].image: "fetcher@sha256:' + "a" * 64 + '"',
    ):
        assert expected in text, f"{expected!r} not in\n{text}"


def test_the_first_version_says_nothing_serves_and_the_same_revision_shows_no_change():
    revision = compute_revision(V1)
    assert "nothing serves yet" in plugin.render_approval("a/b", V1, revision, None)
    assert plugin.render_approval("a/b", V1, revision, SERVING).endswith("):\n  none")


LONG = "x" * 300


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ({"a": 1}, {"a": 1}, []),
        ({"a": 1}, {}, ["- spec.a: 1"]),
        ({}, {"a": {"b": [1, 2]}}, ["+ spec.a.b[0]: 1", "+ spec.a.b[1]: 2"]),
        ({"a": 1}, {"a": {"b": 2}}, ["- spec.a: 1", "+ spec.a.b: 2"]),
        ([1, 2], [1, 3], ["~ spec[1]: 2 -> 3"]),
        ([1], [1, 2], ["+ spec[1]: 2"]),
        (
            [{"name": "a"}, {"name": "b", "x": 1}],
            [{"name": "b", "x": 2}, {"name": "a"}],
            ["~ spec: order ['a', 'b'] -> ['b', 'a']", "~ spec[b].x: 1 -> 2"],
        ),
        ([{"name": "a", "x": 1}], [{"name": "a", "x": 2}], ["~ spec[a].x: 1 -> 2"]),
        # a long query changed near its end is shown whole, never cut
        ({"q": LONG + "a"}, {"q": LONG + "b"}, [f'~ spec.q: "{LONG}a" -> "{LONG}b"']),
    ],
)
def test_content_diff(old, new, expected):
    assert plugin.content_diff(old, new) == expected


# ---- writing only what was shown ---------------------------------------------------------------


class FakeCustom:
    """The AIDeployment as successive reads return it; records every patch."""

    def __init__(self, *reads: dict, conflicts: int = 0) -> None:
        self.reads = list(reads)
        self.patches: list[dict] = []
        self.conflicts = conflicts

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        return self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        if self.conflicts:
            self.conflicts -= 1
            raise ApiException(status=409, reason="Conflict")
        self.patches.append(copy.deepcopy(body))


def obj(spec: AIDeploymentSpec, resource_version: str) -> dict:
    return {
        "metadata": {
            "name": "fraud-scorer",
            "namespace": "risk",
            "resourceVersion": resource_version,
        },
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_unset=True),
        "status": {"revision": compute_revision(spec), "serving": SERVING},
    }


def args(**overrides) -> argparse.Namespace:
    values = {
        "command": "approve",
        "reference": "",
        "name": "fraud-scorer",
        "risk_acceptance": "RISK-1",
        "risk_accepted_by": "ciso@example.com",
        "by": "jane@example.com",
        "conditions": "",
        "revision": None,
        "yes": True,
        "sign": False,
        "key": None,
    }
    return argparse.Namespace(**(values | overrides))


def approve(custom: FakeCustom, **overrides) -> int:
    first = custom.get_namespaced_custom_object("", "", "risk", "", "fraud-scorer")
    return plugin._approve(args(**overrides), custom, None, "risk", first)


def test_it_writes_the_full_revision_shown_guarded_by_resource_version(capsys):
    custom = FakeCustom(obj(V2, "10"), obj(V2, "11"))
    assert approve(custom) == 0
    (patch,) = custom.patches
    assert patch["metadata"]["resourceVersion"] == "11"
    assert patch["metadata"]["annotations"][gate.APPROVED_REVISION] == compute_revision(V2)
    assert f"container server: {image_for('2.5.0')}" in capsys.readouterr().out


def test_a_spec_changed_after_it_was_shown_is_refused_naming_both_revisions(capsys):
    custom = FakeCustom(obj(V2, "10"), obj(V1, "12"))
    assert approve(custom) == 1
    assert custom.patches == []
    err = capsys.readouterr().err
    assert f"you reviewed revision {compute_revision(V2)}" in err
    assert f"the spec now has revision {compute_revision(V1)}" in err


def test_a_conflicting_write_reads_again_and_still_checks_the_revision():
    custom = FakeCustom(obj(V2, "10"), obj(V2, "11"), obj(V2, "12"), conflicts=1)
    assert approve(custom) == 0
    assert [p["metadata"]["resourceVersion"] for p in custom.patches] == ["12"]


def test_nothing_is_written_unless_confirmed(monkeypatch, capsys):
    custom = FakeCustom(obj(V2, "10"))
    monkeypatch.setattr("builtins.input", lambda: "n")
    assert approve(custom, yes=False) == 1
    assert custom.patches == []
    assert f"Approve revision {compute_revision(V2)} of risk/fraud-scorer? [y/N]" in (
        capsys.readouterr().out
    )
    monkeypatch.setattr("builtins.input", lambda: "y")
    assert approve(custom, yes=False) == 0


def test_a_revision_given_on_the_command_line_must_be_the_specs():
    custom = FakeCustom(obj(V2, "10"))
    assert approve(custom, revision=compute_revision(V1)) == 1
    assert custom.patches == []


def test_accept_risk_writes_only_the_risk_annotations_signed_as_you(capsys):
    custom = FakeCustom(obj(V2, "10"), obj(V2, "11"))
    assert approve(custom, command="accept-risk", reference="RISK-77", by="risk-officer") == 0
    (patch,) = custom.patches
    assert patch["metadata"]["annotations"] == {
        gate.RISK_ACCEPTANCE: "RISK-77",
        gate.RISK_ACCEPTED_BY: "risk-officer",
        gate.RISK_SIGNATURE: None,  # unsigned: a signature of an earlier acceptance goes
    }
    assert patch["metadata"]["resourceVersion"] == "11"
    assert "accepted the risk of revision" in capsys.readouterr().out


def test_approve_alone_writes_no_risk_annotations():
    custom = FakeCustom(obj(V2, "10"), obj(V2, "11"))
    assert approve(custom, risk_acceptance="", risk_accepted_by="") == 0
    (patch,) = custom.patches
    annotations = patch["metadata"]["annotations"]
    assert gate.RISK_ACCEPTANCE not in annotations and gate.RISK_ACCEPTED_BY not in annotations
    assert annotations[gate.APPROVED_BY] == "jane@example.com"


def test_approve_sign_signs_the_statement_of_what_it_writes(tmp_path):
    from aigate.core.statements import statements_of
    from aigate.signatures import parse_allowed_signers, verify
    from support.sshkeys import Keys

    keys = Keys(tmp_path)
    custom = FakeCustom(obj(V2, "10"), obj(V2, "11"))
    assert approve(custom, sign=True, key=str(keys.path("jane")), conditions="EU only") == 0
    (patch,) = custom.patches
    annotations = patch["metadata"]["annotations"]
    statement, _ = statements_of(annotations, compute_revision(V2), "fraud-scorer", "2.5.0")
    assert "conditions: EU only\n" in statement and "risk-acceptance: RISK-1\n" in statement
    registry = parse_allowed_signers(keys.allowed_signers(("jane@example.com", "jane")))
    check = verify(statement, annotations[gate.APPROVAL_SIGNATURE], "jane@example.com", registry)
    assert check.verified, check.problem


def test_approve_sign_refuses_before_a_risk_acceptance_exists(capsys, tmp_path):
    custom = FakeCustom(obj(V2, "10"), obj(V2, "11"))
    with pytest.raises(plugin.SigningError, match="sign after the risk acceptance"):
        approve(custom, risk_acceptance="", risk_accepted_by="", sign=True, key=str(tmp_path))
    assert custom.patches == []
