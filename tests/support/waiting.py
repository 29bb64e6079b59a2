"""Wait on conditions with a timeout, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
) -> T:
    """Calls probe until it returns something truthy and returns that; on timeout fails
    the test with the last value seen, so the failure says what the state was."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}"
            )
        time.sleep(interval)


def holds_for(
    probe: Callable[[], T],
    *,
    duration: float,
    what: str,
    interval: float = 0.5,
) -> None:
    """Asserts that probe stays truthy for the whole duration (checked repeatedly)."""
    deadline = time.monotonic() + duration
    checks = 0
    while True:
        value = probe()
        checks += 1
        if not value:
            raise AssertionError(f"{what} stopped holding after {checks} checks: {value!r}")
        if time.monotonic() > deadline:
            return
        time.sleep(interval)
