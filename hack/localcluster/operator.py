"""The aigate operator as a child process (`aigate run`), for tests, the demo and benchmarks.

It runs exactly as a user runs it: a separate process with a kubeconfig, its JSON log in a
file. Tests may SIGKILL it and start it again (the log is appended)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from localcluster.processes import Process, free_port, http_ok

# Where `aigate run` keeps its AIRecords and signing key by default outside a cluster (the
# chart's release namespace in the demo and the chart tests).
RECORDS_NAMESPACE = "aigate-system"


def ensure_namespace(kubeconfig: str, name: str) -> None:
    """Creates the records namespace when this identity may (an admin kubeconfig); with a
    restricted identity (the chart's ServiceAccount) helm made it already."""
    api = config.new_client_from_config(config_file=kubeconfig)
    try:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    except ApiException as error:
        if error.status not in (403, 409):
            raise
    finally:
        api.close()


class OperatorProcess:
    def __init__(self, kubeconfig: str | Path, log_path: Path, *extra_args: str) -> None:
        self.kubeconfig = str(kubeconfig)
        self.log_path = log_path
        self.extra_args = extra_args
        self.health_port = free_port()
        # Metrics on loopback, so tests can read what the operator exports.
        self.metrics_port = free_port()
        self.process: Process | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, timeout: float = 60) -> OperatorProcess:
        ensure_namespace(self.kubeconfig, RECORDS_NAMESPACE)
        self.process = Process(
            "aigate-operator",
            [
                sys.executable,
                "-m",
                "aigate.cli",
                "run",
                f"--metrics-port={self.metrics_port}",
                f"--health-port={self.health_port}",
                "--bind-address=127.0.0.1",
                *self.extra_args,
            ],
            self.log_path,
            dict(os.environ, KUBECONFIG=self.kubeconfig),
        )
        self.process.start()
        self.process.wait_ready(
            lambda: http_ok(f"http://127.0.0.1:{self.health_port}/healthz"), timeout, "healthy"
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye, as when a node dies."""
        assert self.process is not None and self.process.popen is not None
        self.process.popen.kill()
        self.process.popen.wait(30)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines) if self.process else "(not started)"
