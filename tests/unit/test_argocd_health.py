"""The Argo CD health script, run by a real Lua 5.1 interpreter against the committed
testdata (health_test.yaml, Argo CD's own test layout) and against the contract table."""

from __future__ import annotations

import pytest
import yaml
from lupa import lua51

from support.argocd import (
    CUSTOMIZATION,
    HEALTH_LUA,
    PHASE_HEALTH,
    evaluate,
    expected_message,
    load_tests,
)

TESTS = load_tests()


@pytest.mark.parametrize("case", TESTS, ids=[t["inputPath"] for t in TESTS])
def test_health_test_yaml_cases(case):
    obj = yaml.safe_load((CUSTOMIZATION / case["inputPath"]).read_text())
    health = evaluate(obj)
    assert health.status == case["healthStatus"]["status"]
    assert health.message == case["healthStatus"]["message"]


def test_every_testdata_file_is_covered_and_every_phase_tested():
    listed = {t["inputPath"] for t in TESTS}
    on_disk = {f"testdata/{p.name}" for p in (CUSTOMIZATION / "testdata").glob("*.yaml")}
    assert listed == on_disk
    phases = set()
    for path in on_disk:
        obj = yaml.safe_load((CUSTOMIZATION / path).read_text())
        phases.add((obj.get("status") or {}).get("phase"))
    assert set(PHASE_HEALTH) <= phases


@pytest.mark.parametrize("phase", sorted(PHASE_HEALTH))
@pytest.mark.parametrize("condition", ["Stalled", "Reconciling", "Ready", None])
def test_each_phase_maps_to_its_health_with_the_relevant_message(phase, condition):
    conditions = [
        {"type": t, "status": "True" if t == condition else "False", "message": f"{t} says"}
        for t in ("Ready", "Reconciling", "Stalled")
    ]
    obj = {
        "metadata": {"name": "x", "generation": 7},
        "status": {"observedGeneration": 7, "phase": phase, "conditions": conditions},
    }
    health = evaluate(obj)
    assert health.status == PHASE_HEALTH[phase]
    assert health.message == expected_message(obj) == f"{condition or 'Ready'} says"


def test_an_unobserved_generation_is_progressing_whatever_the_phase():
    obj = {
        "metadata": {"generation": 5},
        "status": {"observedGeneration": 4, "phase": "Stable", "conditions": []},
    }
    assert evaluate(obj).status == "Progressing"
    assert "generation 5 (observed: 4)" in evaluate(obj).message


def test_missing_conditions_still_give_a_message():
    obj = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "phase": "Stable"}}
    assert evaluate(obj).status == "Healthy"
    assert evaluate(obj).message == "phase Stable"


def test_script_uses_no_globals_beyond_obj():
    # Argo CD reuses Lua states between objects; a script that leaks globals is fragile.
    runtime = lua51.LuaRuntime()
    runtime.globals().obj = runtime.table_from(
        {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "phase": "Stable"}},
        recursive=True,
    )
    before = set(runtime.globals().keys())
    runtime.execute(HEALTH_LUA.read_text())
    assert set(runtime.globals().keys()) == before


def test_argocd_cm_snippets_embed_the_same_script():
    import argocd_snippets

    for path, text in argocd_snippets.snippets().items():
        assert path.read_text() == text, f"{path} is stale: python hack/argocd_snippets.py"
    (configmap,) = [
        yaml.safe_load(p.read_text())
        for p in argocd_snippets.snippets()
        if p.name == "argocd-cm.yaml"
    ]
    assert configmap["data"][argocd_snippets.KEY] == HEALTH_LUA.read_text()
