"""Child processes of the local cluster: start, probe until ready, stop; never orphaned."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child before exec: if the process that started us dies (even by SIGKILL),
    # the kernel kills us too, so an interrupted test run leaves no control plane behind.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class StartupError(RuntimeError):
    """A component exited or did not become ready in time; the message has its log tail."""


@dataclass
class Process:
    """One long-running child process with its log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (no threads started yet here)
            )
        finally:
            log.close()

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def suspend(self) -> None:
        """SIGSTOP: the process keeps its state and connections but does nothing."""
        if self.running():
            assert self.popen is not None
            self.popen.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: undoes suspend() (harmless if it is not suspended)."""
        if self.running():
            assert self.popen is not None
            self.popen.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 15.0) -> None:
        if not self.running():
            return
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        self.popen.send_signal(signal.SIGCONT)  # a suspended process handles SIGTERM only then
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout)

    def wait_ready(self, probe: Callable[[], bool], timeout: float, what: str) -> None:
        """Polls probe until it returns True; fails fast, with the log, if the process exits."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            if not self.running():
                code = self.popen.returncode if self.popen else None
                raise StartupError(
                    f"{self.name} exited with code {code} before {what}; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if probe():
                return
            if time.monotonic() > deadline:
                raise StartupError(
                    f"{self.name}: not {what} after {timeout:.0f}s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)


def http_ok(
    url: str,
    *,
    ca_file: Path | None = None,
    token: str | None = None,
    insecure: bool = False,
    body_contains: str | None = None,
) -> bool:
    """True when GET url answers 200 (and, if asked, its body contains a string)."""
    context = None
    if url.startswith("https"):
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            if response.status != 200:
                return False
            return body_contains is None or body_contains in response.read().decode()
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def kill_pids(pids: list[int], timeout: float = 15.0) -> list[int]:
    """SIGTERM then SIGKILL each pid still alive; returns the pids that had to be killed."""
    alive = [pid for pid in pids if _alive(pid)]
    for pid in alive:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in alive):
        time.sleep(0.1)
    killed = [pid for pid in alive if _alive(pid)]
    for pid in killed:
        _signal(pid, signal.SIGKILL)
    return killed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
