"""Fixtures the end-to-end suites share."""

from __future__ import annotations

import pytest

from support.scenarios import HEALTHY, ModelServers


@pytest.fixture
def servers(cluster, namespace) -> ModelServers:
    """The exporter's model servers for this namespace, both tracks healthy."""
    servers = ModelServers(cluster.info.exporter_url, namespace)
    servers.set("stable", **HEALTHY)
    servers.set("canary", **HEALTHY)
    return servers
