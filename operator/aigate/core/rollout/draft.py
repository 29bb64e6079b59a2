"""The decision being built: the next status, actions, Events, history and requeue.

Phase changes go through goto(), which checks the transition table, records the change in
status.lastTransition and the history, announces it as an Event and drops the actions the
previous phase had planned (the new phase decides its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from aigate.api.durations import parse_duration
from aigate.api.records import RecordedRequest, RecordSubject
from aigate.api.v1alpha1 import HistoryEntry, MeasurementRecord, Phase, Transition
from aigate.core import conditions as cond
from aigate.core.gate import format_rfc3339, parse_rfc3339
from aigate.core.requests import Kind, Request, handled, remember
from aigate.core.rollout import table
from aigate.core.rollout.ledger import Ledger
from aigate.core.rollout.model import (
    REQUEUE_AT_REST,
    REQUEUE_NOW,
    Action,
    Decision,
    Event,
)
from aigate.core.rollout.situation import Situation
from aigate.core.traffic import RouteIntent

MAX_RECENT_MEASUREMENTS = 12  # the last few intervals (the records hold them all)
EventType = Literal["Normal", "Warning"]


class Draft:
    def __init__(self, situation: Situation) -> None:
        self.sit = situation
        self.inputs = situation.inputs
        self.spec = situation.spec
        self.now = self.inputs.now
        self.now_iso = format_rfc3339(self.now)
        self.status = self.inputs.status.model_copy(deep=True)
        self.status.observed_generation = self.inputs.generation
        if situation.revision:
            self.status.revision = situation.revision
        self.actions: list[Action] = []
        self.events: list[Event] = []
        self.requeue = REQUEUE_AT_REST
        self.moved = False
        self.new_measurements: list[MeasurementRecord] = []
        self.route: RouteIntent | None = None
        inputs = self.inputs
        self.ledger = Ledger(
            self.status,
            RecordSubject(namespace=inputs.namespace, name=inputs.name, uid=inputs.uid),
            self.now_iso,
            format_rfc3339(self.now + inputs.record_retention),
        )

    # ---- facts ---------------------------------------------------------------------------

    @property
    def replicas(self) -> int:
        """spec.replicas; with an unusable spec, what stable runs, or the last spec.replicas
        recorded (never a guess of 0)."""
        if self.spec is not None:
            return self.spec.replicas
        stable = self.sit.stable
        if stable is not None and stable.replicas > 0:
            return stable.replicas
        return self.status.replicas or 1

    def authorised(self) -> bool:
        """The spec's revision may be deployed: its gate is open, its approval was recorded,
        or it is the revision serving (which was approved when it was deployed). While the
        approval policy does not enforce, a recorded approval does not start a rollout
        (docs/decisions/0009-fail-closed-without-policy.md)."""
        s, revision = self.status, self.sit.revision
        if not revision:
            return False
        return (
            (self.sit.gate is not None and self.sit.gate.is_open)
            or (s.serving is not None and s.serving.revision == revision)
            or (s.rollout is not None and s.rollout.candidate.revision == revision)
            or (not self.inputs.policy_problem and self._recorded_approval_valid(revision))
        )

    def _recorded_approval_valid(self, revision: str) -> bool:
        """A recorded approval of `revision` within approvalTTL: an approval recorded while
        its revision had to wait (a watch, a rollback) is not used after it expired."""
        record, spec = self.status.approval, self.spec
        if record is None or record.revision != revision or spec is None:
            return False
        approved_at = parse_rfc3339(record.approved_at)
        ttl = parse_duration(spec.governance.approval_ttl)
        return approved_at is not None and self.now - approved_at <= ttl

    # ---- phase changes and records -------------------------------------------------------

    def goto(
        self,
        target: Phase,
        reason: str,
        message: str,
        event_type: EventType = "Normal",
        evidence: Sequence[MeasurementRecord] = (),
        subject: tuple[str, str] | None = None,
    ) -> None:
        source = self.status.phase
        table.check(source, target, reason)
        self.ledger.flush(self._entry(source, source, "", "", (), None))
        self.status.phase = target
        self.status.last_transition = Transition(
            from_phase=source, to_phase=target, reason=reason, message=message, time=self.now_iso
        )
        self._history(source, target, reason, message, evidence, subject)
        self.events.append(Event(event_type, reason, message))
        self.actions = []
        self.moved = True

    def arrived(self, target: Phase, reason: str, message: str) -> bool:
        """The last transition already says this: nothing to record again."""
        last = self.status.last_transition
        return (
            self.status.phase == target
            and last is not None
            and (last.to_phase, last.reason, last.message) == (target, reason, message)
        )

    def note(
        self,
        reason: str,
        message: str,
        event_type: EventType = "Normal",
        evidence: Sequence[MeasurementRecord] = (),
        subject: tuple[str, str] | None = None,
        **facts: Any,
    ) -> None:
        """Records a fact (no phase change) in the history and as an Event; `facts` go to
        its record only (record_reason, content, approval, request: aigate.api.records)."""
        phase = self.status.phase
        self._history(phase, phase, reason, message, evidence, subject, **facts)
        self.events.append(Event(event_type, reason, message))

    def pending(self, kind: Kind) -> Request | None:
        """The request of this kind not yet handled (in this decision either)."""
        request = self.sit.requests.get(kind)
        if request is None or request.digest in self.status.handled_requests:
            return None
        if request.malformed():  # e.g. a short revision: recorded, never acted on
            self.handle(request, request.malformed())
            return None
        return request

    def handle(self, request: Request, outcome: str) -> None:
        """Marks a request value handled, forever, and records it with who wrote it."""
        s = self.status
        s.handled_requests = remember(s.handled_requests, request)
        setattr(s.requests, request.kind, handled(request, self.now_iso, outcome))
        by = f" (by {request.by})" if request.by else ""
        recorded = RecordedRequest(
            kind=request.kind, value=request.value, by=request.by, outcome=outcome
        )
        self.note(
            "RequestHandled",
            f"aigate.dev/{request.kind}={request.value!r}{by}: {outcome}",
            request=recorded,
        )

    def subject_of_spec(self) -> tuple[str, str]:
        return self.sit.revision, self.spec.model.version if self.spec else ""

    def subject(self) -> tuple[str, str]:
        """(revision, version) a record is about: the rollback's or the rollout's revision
        while one is in flight, else the spec's."""
        s = self.status
        if s.rollback is not None:
            return s.rollback.revision, s.rollback.version
        if s.rollout is not None:
            return s.rollout.candidate.revision, s.rollout.candidate.version
        return self.subject_of_spec()

    def _history(
        self,
        source: str,
        target: str,
        reason: str,
        message: str,
        evidence: Sequence[MeasurementRecord],
        subject: tuple[str, str] | None,
        **facts: Any,
    ) -> None:
        entry = self._entry(source, target, reason, message, evidence, subject)
        self.ledger.append(entry, **facts)

    def _entry(
        self,
        source: str,
        target: str,
        reason: str,
        message: str,
        evidence: Sequence[MeasurementRecord],
        subject: tuple[str, str] | None,
    ) -> HistoryEntry:
        revision, version = subject or self.subject()
        return HistoryEntry(
            time=self.now_iso,
            from_phase=source,
            to_phase=target,
            revision=revision,
            version=version,
            stage=self._stage(),
            reason=reason,
            message=message,
            evidence=list(evidence),
        )

    def _stage(self) -> str:
        """The stage a record is about: the rollout's current one while stages run."""
        rollout = self.status.rollout
        if rollout is not None and self.status.phase in ("Progressing", "Paused"):
            return rollout.stage
        return ""

    def measured(self, new: Sequence[MeasurementRecord]) -> None:
        self.new_measurements.extend(new)
        phase = self.status.phase
        self.ledger.measured(new, self._entry(phase, phase, "", "", (), None))
        recent = [*self.status.recent_measurements, *new]  # at least the latest interval
        self.status.recent_measurements = recent[-max(MAX_RECENT_MEASUREMENTS, len(new)) :]

    # ---- kstatus conditions --------------------------------------------------------------

    def _kstatus(self, ready: bool, reconciling: bool, stalled: bool, reason: str, message: str):
        g, now, c = self.inputs.generation, self.now_iso, self.status.conditions
        c = cond.set_condition(c, cond.READY, ready, reason, message, now, g)
        for kind, on in ((cond.RECONCILING, reconciling), (cond.STALLED, stalled)):
            c = cond.set_condition(c, kind, on, reason if on else "", message if on else "", now, g)
        self.status.conditions = c

    def progressing(self, reason: str, message: str) -> None:
        """Working towards the spec (kstatus Reconciling)."""
        self._kstatus(False, True, False, reason, message)

    def stalled(self, reason: str, message: str) -> None:
        """Cannot reach the spec without a change or a person (kstatus Stalled)."""
        self._kstatus(False, False, True, reason, message)

    def available(self, reason: str, message: str) -> None:
        """The spec's revision serves at full strength (kstatus Ready)."""
        self._kstatus(True, False, False, reason, message)

    # ---- output --------------------------------------------------------------------------

    def requeue_within(self, seconds: float) -> None:
        self.requeue = max(REQUEUE_NOW, min(self.requeue, seconds))

    def decision(self) -> Decision:
        return Decision(
            status=self.status,
            actions=tuple(self.actions),
            events=tuple(self.events),
            requeue_after=self.requeue,
            new_measurements=tuple(self.new_measurements),
            new_history=tuple(self.ledger.new_history),
            new_records=tuple(self.ledger.new),
            route=self.route,
        )
