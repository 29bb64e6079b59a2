"""Fixtures for the integration and end-to-end suites: a real control plane, started once
per session when a test first asks for it, and the real operator running against it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def binaries() -> Path:
    """The cached bin directory (helm, promtool, kstatus, ...), built on first use; for
    tests that need the tools but not a running control plane."""
    from localcluster.cluster import ensure_binaries

    return ensure_binaries()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from localcluster import LocalCluster

    with LocalCluster.start(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture(scope="session")
def api_client(cluster):
    from kubernetes import config

    return config.new_client_from_config(config_file=cluster.info.kubeconfig)


@pytest.fixture(scope="session")
def crd_installed(cluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/aideployments.aigate.dev",
        "crd/airecords.aigate.dev",
    )


@pytest.fixture(scope="session")
def gateway_crds(cluster) -> list[str]:
    """The Gateway API (standard channel) and InferencePool CRDs: no gateway controller runs,
    so weights are read back from the HTTPRoute."""
    return cluster.install_gateway_crds()


@pytest.fixture
def namespace(cluster, api_client) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (its objects with it)."""
    from kubernetes import client

    from support.waiting import wait_for

    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name}})
    # Pods are refused until the controller-manager has made the default ServiceAccount.
    wait_for(
        lambda: any(
            sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items
        ),
        timeout=60,
        what=f"default ServiceAccount in {name}",
    )
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def operator(cluster, crd_installed, tmp_path_factory) -> Iterator[object]:
    from localcluster.operator import OperatorProcess

    running = OperatorProcess(
        cluster.info.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log"
    )
    running.start()
    yield running
    running.stop()
    print(f"\noperator log: {running.log_path}")


def load_example(name: str) -> dict:
    return yaml.safe_load((ROOT / "examples" / name).read_text())
