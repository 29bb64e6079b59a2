"""The child objects aigate builds."""

from __future__ import annotations

from aigate.core import workloads
from support.factories import spec_dict, spec_model

OWNER = workloads.Owner(name="fraud-scorer", namespace="risk", uid="uid-1")


def build(spec, track, revision, replicas):
    template = spec.template.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return workloads.build_deployment(
        OWNER,
        track,
        model_name=spec.model.name,
        version=spec.model.version,
        revision=revision,
        template=template,
        replicas=replicas,
    )


def test_deployment_carries_identity_owner_and_a_revision_free_selector():
    raw = spec_dict()
    raw["template"]["metadata"] = {"labels": {"team": "risk", workloads.LABEL_TRACK: "spoofed"}}
    deployment = build(spec_model(raw), "stable", "abc123", 4)
    assert deployment["metadata"]["name"] == "fraud-scorer-stable"
    assert deployment["metadata"]["namespace"] == "risk"
    (ref,) = deployment["metadata"]["ownerReferences"]
    assert (ref["uid"], ref["controller"], ref["kind"]) == ("uid-1", True, "AIDeployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {workloads.LABEL_OWNER: "fraud-scorer", workloads.LABEL_TRACK: "stable"}
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["team"] == "risk"  # the user's labels are kept
    assert pod_labels[workloads.LABEL_TRACK] == "stable"  # ours win
    assert pod_labels[workloads.LABEL_REVISION] == "abc123"
    assert pod_labels[workloads.LABEL_VERSION] == "2.4.0"
    assert selector.items() <= pod_labels.items()
    assert deployment["spec"]["replicas"] == 4
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_user_template_is_passed_through_untouched_apart_from_labels():
    raw = spec_dict()
    raw["template"]["spec"]["containers"][0]["env"] = [{"name": "MODE", "value": "strict"}]
    raw["template"]["spec"]["nodeSelector"] = {"gpu": "a100"}
    deployment = build(spec_model(raw), "canary", "r", 1)
    pod_spec = deployment["spec"]["template"]["spec"]
    assert pod_spec["nodeSelector"] == {"gpu": "a100"}
    assert pod_spec["containers"][0]["env"] == [{"name": "MODE", "value": "strict"}]
    assert deployment["metadata"]["name"] == "fraud-scorer-canary"


def test_service_selects_both_tracks_and_defaults_target_port():
    service = workloads.build_service(OWNER, port=8080, target_port=0)
    selector = service["spec"]["selector"]
    assert selector == {
        workloads.MANAGED_BY: "aigate",
        workloads.LABEL_OWNER: "fraud-scorer",
        workloads.LABEL_OWNER_UID: "uid-1",
    }
    for track in ("stable", "canary"):  # both tracks' pods, and only aigate's
        pod_labels = build(spec_model(), track, "r", 1)["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["port"] == 8080
    assert service["spec"]["ports"][0]["targetPort"] == 8080
    explicit = workloads.build_service(OWNER, port=80, target_port=8080)
    assert explicit["spec"]["ports"][0]["targetPort"] == 8080
