"""Which children are aigate's and whether they drifted (core/children.py)."""

from __future__ import annotations

import copy

import pytest

from aigate.api.v1alpha1 import ChildRecord, ChildRecords
from aigate.core import children, images
from aigate.core.children import LiveChild, claim, content_digest
from support.factories import image_for

OWNER_UID = "owner-uid"
DEPLOYMENT = {
    "metadata": {
        "name": "fraud-scorer-stable",
        "uid": "dep-uid",
        "labels": {"aigate.dev/aideployment": "fraud-scorer", "team": "risk"},
        "annotations": {
            "aigate.dev/revision": "r1",
            "deployment.kubernetes.io/revision": "3",
        },
        "ownerReferences": [{"uid": OWNER_UID, "controller": True}],
        "resourceVersion": "100",
    },
    "spec": {
        "replicas": 4,
        "template": {"spec": {"containers": [{"name": "server", "image": "a@sha256:0"}]}},
    },
    "status": {"readyReplicas": 4},
}


def live(obj=DEPLOYMENT, **overrides) -> LiveChild:
    metadata = obj["metadata"]
    fields = {
        "child": "stable",
        "kind": "Deployment",
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller_uid": OWNER_UID,
        "revision": metadata["annotations"]["aigate.dev/revision"],
        "digest": content_digest(obj),
    }
    return LiveChild(**{**fields, **overrides})


def edited(path_setter) -> dict:
    obj = copy.deepcopy(DEPLOYMENT)
    path_setter(obj)
    return obj


@pytest.mark.parametrize(
    ("change", "drifts"),
    [
        (lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image="evil"), True),
        (lambda o: o["spec"]["template"]["spec"]["containers"][0].update(command=["sh"]), True),
        (lambda o: o["spec"].update(replicas=9), True),
        (lambda o: o["metadata"]["annotations"].update({"aigate.dev/revision": "r2"}), True),
        (lambda o: o["metadata"].update(ownerReferences=[]), True),
        # what changes nothing that runs: other labels, controllers' bookkeeping, status
        (lambda o: o["metadata"]["labels"].update(team="other"), False),
        (
            lambda o: o["metadata"]["annotations"].update(
                {"deployment.kubernetes.io/revision": "4"}
            ),
            False,
        ),
        (lambda o: o["metadata"].update(resourceVersion="101"), False),
        (lambda o: o["status"].update(readyReplicas=1), False),
    ],
)
def test_the_content_digest_covers_what_runs_and_who_owns_it(change, drifts):
    assert (content_digest(edited(change)) != content_digest(DEPLOYMENT)) is drifts


def test_a_recorded_child_with_its_recorded_content_is_ours_without_drift():
    records = ChildRecords(stable=ChildRecord(uid="dep-uid", digest=content_digest(DEPLOYMENT)))
    assert claim(live(), records, OWNER_UID, frozenset()) == children.Claim(ours=True)


def test_a_recorded_child_with_other_content_has_drifted_and_says_which_field():
    records = ChildRecords(stable=ChildRecord(uid="dep-uid", digest="what-aigate-wrote"))
    result = claim(
        live(changed_fields=("spec.template.spec.containers[name=server].image (kubectl-set)",)),
        records,
        OWNER_UID,
        frozenset(),
    )
    assert result.ours and result.drift is not None and result.drift.recorded
    assert "containers[name=server].image (kubectl-set)" in result.drift.what


def test_an_ownerreference_alone_does_not_make_a_child_ours():
    """A hand-made Deployment with aigate's controller ownerReference and a revision the
    status knows: with child records in place it is a conflict, whatever it claims."""
    records = ChildRecords()
    result = claim(live(uid="forged"), records, OWNER_UID, frozenset({"r1"}))
    assert not result.ours
    assert result.conflict == (
        "Deployment fraud-scorer-stable (uid forged) was not created by aigate"
    )
    other = ChildRecords(stable=ChildRecord(uid="dep-uid", digest="d"))
    assert (
        "aigate created uid dep-uid"
        in claim(live(uid="replaced"), other, OWNER_UID, frozenset()).conflict
    )


def test_a_crash_between_create_and_record_is_recovered_and_the_child_rewritten_whole():
    records = ChildRecords(stable=ChildRecord(creating="r1"))
    result = claim(live(), records, OWNER_UID, frozenset())
    assert result.ours and result.drift is not None and not result.drift.recorded
    # ... but only for the revision aigate was creating, and only under its ownerReference
    assert not claim(live(revision="r9"), records, OWNER_UID, frozenset()).ours
    assert not claim(live(controller_uid="x"), records, OWNER_UID, frozenset()).ours


def test_a_status_from_before_child_records_takes_over_only_a_revision_it_names():
    assert claim(live(), None, OWNER_UID, frozenset({"r1"})).ours
    assert not claim(live(), None, OWNER_UID, frozenset({"r0"})).ours
    assert not claim(live(), None, OWNER_UID, frozenset()).ours
    service = live(child="service", kind="Service", name="fraud-scorer", revision="")
    assert claim(service, None, OWNER_UID, frozenset({"r1"})).ours
    assert not claim(service, ChildRecords(), OWNER_UID, frozenset({"r1"})).ours


def test_changed_fields_are_read_from_other_clients_managed_fields():
    managed = [
        {"manager": "aigate", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        {
            "manager": "kubectl-set",
            "operation": "Update",
            "fieldsV1": {
                "f:spec": {
                    "f:template": {
                        "f:spec": {"f:containers": {'k:{"name":"server"}': {"f:image": {}}}}
                    }
                }
            },
        },
        {"manager": "kube-controller-manager", "subresource": "status", "fieldsV1": {}},
    ]
    assert children.changed_fields(managed) == (
        "spec.template.spec.containers[name=server].image (kubectl-set)",
    )


@pytest.mark.parametrize(
    ("tier", "image", "refused"),
    [
        ("high", "fake-model:2.4.0", True),
        ("high", "fake-model@sha256:abc", True),
        ("high", "fake-model:2.4.0@sha256:" + "0" * 63, True),
        ("high", image_for("2.4.0"), False),
        ("high", "registry:5000/m:tag@sha256:" + "a" * 64, False),
        ("limited", "fake-model:2.4.0", False),
    ],
)
def test_high_risk_images_must_be_pinned_by_digest(tier, image, refused):
    template = {
        "spec": {
            "initContainers": [{"name": "fetch", "image": image_for("init")}],
            "containers": [{"name": "server", "image": image}],
        }
    }
    problems = images.unpinned_images(tier, template)
    assert bool(problems) is refused
    if refused:
        assert problems == [
            f"spec.template.spec.containers[0] (container 'server'): image {image!r} is not "
            f"pinned; riskTier high requires <image>@sha256:<64 hex digits>"
        ]


def test_an_unpinned_init_container_is_named():
    template = {
        "spec": {
            "initContainers": [{"name": "fetch", "image": "busybox"}],
            "containers": [{"name": "server", "image": image_for("1")}],
        }
    }
    (problem,) = images.unpinned_images("high", template)
    assert problem.startswith("spec.template.spec.initContainers[0] (container 'fetch')")
