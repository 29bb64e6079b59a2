"""The history's hash chain: intact after a real rollout, broken by any edit."""

from __future__ import annotations

from datetime import timedelta

from aigate.api.v1alpha1 import HistoryEntry
from aigate.core import records, rollout
from support.sim import serving, upgrade


def rolled_out_history() -> list[HistoryEntry]:
    world = serving()
    v2 = upgrade(world)
    world.run_until(
        lambda w: w.status.phase == "Stable" and w.stable.revision == v2,
        advance=timedelta(seconds=10),
    )
    return world.status.history


def test_a_rollouts_history_is_an_intact_chain():
    history = rolled_out_history()
    assert len(history) > 8
    assert history[0].previous_digest == records.GENESIS
    assert records.verify(history).intact


def test_editing_an_entry_is_detected():
    history = rolled_out_history()
    history[3] = history[3].model_copy(update={"message": "nothing to see here"})
    check = records.verify(history)
    assert not check.intact and "entry 3" in check.problems[0] and "altered" in check.problems[0]


def test_altering_evidence_is_detected():
    history = rolled_out_history()
    index = next(i for i, e in enumerate(history) if e.evidence)
    evidence = [e.model_copy(update={"value": "0.0001"}) for e in history[index].evidence]
    history[index] = history[index].model_copy(update={"evidence": evidence})
    assert not records.verify(history).intact


def test_removing_or_reordering_entries_is_detected():
    history = rolled_out_history()
    assert "removed, inserted or reordered" in records.verify(history[:2] + history[3:]).problems[0]
    swapped = [history[0], history[2], history[1], *history[3:]]
    assert not records.verify(swapped).intact


def test_the_chain_survives_the_history_bound():
    history = rolled_out_history()
    kept = history[4:]  # what status holds after older entries fell off
    assert kept[0].previous_digest == history[3].digest
    assert records.verify(kept).intact


def test_an_entry_without_digest_is_reported():
    history = rolled_out_history()
    history.append(HistoryEntry(time="t", reason="Forged"))
    assert "has no digest" in records.verify(history).problems[-1]


def test_decisions_report_the_entries_they_add():
    world = serving()
    upgrade(world)
    decision = world.step()
    assert list(decision.new_history) == world.status.history[-len(decision.new_history) :]
    assert isinstance(decision, rollout.Decision)
