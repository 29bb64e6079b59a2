"""Observers that run beside a test: a loop in a daemon thread for a `with` block."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Self

from kubernetes.client.exceptions import ApiException


class Background:
    """Runs `_run` in a daemon thread from `with` entry until exit; `_run` loops while
    `stopping` is False."""

    JOIN_TIMEOUT = 10.0  # seconds the `with` exit waits for the loop to notice

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.JOIN_TIMEOUT)


class Sampler(Background):
    """Calls probe every 0.2 s in the background and keeps what it returns."""

    def __init__(self, probe: Callable[[], Any]) -> None:
        super().__init__()
        self.probe = probe
        self.samples: list[Any] = []
        self.error: BaseException | None = None

    def _run(self) -> None:
        while not self.stopping:
            try:
                self.samples.append(self.probe())
            except ApiException as error:  # a slow API server: note it, keep sampling
                self.error = error
            time.sleep(0.2)
