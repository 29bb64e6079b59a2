"""End to end: rollouts disturbed while they run, against the real control plane.

Each test drives the running operator through one scenario of docs/state-machine.md that
only shows with real Deployments, controllers and time: a new revision arriving during a
promotion, scaling and pod loss during a long stage, the stable Deployment deleted during a
canary, promote requests bound to their rollout and stage, and what `kubectl describe` says
after a rollback. Waits are on conditions with timeouts; where a moment in between matters
(a Deployment mid-rollout, a pod not Ready yet), the component that would move things on is
suspended (SIGSTOP) for exactly that block, and invariants are checked on every status the
API server stored (a watch) or on samples taken in the background.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from aigate.core.gate import parse_rfc3339
from aigate.core.requests import value_digest
from aigate.core.revision import compute_revision, short
from support.background import Background, Sampler
from support.factories import approval_annotations, image_for, spec_model
from support.kube import GROUP, PLURAL, VERSION, Aid
from support.scenarios import NAME, plan
from support.waiting import holds_for, wait_for

pytestmark = pytest.mark.usefixtures("operator")

TIMEOUT = 120
REVISION = "aigate.dev/revision"  # labels carry short(revision); the annotation the full one


# ---- specs and approvals ---------------------------------------------------------------------


def spec_of(
    cluster,
    version: str,
    *,
    manual: bool = False,
    stages: list[dict[str, Any]] | None = None,
    progress_deadline: str | None = None,
) -> dict[str, Any]:
    spec = plan(cluster.info.prometheus_url, version, manual=manual)
    if stages is not None:
        spec["rollout"]["stages"] = stages
    if progress_deadline is not None:
        spec["rollout"]["progressDeadline"] = progress_deadline
    return spec


def revision_of(spec: dict[str, Any]) -> str:
    """What `aigate revision -f` prints for this spec, computed offline."""
    return compute_revision(spec_model(spec))


def approvals(revision: str) -> dict[str, str]:
    return approval_annotations(revision, datetime.now(UTC) - timedelta(seconds=5))


def stable_v1(cluster, api_client, namespace: str, **kwargs: Any) -> tuple[Aid, str]:
    aid = Aid(api_client, namespace, NAME)
    spec = spec_of(cluster, "2.4.0", **kwargs)
    v1 = revision_of(spec)
    aid.create(spec, approvals(v1))
    wait_for(
        lambda: aid.phase() == "Stable" and len(aid.ready_pods("stable")) == 4,
        timeout=TIMEOUT,
        what="v1 Stable with 4 Ready pods",
    )
    return aid, v1


def roll_out(aid: Aid, spec: dict[str, Any]) -> str:
    """The new spec and its approval, in one patch (as a GitOps sync writes them)."""
    revision = revision_of(spec)
    aid.patch({"metadata": {"annotations": approvals(revision)}, "spec": spec})
    return revision


# ---- reading status and children -------------------------------------------------------------


def rollout_of(status: dict[str, Any]) -> dict[str, Any]:
    return status.get("rollout") or {}


def candidate_of(status: dict[str, Any]) -> str:
    return (rollout_of(status).get("candidate") or {}).get("revision", "")


def entries(status: dict[str, Any], reason: str, revision: str | None = None) -> list[dict]:
    return [
        h
        for h in status.get("history") or []
        if h["reason"] == reason and (revision is None or h["revision"] == revision)
    ]


def index_of(status: dict[str, Any], reason: str, revision: str, stage: str | None = None) -> int:
    for index, entry in enumerate(status.get("history") or []):
        same_stage = stage is None or entry.get("stage") == stage
        if entry["reason"] == reason and entry["revision"] == revision and same_stage:
            return index
    raise AssertionError(f"no {reason} entry for {revision} (stage {stage}) in the history")


def deployment(aid: Aid, track: str):
    for item in aid.deployments():
        if item.metadata.name == f"{NAME}-{track}":
            return item
    return None


def template_revision(item) -> str:
    return (item.spec.template.metadata.labels or {}).get(REVISION, "") if item else ""


def in_stages(aid: Aid) -> dict[str, Any]:
    """The status, failing at once (with the reason) if the rollout left its stages."""
    status = aid.status()
    if status.get("phase") not in ("Progressing", "Paused"):
        raise AssertionError(f"the rollout left its stages: {status.get('lastTransition')}")
    return status


def at(text: str) -> datetime:
    moment = parse_rfc3339(text)
    assert moment is not None, f"not an RFC 3339 time: {text!r}"
    return moment


def to_the_second(moment: datetime) -> datetime:
    """Status times have seconds resolution: compare with a moment truncated likewise."""
    return moment.replace(microsecond=0)


# ---- background observers --------------------------------------------------------------------


class StatusStream(Background):
    """Every status the API server stored for the AIDeployment, in order, from a watch."""

    def __init__(self, aid: Aid) -> None:
        super().__init__()
        self.aid = aid
        self.statuses: list[tuple[datetime, dict[str, Any]]] = []
        self.gaps = 0  # watches that had to restart from the current state (410 Gone)

    def _run(self) -> None:
        version = None
        while not self.stopping:
            options: dict[str, Any] = {
                "field_selector": f"metadata.name={self.aid.name}",
                "timeout_seconds": 2,
            }
            if version:
                options["resource_version"] = version
            try:
                for event in watch.Watch().stream(
                    self.aid.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.aid.namespace,
                    PLURAL,
                    **options,
                ):
                    body = event["object"]
                    version = body["metadata"]["resourceVersion"]
                    self.statuses.append((datetime.now(UTC), body.get("status") or {}))
                    if self.stopping:
                        break
            except ApiException as error:
                if error.status != 410:
                    raise
                version, self.gaps = None, self.gaps + 1

    def since(self, moment: datetime) -> list[dict[str, Any]]:
        return [status for seen, status in self.statuses if seen >= moment]


# ---- a. a new revision during a promotion ----------------------------------------------------


def test_a_new_revision_during_promotion_passes_its_own_stages(
    cluster, api_client, namespace, servers
):
    stages = [
        {"name": "canary-10", "weight": 10, "duration": "3s"},
        {"name": "canary-50", "weight": 50, "duration": "3s"},
        {"name": "full", "weight": 100, "duration": "6s"},  # room to suspend controllers
    ]
    aid, v1 = stable_v1(cluster, api_client, namespace, stages=stages)
    v2 = roll_out(aid, spec_of(cluster, "2.5.0", stages=stages))
    spec3 = spec_of(cluster, "2.6.0", stages=stages)
    v3 = revision_of(spec3)

    def v3_on_stable() -> tuple[bool, bool]:
        """(a v3 pod or template on the stable track, v3's last stage passed), read in this
        order: the operator records a passed stage before it changes any Deployment, so a
        v3 pod seen first implies the record is there when the status is read after."""
        pods = aid.pods("stable")
        stable = deployment(aid, "stable")
        on_stable = template_revision(stable) == short(v3) or any(
            p.metadata.labels.get(REVISION) == short(v3) for p in pods
        )
        passed = any(h.get("stage") == "full" for h in entries(aid.status(), "StagePassed", v3))
        return on_stable, passed

    wait_for(
        lambda: (
            aid.status().get("stage") == "full"
            and candidate_of(aid.status()) == v2
            and rollout_of(aid.status()).get("readySince")
        ),
        timeout=TIMEOUT,
        what="v2's last stage under analysis",
    )
    with Sampler(v3_on_stable) as sampler:
        # Suspended from the last stage on, the controller-manager cannot roll the stable
        # Deployment: the promotion is caught in the middle, however fast it would be.
        with cluster.pause_controllers():
            stable = wait_for(
                lambda: (
                    aid.phase() == "Promoting"
                    and template_revision(d := deployment(aid, "stable")) == short(v2)
                    and d
                ),
                timeout=TIMEOUT,
                what="v2 Promoting, its template asked for on stable",
            )
            # asked for, not rolled: the Deployment controller has not seen the new template
            assert (stable.status.observed_generation or 0) < stable.metadata.generation
            assert {p.metadata.labels[REVISION] for p in aid.pods("stable")} == {short(v1)}
            status = aid.status()
            assert status["serving"]["revision"] == v1 and candidate_of(status) == v2
            assert aid.condition("Reconciling")["reason"] == "Promoting"

            # GitOps-style: v3's spec and its approval in one patch, while v2 is promoted.
            aid.patch({"metadata": {"annotations": approvals(v3)}, "spec": spec3})
            wait_for(
                lambda: aid.status().get("revision") == v3,
                timeout=TIMEOUT,
                what="the operator read v3's spec",
            )
            holds_for(
                lambda: (
                    aid.phase() == "Promoting"
                    and candidate_of(aid.status()) == v2
                    and template_revision(deployment(aid, "stable")) == short(v2)
                    and template_revision(deployment(aid, "canary")) == short(v2)
                ),
                duration=3,
                what="v2's promotion goes on with v2's template while v3 waits",
            )
        wait_for(
            lambda: aid.phase() == "Stable" and aid.status()["serving"]["revision"] == v3,
            timeout=TIMEOUT,
            what="v3 Stable after its own stages",
        )
        wait_for(
            lambda: len(aid.ready_pods("stable")) == 4,
            timeout=TIMEOUT,
            what="v3 at full strength on stable",
        )
    assert sampler.samples.count((True, False)) == 0, "a v3 pod ran on stable before its stages"
    assert (False, False) in sampler.samples and (True, True) in sampler.samples

    status = aid.status()
    promoted_v2 = index_of(status, "Promoted", v2)
    started_v3 = index_of(status, "RolloutStarted", v3)
    assert promoted_v2 < started_v3
    assert len(entries(status, "RolloutStarted", v3)) == 1
    passed = [h["stage"] for h in entries(status, "StagePassed", v3)]
    assert passed == ["canary-10", "canary-50", "full"]
    assert started_v3 < index_of(status, "StagePassed", v3, "canary-10")
    assert index_of(status, "StagePassed", v3, "full") < index_of(status, "Promoted", v3)
    assert not entries(status, "CanarySuperseded")
    assert all(h["toPhase"] != "RollingBack" for h in status["history"])
    assert all(p.metadata.labels[REVISION] == short(v3) for p in aid.ready_pods("stable"))
    wait_for(lambda: not aid.pods("canary"), timeout=TIMEOUT, what="canary pods gone")


# ---- b. scaling and a lost pod during a long stage ---------------------------------------------


def test_b_scaling_during_a_long_stage_does_not_trip_the_progress_deadline(
    cluster, api_client, namespace, servers
):
    deadline = 15
    stages = [
        {"name": "long", "weight": 50, "duration": "45s"},
        {"name": "full", "weight": 100, "duration": "2s"},
    ]
    kwargs = {"stages": stages, "progress_deadline": f"{deadline}s"}
    aid, _ = stable_v1(cluster, api_client, namespace, **kwargs)
    with StatusStream(aid) as stream:
        v2 = roll_out(aid, spec_of(cluster, "2.5.0", **kwargs))
        ready_since = wait_for(
            lambda: candidate_of(aid.status()) == v2 and rollout_of(aid.status()).get("readySince"),
            timeout=TIMEOUT,
            what="the long stage's canary Ready",
        )
        assert rollout_of(aid.status())["canaryReplicas"] == 2
        # Past progressDeadline into the stage, scale: the canary is asked for a new size.
        wait_for(
            lambda: datetime.now(UTC) > at(ready_since) + timedelta(seconds=deadline + 3),
            timeout=TIMEOUT,
            what="the stage running longer than progressDeadline",
        )
        assert aid.status()["stage"] == "long" and aid.phase() == "Progressing"
        scaled_at = datetime.now(UTC)
        aid.patch({"spec": {"replicas": 6}})
        wait_for(
            lambda: (
                rollout_of(in_stages(aid)).get("readySince")
                and deployment(aid, "canary").spec.replicas == 3
                and len(aid.ready_pods("canary")) == 3
            ),
            timeout=TIMEOUT,
            what="the canary resized to 3 and Ready",
        )
        assert aid.status()["revision"] == v2  # scaling makes no new revision

        # Late in the stage, and again past progressDeadline after the resize, one canary
        # pod is deleted. kwok is suspended until the operator has seen the canary short of
        # a Ready pod, so the loss cannot slip between two looks.
        wait_for(
            lambda: datetime.now(UTC) > scaled_at + timedelta(seconds=deadline + 2),
            timeout=TIMEOUT,
            what="past progressDeadline after the resize",
        )
        assert aid.status()["stage"] == "long" and aid.phase() == "Progressing"
        victim = aid.ready_pods("canary")[0].metadata.name
        with cluster.paused("kwok"):
            deleted_at = datetime.now(UTC)
            aid.core.delete_namespaced_pod(victim, namespace)
            wait_for(
                lambda: not rollout_of(in_stages(aid)).get("readySince"),
                timeout=TIMEOUT,
                what="the operator sees the canary short of a Ready pod",
            )
        wait_for(
            lambda: (
                len(aid.ready_pods("canary")) == 3
                and victim not in {p.metadata.name for p in aid.pods("canary")}
            ),
            timeout=TIMEOUT,
            what="the ReplicaSet's replacement pod Ready",
        )
        wait_for(
            lambda: entries(aid.status(), "StagePassed", v2),
            timeout=TIMEOUT,
            what="the long stage passed",
        )
        wait_for(
            lambda: aid.phase() == "Stable" and aid.status()["serving"]["revision"] == v2,
            timeout=TIMEOUT,
            what="v2 Stable",
        )
    assert stream.gaps == 0
    stage_statuses = [s for s in stream.since(scaled_at) if rollout_of(s).get("stage") == "long"]
    # The resize: the first status asking for 3 canary replicas restarted the clock.
    resized = next(s for s in stage_statuses if rollout_of(s).get("canaryReplicas") == 3)
    assert rollout_of(resized)["waitingSince"], "waitingSince not set when the canary grew"
    assert at(rollout_of(resized)["waitingSince"]) >= to_the_second(scaled_at)
    # The lost pod: the first status after it without readySince restarted the clock too,
    # and the time run so far was kept.
    after_delete = [s for s in stream.since(deleted_at) if rollout_of(s).get("stage") == "long"]
    lost = next(s for s in after_delete if not rollout_of(s).get("readySince"))
    assert at(rollout_of(lost)["waitingSince"]) >= to_the_second(deleted_at)
    assert rollout_of(lost)["elapsedSeconds"] >= deadline + 3
    phases = {s.get("phase") for _, s in stream.statuses}
    assert "RollingBack" not in phases and "RolledBack" not in phases
    reasons = {c.get("reason") for _, s in stream.statuses for c in s.get("conditions") or []}
    assert "ProgressDeadlineExceeded" not in reasons
    status = aid.status()
    assert not entries(status, "ProgressDeadlineExceeded")
    assert not aid.event_messages("ProgressDeadlineExceeded")
    assert [h["stage"] for h in entries(status, "StagePassed", v2)] == ["long", "full"]
    assert len(aid.ready_pods("stable")) == 6


# ---- d. the stable Deployment deleted during a canary ------------------------------------------


def test_d_stable_deleted_mid_canary_is_recreated_and_canary_not_promoted_meanwhile(
    cluster, api_client, namespace, servers
):
    stages = [
        {"name": "canary-10", "weight": 10, "duration": "6s"},  # room to delete stable in
        {"name": "canary-50", "weight": 50, "duration": "3s"},
        {"name": "full", "weight": 100, "duration": "2s"},
    ]
    aid, v1 = stable_v1(cluster, api_client, namespace, stages=stages)
    v2 = roll_out(aid, spec_of(cluster, "2.5.0", stages=stages))
    wait_for(
        lambda: (
            aid.status().get("stage") == "canary-10"
            and candidate_of(aid.status()) == v2
            and rollout_of(aid.status()).get("readySince")
        ),
        timeout=TIMEOUT,
        what="canary-10 under analysis",
    )
    old_uid = deployment(aid, "stable").metadata.uid

    def look() -> tuple[str, str, int]:
        """(phase, the stable Deployment's uid or "", its Ready replicas)."""
        stable = deployment(aid, "stable")
        if stable is None:
            return aid.phase(), "", 0
        return aid.phase(), stable.metadata.uid, stable.status.ready_replicas or 0

    with Sampler(look) as sampler:
        # With the controller-manager suspended, the recreated Deployment gets no pods: the
        # serving version stays short of full strength for longer than the stage lasts.
        with cluster.pause_controllers():
            deleted_at = datetime.now(UTC)
            cluster.kubectl("delete", "deployment", f"{NAME}-stable", "-n", namespace)
            recreated = wait_for(
                lambda: (
                    (d := deployment(aid, "stable")) is not None and d.metadata.uid != old_uid and d
                ),
                timeout=TIMEOUT,
                what="the stable Deployment recreated",
            )
            assert template_revision(recreated) == short(v1)
            assert recreated.metadata.annotations[REVISION] == v1
            assert recreated.spec.template.spec.containers[0].image == image_for("2.4.0")
            assert recreated.spec.replicas == 4
            holds_for(
                lambda: (
                    aid.phase() == "Progressing"
                    and aid.status()["stage"] == "canary-10"
                    and not entries(aid.status(), "StagePassed", v2)
                    and aid.condition("Reconciling").get("reason") == "StableRecovering"
                ),
                duration=10,  # longer than all of canary-10
                what="canary-10 held while stable is not at full strength",
            )
        new_uid = recreated.metadata.uid

        def pods_of_recreated() -> list:
            replica_sets = {
                rs.metadata.name
                for rs in aid.apps.list_namespaced_replica_set(namespace).items
                if any(ref.uid == new_uid for ref in rs.metadata.owner_references or [])
            }
            return [
                p
                for p in aid.ready_pods("stable")
                if any(ref.name in replica_sets for ref in p.metadata.owner_references or [])
            ]

        wait_for(
            lambda: (
                len(pods := pods_of_recreated()) == 4
                and all(p.metadata.labels[REVISION] == short(v1) for p in pods)
            ),
            timeout=TIMEOUT,
            what="4 Ready v1 pods of the recreated stable Deployment",
        )
        wait_for(
            lambda: aid.phase() == "Stable" and aid.status()["serving"]["revision"] == v2,
            timeout=TIMEOUT,
            what="the rollout went on to v2 Stable",
        )

    status = aid.status()
    recreations = entries(status, "StableRecreated")
    assert len(recreations) == 1
    assert recreations[0]["revision"] == v1
    assert at(recreations[0]["time"]) >= to_the_second(deleted_at)
    assert index_of(status, "StableRecreated", v1) < index_of(
        status, "StagePassed", v2, "canary-10"
    )
    assert [h["stage"] for h in entries(status, "StagePassed", v2)] == [
        "canary-10",
        "canary-50",
        "full",
    ]
    # From the deletion until the recreated Deployment served at full strength: still in
    # the canary stage, never promoting.
    samples = sampler.samples
    gone = next(i for i, (_, uid, _) in enumerate(samples) if uid != old_uid)
    back = next(
        i for i, (_, uid, ready) in enumerate(samples) if i > gone and uid == new_uid and ready == 4
    )
    assert back - gone > 10  # sampled along the 10 s held
    during = {phase for phase, _, _ in samples[gone:back]}
    assert during <= {"Progressing", "Paused"}, during
    assert all(h["toPhase"] != "RollingBack" for h in status["history"])


# ---- e. promote requests count for their rollout and stage -------------------------------------


def test_e_promote_counts_only_for_its_rollout_and_stage(cluster, api_client, namespace, servers):
    def stages(first: str) -> list[dict[str, Any]]:
        return [
            {"name": "canary-10", "weight": 10, "duration": first},
            {"name": "canary-50", "weight": 50, "duration": "3s", "manualPromotion": True},
            {"name": "full", "weight": 100, "duration": "2s"},
        ]

    aid, _ = stable_v1(cluster, api_client, namespace, stages=stages("3s"))

    # v2: a promote for canary-50 written during canary-10 waits, and is used at canary-50.
    v2 = roll_out(aid, spec_of(cluster, "2.5.0", stages=stages("10s")))
    wait_for(
        lambda: aid.status().get("stage") == "canary-10" and candidate_of(aid.status()) == v2,
        timeout=TIMEOUT,
        what="v2 in canary-10",
    )
    early = f"canary-50@{v2} by=approver reviewed the dashboards"
    aid.annotate({"aigate.dev/promote": early})
    holds_for(
        lambda: (
            aid.status()["stage"] == "canary-10"
            and value_digest("promote", early) not in aid.status().get("handledRequests", [])
        ),
        duration=3,
        what="the early promote waiting during canary-10",
    )
    wait_for(
        lambda: aid.phase() == "Stable" and aid.status()["serving"]["revision"] == v2,
        timeout=TIMEOUT,
        what="v2 Stable without stopping at canary-50",
    )
    status = aid.status()
    promote = status["requests"]["promote"]
    assert promote["value"] == early
    assert promote["outcome"] == f"promoting past stage canary-50 of revision {v2}"
    used = [h for h in entries(status, "RequestHandled", v2) if early in h["message"]]
    assert len(used) == 1 and used[0]["stage"] == "canary-50"
    assert not [h for h in entries(status, "AwaitingPromotion", v2)]
    assert [h["stage"] for h in entries(status, "StagePassed", v2)] == [
        "canary-10",
        "canary-50",
        "full",
    ]

    # v3: the old value is handled: v3 waits at canary-50 for a request of its own.
    v3 = roll_out(aid, spec_of(cluster, "2.6.0", stages=stages("3s")))
    wait_for(
        lambda: aid.phase() == "Paused" and candidate_of(aid.status()) == v3,
        timeout=TIMEOUT,
        what="v3 waiting at canary-50",
    )
    assert aid.status()["stage"] == "canary-50"
    assert aid.status()["lastTransition"]["reason"] == "AwaitingPromotion"
    assert value_digest("promote", early) in aid.status()["handledRequests"]
    assert aid.get()["metadata"]["annotations"]["aigate.dev/promote"] == early  # still there
    holds_for(
        lambda: (
            aid.phase() == "Paused"
            and aid.status()["stage"] == "canary-50"
            and aid.status()["requests"]["promote"]["value"] == early
        ),
        duration=4,
        what="v3 not promoted by v2's request",
    )
    for_v3 = f"canary-50@{v3} by=approver second look"
    aid.annotate({"aigate.dev/promote": for_v3})
    wait_for(
        lambda: aid.phase() == "Stable" and aid.status()["serving"]["revision"] == v3,
        timeout=TIMEOUT,
        what="v3 Stable after its own promote",
    )
    assert aid.status()["requests"]["promote"]["value"] == for_v3

    # v4 (v3 has passed canary-50): a promote written for it, then an abort before canary-50:
    # the promote was never used and is recorded as expired.
    v4 = roll_out(aid, spec_of(cluster, "2.7.0", stages=stages("30s")))
    wait_for(
        lambda: (
            aid.status().get("stage") == "canary-10"
            and candidate_of(aid.status()) == v4
            and rollout_of(aid.status()).get("readySince")
        ),
        timeout=TIMEOUT,
        what="v4 in canary-10",
    )
    unused = f"canary-50@{v4} by=approver pre-approved"
    aid.annotate({"aigate.dev/promote": unused})
    holds_for(
        lambda: (
            aid.status()["stage"] == "canary-10"
            and aid.status()["requests"]["promote"]["value"] == for_v3
        ),
        duration=2,
        what="v4's promote waiting during canary-10",
    )
    aid.annotate({"aigate.dev/abort": f"@{v4} by=sre stop-v4"})
    wait_for(lambda: aid.phase() == "RolledBack", timeout=TIMEOUT, what="v4 RolledBack")
    status = aid.status()
    promote = status["requests"]["promote"]
    assert promote["value"] == unused
    assert promote["outcome"].startswith("expired"), promote
    assert v4 in promote["outcome"]
    expired = [h for h in entries(status, "RequestHandled") if unused in h["message"]]
    assert len(expired) == 1 and "expired" in expired[0]["message"]
    assert status["requests"]["abort"]["value"] == f"@{v4} by=sre stop-v4"
    assert value_digest("promote", unused) in status["handledRequests"]
    assert not [h for h in entries(status, "StagePassed", v4) if h["stage"] == "canary-50"]
    assert status["serving"]["revision"] == v3 and status["rolledBackRevisions"] == [v4]


# ---- k. kubectl describe after a rollback -----------------------------------------------------


def described_conditions(text: str) -> dict[str, dict[str, str]]:
    """status.conditions as `kubectl describe` prints them ("  Conditions:" right under
    "Status:", one "Key:  value" line per field, a repeated key starting the next), by type."""
    lines = text.splitlines()
    status = lines.index("Status:")
    start = lines.index("  Conditions:", status)
    conditions: list[dict[str, str]] = [{}]
    for line in lines[start + 1 :]:
        if not line.startswith("    ") or line.startswith("     "):
            break  # the next field of status (nothing under a condition is nested)
        key, _, value = line.strip().partition(":")
        if key in conditions[-1]:
            conditions.append({})
        conditions[-1][key] = value.strip()
    return {c.get("Type", ""): c for c in conditions}


def test_k_describe_says_why_after_a_rollback(cluster, api_client, namespace, servers):
    aid, v1 = stable_v1(cluster, api_client, namespace)
    servers.set("canary", error=0.2)
    v2 = roll_out(aid, spec_of(cluster, "2.5.0"))
    wait_for(lambda: aid.phase() == "RolledBack", timeout=TIMEOUT, what="v2 RolledBack")

    described = cluster.kubectl("describe", "aid", NAME, "-n", namespace)
    conditions = described_conditions(described)
    assert set(conditions) == {"Authorized", "Ready", "Reconciling", "Stalled"}, described
    for kind in ("Ready", "Stalled"):
        message = conditions[kind]["Message"]
        for text in (v2, "error-rate", "0.2", "<= 0.01"):
            assert text in message, f"{kind} condition message lacks {text!r}: {message}"
    assert conditions["Ready"]["Status"] == "False" and conditions["Stalled"]["Status"] == "True"
    assert conditions["Stalled"]["Reason"] == "RolledBack"

    completed = entries(aid.status(), "RollbackCompleted")
    assert len(completed) == 1 and completed[0]["revision"] == v2

    # The spec moves on to an unapproved v3: the record still names the revision rolled back.
    v3 = revision_of(spec_of(cluster, "2.6.0"))
    aid.patch({"spec": spec_of(cluster, "2.6.0")})
    wait_for(
        lambda: aid.phase() == "AwaitingApproval" and aid.status().get("revision") == v3,
        timeout=TIMEOUT,
        what="v3 awaiting approval",
    )
    status = aid.status()
    completed = entries(status, "RollbackCompleted")
    assert len(completed) == 1 and completed[0]["revision"] == v2 != v3
    assert status["lastRollback"]["revision"] == v2
    assert status["lastRollback"]["toRevision"] == v1
    assert status["serving"]["revision"] == v1
