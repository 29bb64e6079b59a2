"""The operator reconciles from its watches (issue 10): a reconcile that changes nothing
makes no API request, and the only reads are of names the watches cannot show, just before
aigate writes to them. Counted by the operator itself (aigate_api_requests_total), with an
operator of its own for this namespace so no other test's resources add to the counts."""

from __future__ import annotations

import urllib.request

import pytest

from support.kube import Aid
from support.waiting import wait_for

from .test_rollout_scenarios import TIMEOUT, roll_out, spec_of, stable_v1


@pytest.fixture
def own_operator(cluster, namespace, operator, tmp_path):
    from localcluster.operator import OperatorProcess

    operator.stop()  # one operator at a time for this namespace
    own = OperatorProcess(
        cluster.info.kubeconfig, tmp_path / "operator.log", f"--namespace={namespace}"
    )
    try:
        own.start()
        yield own
    finally:
        own.stop()
        operator.start()


def series(operator, name: str) -> dict[str, float]:
    """Every series of `name`: its label text -> value."""
    text = urllib.request.urlopen(operator.metrics_url, timeout=10).read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) :].rsplit(" ", 1)
            found[labels] = float(value)
    return found


def requests(operator) -> dict[str, float]:
    return series(operator, "aigate_api_requests_total")


def reconciles(operator) -> float:
    return series(operator, "aigate_reconciles_total").get('{result="ok"}', 0.0)


def gets(counts: dict[str, float], resource: str) -> float:
    return counts.get(f'{{resource="{resource}",verb="GET"}}', 0.0)


def settled(status: dict) -> bool:
    """Observed, and nothing left for a later status write: records delivered and the
    children's UIDs recorded (a closing patch may ride with the next status write)."""
    children = status.get("children") or {}
    return (
        status.get("observedGeneration") == 1
        and not (status.get("records") or {}).get("outbox")
        and all((children.get(child) or {}).get("uid") for child in ("stable", "service"))
    )


def promoted_v2(cluster, aid: Aid) -> str:
    """Rolls out version 2.5.0 and waits until it is promoted; its revision."""
    v2 = roll_out(aid, spec_of(cluster, "2.5.0"))
    wait_for(
        lambda: aid.phase() == "Stable" and aid.status().get("stableRevision") == v2,
        timeout=TIMEOUT,
        what="v2 promoted",
    )
    return v2


def test_reconciles_that_change_nothing_make_no_request(
    cluster, api_client, namespace, servers, own_operator
):
    aid, _ = stable_v1(cluster, api_client, namespace)
    wait_for(lambda: settled(aid.status()), timeout=TIMEOUT, what="settled")
    before, rounds = requests(own_operator), reconciles(own_operator)
    for n in range(3):
        # An edit outside the spec: the resource wakes, looks, and finds nothing to do.
        aid.patch({"metadata": {"annotations": {"example.com/note": f"touch {n}"}}})
        wait_for(
            lambda n=n: reconciles(own_operator) >= rounds + n + 1,
            timeout=TIMEOUT,
            what=f"reconcile {n + 1} after the annotation",
        )
    assert requests(own_operator) == before
    assert aid.phase() == "Stable"


def test_a_rollout_reads_only_names_it_is_about_to_create(
    cluster, api_client, namespace, servers, own_operator
):
    """The first version creates the stable Deployment and the Service, the rollout its
    canary: one lookup before each create, and no other read of a child."""
    aid, v1 = stable_v1(cluster, api_client, namespace)
    v2 = promoted_v2(cluster, aid)
    counts = requests(own_operator)
    assert gets(counts, "deployments") == 2, counts  # stable (v1), then the canary (v2)
    assert gets(counts, "services") == 1, counts
    assert gets(counts, "aideployments") == 0, counts
    assert v1 != v2 and isinstance(aid, Aid)


def test_measurements_are_taken_when_due_before_the_round_gets_a_slot(
    cluster, api_client, namespace, servers, own_operator
):
    """Each measurement is taken by the resource's daemon the moment it is due, before its
    round queues for a reconcile slot, and the round decides with it (measured once)."""
    aid, _ = stable_v1(cluster, api_client, namespace)
    promoted_v2(cluster, aid)
    ahead = series(own_operator, "aigate_measurements_taken_ahead_total")
    taken = sum(series(own_operator, "aigate_analysis_measurements_total").values())
    used = ahead.get('{used="true"}', 0.0)
    assert used >= 1, ahead
    assert ahead.get('{used="false"}', 0.0) == 0, ahead  # nothing measured twice
    assert used <= taken, (ahead, taken)
