"""Plain JSON requests to the API server by path, on the official client's ApiClient (its
credentials, TLS, connection pool and request counting).

The operator reads and writes its children, Secrets and ConfigMaps as raw JSON anyway. The
typed CoreV1Api and AppsV1Api of kubernetes>=35 build a pydantic validator for each of
their hundreds of methods on first use: about 24 MB the operator would hold for its whole
life to make a handful of calls (docs/decisions/0017-watch-fed-reconciles.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from kubernetes import client
from kubernetes.client.rest import ApiException


def object_path(
    api_version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
) -> str:
    """`/api/v1/namespaces/ns/services/x`, `/apis/apps/v1/namespaces/ns/deployments/x`."""
    parts = ["api" if "/" not in api_version else "apis", *api_version.split("/")]
    if namespace is not None:
        parts += ["namespaces", namespace]
    parts.append(plural)
    if name is not None:
        parts.append(name)
    # Every segment escaped whole, as the typed clients do: a name from a spec ("../x",
    # "a/b") stays one segment and never reaches another path.
    return "/" + "/".join(quote(part, safe="") for part in parts)


class Objects:
    """GET, POST, PUT, PATCH and DELETE of API objects as JSON; errors are the client's
    ApiException (status, reason, body), as the typed APIs raise them."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(*request)
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return json.loads(response.data or b"{}")

    def get(self, path: str) -> dict[str, Any]:
        return self.request("GET", path)
