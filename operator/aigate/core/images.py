"""Images of a high-risk model must be pinned by digest (pure).

A tag (`:2.4.0`) can be moved to other bytes after the approval; a digest cannot. For
`riskTier: high` every container and init container image names `@sha256:<64 hex>`, unless
the platform turns the rule off (`aigate run --allow-unpinned-images`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PINNED = re.compile(r"@sha256:[0-9a-f]{64}$")
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def unpinned_images(risk_tier: str, template: Mapping[str, Any]) -> list[str]:
    """One message per container whose image is not pinned, naming the field, the
    container and the image; empty when the rule does not apply or every image is pinned."""
    if risk_tier != "high":
        return []
    pod = template.get("spec") or {}
    problems = []
    for field in CONTAINER_LISTS:
        for index, container in enumerate(pod.get(field) or []):
            image = str((container or {}).get("image", ""))
            if not PINNED.search(image):
                problems.append(
                    f"spec.template.spec.{field}[{index}] (container "
                    f"{(container or {}).get('name', '?')!r}): image {image!r} is not pinned; "
                    f"riskTier high requires <image>@sha256:<64 hex digits>"
                )
    return problems
