"""Tamper-evident history: every entry carries the SHA-256 of its content chained to the
previous entry's digest.

Editing, removing or reordering an entry in status breaks the chain, which `kubectl aigate
verify` reports. The operator also logs each new digest (logger aigate.audit), so an
auditor can compare the chain in the cluster with the one in the log store: rewriting both
consistently needs write access to both. The chain survives the history's size bound: the
oldest kept entry still names the digest of the one before it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from aigate.api.v1alpha1 import HistoryEntry

GENESIS = "0" * 64
_EXCLUDED = {"digest", "previous_digest"}


def entry_digest(entry: HistoryEntry, previous_digest: str) -> str:
    content = entry.model_dump(mode="json", by_alias=True, exclude=_EXCLUDED)
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{previous_digest}\n{canonical}".encode()).hexdigest()


def seal(entry: HistoryEntry, history: Sequence[HistoryEntry]) -> HistoryEntry:
    """The entry with its place in the chain after `history`."""
    previous = history[-1].digest if history and history[-1].digest else GENESIS
    return entry.model_copy(
        update={"previous_digest": previous, "digest": entry_digest(entry, previous)}
    )


@dataclass(frozen=True)
class ChainCheck:
    intact: bool
    problems: tuple[str, ...]


def verify(history: Sequence[HistoryEntry]) -> ChainCheck:
    problems: list[str] = []
    for index, entry in enumerate(history):
        if not entry.digest:
            problems.append(f"entry {index} ({entry.time} {entry.reason}) has no digest")
            continue
        if index > 0 and entry.previous_digest != history[index - 1].digest:
            problems.append(
                f"entry {index} ({entry.time} {entry.reason}) does not follow entry {index - 1}: "
                f"an entry was removed, inserted or reordered"
            )
        if entry_digest(entry, entry.previous_digest) != entry.digest:
            problems.append(
                f"entry {index} ({entry.time} {entry.reason}) was altered after it was recorded"
            )
    return ChainCheck(intact=not problems, problems=tuple(problems))
