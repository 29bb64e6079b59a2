"""The revision digest: what changes it, what does not."""

from __future__ import annotations

import copy
import json

from hypothesis import given
from hypothesis import strategies as st

from aigate.core.revision import (
    REVISION_LENGTH,
    canonical_digest,
    compute_revision,
    short,
    vouched_content,
)
from support.factories import spec_dict, spec_model


def revision_of(raw):
    return compute_revision(spec_model(raw))


def test_revision_is_the_full_sha256_and_stable():
    first = revision_of(spec_dict())
    assert len(first) == REVISION_LENGTH == 64
    int(first, 16)
    assert revision_of(spec_dict()) == first
    assert short(first) == first[:12]


def test_replicas_do_not_change_the_revision_but_governance_does():
    base = revision_of(spec_dict())
    assert revision_of(spec_dict(replicas=40)) == base
    # raising approvalTTL must not revive an expired approval: it is a new revision
    assert revision_of(spec_dict(governance={"approvalTTL": "2000h"})) != base


def test_model_version_changes_the_revision():
    raw = spec_dict()
    raw["model"]["version"] = "2.5.0"
    assert revision_of(raw) != revision_of(spec_dict())


def test_loosening_a_threshold_changes_the_revision():
    raw = spec_dict()
    raw["rollout"]["analysis"]["metrics"][0]["max"] = 0.05
    assert revision_of(raw) != revision_of(spec_dict())


def test_template_service_and_plan_changes_change_the_revision():
    base = revision_of(spec_dict())
    image = spec_dict()
    image["template"]["spec"]["containers"][0]["image"] = "fake-model:2.4.1"
    env = spec_dict()
    env["template"]["spec"]["containers"][0]["env"] = [{"name": "X", "value": "1"}]
    port = spec_dict(service={"port": 9090})
    stages = spec_dict()
    stages["rollout"]["stages"][0]["weight"] = 20
    for changed in (image, env, port, stages):
        assert revision_of(changed) != base


def test_key_order_does_not_matter():
    raw = spec_dict()
    reordered = {key: raw[key] for key in reversed(list(raw))}
    reordered["model"] = dict(reversed(list(raw["model"].items())))
    assert revision_of(reordered) == revision_of(raw)


def test_integer_and_float_thresholds_are_the_same_number():
    as_int = spec_dict()
    as_int["rollout"]["analysis"]["metrics"][0]["max"] = 1
    as_float = copy.deepcopy(as_int)
    as_float["rollout"]["analysis"]["metrics"][0]["max"] = 1.0
    assert revision_of(as_int) == revision_of(as_float)


@given(threshold=st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_every_distinct_threshold_gives_a_distinct_revision(threshold):
    raw = spec_dict()
    raw["rollout"]["analysis"]["metrics"][0]["max"] = threshold
    if threshold != 0.01:
        assert revision_of(raw) != revision_of(spec_dict())


def test_content_read_back_from_the_api_server_hashes_as_written():
    # The model's float 10.0 comes back from the API server as the JSON number 10: an
    # approved content (AIRecord) or a record read back must still hash to what was written.
    raw = spec_dict()
    raw["rollout"]["analysis"]["metrics"] = [{"name": "queue", "query": "q", "max": 10}]
    content = vouched_content(spec_model(raw))
    assert content["rollout"]["analysis"]["metrics"][0]["max"] == 10.0
    read_back = json.loads(json.dumps(content).replace("10.0", "10"))
    assert (
        canonical_digest(read_back)
        == canonical_digest(content)
        == compute_revision(spec_model(raw))
    )
    assert canonical_digest({"x": 0.5}) != canonical_digest({"x": 0})
