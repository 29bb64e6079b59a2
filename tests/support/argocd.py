"""Runs aigate's Argo CD health script in a real Lua 5.1 runtime (lupa), as Argo CD's
gopher-lua would: the object as the global `obj`, the script's return value the health."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lupa import lua51

ROOT = Path(__file__).resolve().parents[2]
CUSTOMIZATION = (
    ROOT / "integrations" / "argocd" / "resource_customizations" / "aigate.dev" / "AIDeployment"
)
HEALTH_LUA = CUSTOMIZATION / "health.lua"

# The contract (docs/argocd.md): phase -> Argo CD health once the generation is observed.
PHASE_HEALTH = {
    "Pending": "Progressing",
    "AwaitingApproval": "Suspended",
    "Deploying": "Progressing",
    "Progressing": "Progressing",
    "Paused": "Suspended",
    "Promoting": "Progressing",
    "Verifying": "Progressing",
    "Stable": "Healthy",
    "RollingBack": "Degraded",
    "RolledBack": "Degraded",
    "Failed": "Degraded",
}


@dataclass(frozen=True)
class Health:
    status: str
    message: str


def evaluate(obj: dict[str, Any], script: str | None = None) -> Health:
    """Health of one object. A fresh runtime per call: no state leaks between objects."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    # The real Lua 5.1 interpreter: the script must not rely on 5.2+ features.
    assert runtime.lua_implementation.startswith("Lua 5.1"), runtime.lua_implementation
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(script if script is not None else HEALTH_LUA.read_text())
    return Health(status=str(result["status"]), message=str(result["message"] or ""))


def expected_message(obj: dict[str, Any]) -> str:
    """The contract's message: Stalled's if True, else Reconciling's if True, else Ready's."""
    conditions = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
    for type_ in ("Stalled", "Reconciling"):
        condition = conditions.get(type_)
        if condition and condition.get("status") == "True" and condition.get("message"):
            return str(condition["message"])
    return str((conditions.get("Ready") or {}).get("message", ""))


def generation_observed(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return status.get("observedGeneration") == obj["metadata"].get("generation")


def load_tests() -> list[dict[str, Any]]:
    return yaml.safe_load((CUSTOMIZATION / "health_test.yaml").read_text())["tests"]
