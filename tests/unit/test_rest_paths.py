"""adapters/rest.py: the paths the operator's plain JSON requests go to (the requests
themselves run against a real API server in the integration and e2e suites)."""

import pytest

from aigate.adapters.kube import _child_path
from aigate.adapters.rest import object_path


@pytest.mark.parametrize(
    ("args", "path"),
    [
        (("v1", "secrets", "ops", "key"), "/api/v1/namespaces/ops/secrets/key"),
        (("v1", "services", "team-a"), "/api/v1/namespaces/team-a/services"),
        (
            ("apps/v1", "deployments", "a", "m-stable"),
            "/apis/apps/v1/namespaces/a/deployments/m-stable",
        ),
        (("v1", "namespaces", None, "team-a"), "/api/v1/namespaces/team-a"),
        (("v1", "configmaps", "ns", "a b?c#d"), "/api/v1/namespaces/ns/configmaps/a%20b%3Fc%23d"),
        (("v1", "secrets", "ns", "../../x"), "/api/v1/namespaces/ns/secrets/..%2F..%2Fx"),
    ],
)
def test_object_paths(args, path):
    assert object_path(*args) == path


def test_children_are_deployments_and_services_only():
    assert (
        _child_path("Deployment", "a", "m-canary")
        == "/apis/apps/v1/namespaces/a/deployments/m-canary"
    )
    assert _child_path("Service", "a") == "/api/v1/namespaces/a/services"
    with pytest.raises(ValueError, match="not ConfigMap"):
        _child_path("ConfigMap", "a", "x")
