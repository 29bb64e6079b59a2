"""The watch-fed caches: a reconcile reads what the watch holds, or aigate's own newer write
until the watch shows it (read-your-writes), and never keeps a write past the watch."""

from __future__ import annotations

import copy

from aigate.adapters.cache import BodyCache, ChildCache, Overlay, merge_patch, summarize

DEPLOYMENT = {
    "kind": "Deployment",
    "metadata": {
        "name": "scorer-canary",
        "namespace": "risk",
        "uid": "u1",
        "resourceVersion": "100",
        "generation": 2,
        "annotations": {"aigate.dev/revision": "r1"},
        "labels": {"aigate.dev/version": "1.0"},
    },
    "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "s"}]}}},
    "status": {"observedGeneration": 2, "readyReplicas": 2, "updatedReplicas": 2, "replicas": 2},
}
KEY = ("Deployment", "risk", "scorer-canary")


def at(version: str, **changes: object) -> dict:
    raw = copy.deepcopy(DEPLOYMENT)
    raw["metadata"]["resourceVersion"] = version
    raw["metadata"].update(changes)
    return raw


def cache_with(*watched: dict) -> ChildCache:
    cache = ChildCache()
    cache.attach({KEY: [summarize(raw, "Deployment") for raw in watched]})
    return cache


def test_a_summary_keeps_what_decisions_need_and_not_the_object():
    summary = summarize(DEPLOYMENT, "Deployment")
    assert summary.workload is not None and summary.workload.serves("r1", 2)
    assert summary.revision == "r1" and summary.uid == "u1" and summary.digest
    assert not hasattr(summary, "spec")


def test_the_watch_is_read_when_aigate_wrote_nothing():
    assert cache_with(at("100")).get(*KEY).resource_version == "100"
    assert ChildCache().get(*KEY) is None


def test_aigate_s_own_write_is_read_until_the_watch_shows_it():
    cache = cache_with(at("100"))
    cache.wrote(at("105", annotations={"aigate.dev/revision": "r2"}), "Deployment")
    assert cache.get(*KEY).revision == "r2"  # the watch still shows 100
    cache.attach(
        {KEY: [summarize(at("105", annotations={"aigate.dev/revision": "r2"}), "Deployment")]}
    )
    assert cache.get(*KEY).resource_version == "105"
    assert len(cache.overlay) == 0  # dropped once the watch caught up


def test_a_later_change_by_someone_else_wins_over_aigate_s_write():
    cache = cache_with(at("100"))
    cache.wrote(at("105"), "Deployment")
    cache.attach({KEY: [summarize(at("107", annotations={}), "Deployment")]})
    assert cache.get(*KEY).revision == ""  # the edit aigate must see (drift)


def test_a_created_child_is_read_before_its_first_watch_event():
    cache = ChildCache()
    cache.wrote(at("3"), "Deployment")
    assert cache.get(*KEY).uid == "u1"


def test_a_deleted_child_reads_as_going_away_then_gone():
    cache = cache_with(at("100"))
    cache.wrote(at("101", deletionTimestamp="2026-11-24T10:00:00Z"), "Deployment")
    going = cache.get(*KEY)
    assert going.deleting and going.workload.terminating
    cache.attach({})  # the watch's DELETED event: kopf drops it from the index
    cache.overlay.forget(KEY)  # ... and the operator forgets its write
    assert cache.get(*KEY) is None


def test_a_write_the_watch_never_shows_expires():
    now = [0.0]
    overlay = Overlay(clock=lambda: now[0])
    overlay.wrote(KEY, "9", "value")
    assert overlay.pending(KEY, None) == (True, "value")
    now[0] = Overlay.MAX_PENDING_SECONDS + 1
    assert overlay.pending(KEY, None) == (False, None)


def test_a_non_numeric_resource_version_never_counts_as_newer_than_the_watch():
    cache = cache_with(at("abc"))
    cache.wrote(at("abd"), "Deployment")
    assert cache.get(*KEY).resource_version == "abc"


def test_the_status_write_s_answer_is_the_body_until_the_watch_shows_it():
    bodies = BodyCache()
    watched = {"metadata": {"namespace": "risk", "name": "s", "uid": "a", "resourceVersion": "7"}}
    written = copy.deepcopy(watched)
    written["metadata"]["resourceVersion"] = "9"
    written["status"] = {"phase": "Progressing"}
    bodies.wrote(written)
    assert bodies.current(watched)["status"]["phase"] == "Progressing"
    assert bodies.overlay.is_own(("AIDeployment", "risk", "s"), "9")
    assert not bodies.overlay.is_own(("AIDeployment", "risk", "s"), "7")
    caught_up = copy.deepcopy(written)
    assert bodies.current(caught_up) == caught_up
    assert bodies.current(watched) == watched  # the write was dropped once watched


def test_a_recreated_object_of_the_same_name_never_reads_the_old_one_s_write():
    bodies = BodyCache()
    old = {"metadata": {"namespace": "risk", "name": "s", "uid": "a", "resourceVersion": "9"}}
    bodies.wrote(old)
    new = {"metadata": {"namespace": "risk", "name": "s", "uid": "b", "resourceVersion": "5"}}
    assert bodies.current(new)["metadata"]["uid"] == "b"


def test_merge_patch_follows_rfc_7386():
    target = {"records": {"outbox": [1, 2], "sequence": 4}, "children": {"canary": {"uid": "x"}}}
    patch = {"records": {"outbox": []}, "children": {"canary": None, "stable": {"uid": "y"}}}
    assert merge_patch(target, patch) == {
        "records": {"outbox": [], "sequence": 4},
        "children": {"stable": {"uid": "y"}},
    }
    assert target["children"] == {"canary": {"uid": "x"}}  # not changed in place
    assert merge_patch(None, {"a": None, "b": 1}) == {"b": 1}


def test_a_deferred_status_patch_is_held_merged_until_a_status_write_carries_it():
    bodies = BodyCache()
    body = {"metadata": {"namespace": "risk", "name": "s", "uid": "a", "resourceVersion": "7"}}
    assert bodies.deferred(body) is None
    bodies.defer(body, {"records": {"outbox": []}, "children": {"canary": {"uid": "c1"}}})
    bodies.defer(body, {"children": {"service": {"uid": "s1"}}})
    assert bodies.deferred(body) == {
        "records": {"outbox": []},
        "children": {"canary": {"uid": "c1"}, "service": {"uid": "s1"}},
    }
    status = {"children": {"canary": {"creating": "r1", "uid": ""}, "stable": {"uid": "s"}}}
    assert merge_patch(status, bodies.deferred(body))["children"] == {
        "canary": {"creating": "r1", "uid": "c1"},
        "stable": {"uid": "s"},
        "service": {"uid": "s1"},
    }
    recreated = copy.deepcopy(body)
    recreated["metadata"]["uid"] = "b"
    assert bodies.deferred(recreated) is None  # never another object's
    bodies.defer(recreated, {"records": {"outbox": []}})
    bodies.forget(recreated)  # the new object's daemon ends: the old one's patch stays
    assert bodies.deferred(body) is not None
    bodies.written(body)
    assert bodies.deferred(body) is None
    bodies.defer(body, {"records": {"outbox": []}})
    bodies.forget(body)
    assert bodies.deferred(body) is None
