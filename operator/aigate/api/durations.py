"""Go-style durations as Kubernetes users write them: "30s", "10m", "1h30m", "168h"."""

from __future__ import annotations

import re
from datetime import timedelta

# Used verbatim as the CRD's pattern, so the API server rejects a bad duration on apply.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Longer than any bound the CRD allows: a duration past it cannot overflow date arithmetic.
MAX_DURATION = timedelta(days=3650)


def parse_duration(text: str) -> timedelta:
    """Parses a duration; raises ValueError naming what was found."""
    if not isinstance(text, str) or not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"expected a duration such as 30s, 10m or 1h30m, found {text!r}")
    seconds = sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _PART.findall(text))
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {text!r} is longer than {MAX_DURATION.days} days")
    return timedelta(seconds=seconds)


def check_bounds(text: str, minimum: str, maximum: str) -> str:
    """`text` if it lies within [minimum, maximum]; ValueError saying what was expected."""
    value = parse_duration(text)
    if not parse_duration(minimum) <= value <= parse_duration(maximum):
        raise ValueError(f"expected a duration from {minimum} to {maximum}, found {text!r}")
    return text


def cel_bounds(field: str, minimum: str, maximum: str) -> dict[str, str]:
    """The same bounds as a CEL rule, so the API server refuses what check_bounds would."""
    return {
        "rule": f"!has(self.{field}) || (duration(self.{field}) >= duration('{minimum}') && "
        f"duration(self.{field}) <= duration('{maximum}'))",
        "message": f"{field} must be a duration from {minimum} to {maximum}",
        "fieldPath": f".{field}",
    }


def format_duration(delta: timedelta) -> str:
    """The shortest exact rendering: 90s -> "1m30s"."""
    total = int(delta.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{seconds}s" if seconds or total == 0 else "",
    ]
    return "".join(parts)
