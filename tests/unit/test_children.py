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
        (lambda o: o["metadata"].update(finalizers=["someone/hold"]), True),
        # deny by default: any label or annotation may route or change behaviour
        (lambda o: o["metadata"]["labels"].update(team="other"), True),
        (
            lambda o: o["metadata"]["labels"].update(
                {"service.kubernetes.io/service-proxy-name": "x"}
            ),
            True,
        ),
        # what changes nothing that runs: controllers' bookkeeping, status
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
    # one child recorded in a round that failed for another: the other keeps its takeover
    partial = ChildRecords(legacy=True, service=ChildRecord(uid="svc", digest="d"))
    assert claim(live(), partial, OWNER_UID, frozenset({"r1"})).ours


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


def test_an_unpinned_image_volume_is_named():
    template = {
        "spec": {
            "containers": [{"name": "server", "image": image_for("1")}],
            "volumes": [
                {"name": "weights", "image": {"reference": "reg/weights:latest"}},
                {"name": "pinned", "image": {"reference": image_for("w")}},
                {"name": "scratch", "emptyDir": {}},
            ],
        }
    }
    (problem,) = images.unpinned_images("high", template)
    assert problem.startswith("spec.template.spec.volumes[0].image.reference (volume 'weights')")
    trailing = {"spec": {"containers": [{"name": "s", "image": image_for("1") + "\n"}]}}
    assert images.unpinned_images("high", trailing)


def test_an_object_being_deleted_is_claimed_like_any_other():
    """A deletion held by someone's finalizer hides no edit: only the canary aigate itself
    deleted (its record gone) is waited for without a claim."""
    from aigate.adapters.cache import summarize
    from aigate.adapters.kube import KubeAdapter
    from aigate.core.workloads import Owner

    owner = Owner("fraud-scorer", "risk", OWNER_UID)
    going = copy.deepcopy(DEPLOYMENT)
    going["metadata"].update(deletionTimestamp="2026-11-24T10:00:00Z", finalizers=["x/hold"])
    recorded = ChildRecords(stable=ChildRecord(uid="dep-uid", digest=content_digest(DEPLOYMENT)))
    result = KubeAdapter._claim(
        summarize(going, "Deployment"), "stable", owner, recorded, frozenset()
    )
    assert result.ours and result.drift is not None  # the finalizer (and any edit) is drift
    foreign = KubeAdapter._claim(
        summarize(going, "Deployment"), "stable", owner, ChildRecords(), frozenset()
    )
    assert not foreign.ours and foreign.conflict
    canary = copy.deepcopy(going)
    canary["metadata"]["name"] = "fraud-scorer-canary"
    own = KubeAdapter._claim(
        summarize(canary, "Deployment"), "canary", owner, ChildRecords(), frozenset()
    )
    assert own == children.Claim(ours=True)
