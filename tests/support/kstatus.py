"""What Flux concludes about objects, through the checker hack/build-control-plane.sh
builds from hack/tools/kstatus: the kstatus library (`wait: true` without custom checks)
and Flux's own CEL evaluator for a Kustomization's `healthCheckExprs`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
FLUX = ROOT / "integrations" / "flux"
# The committed Kustomization examples, by the name tests and docs give their variant.
KUSTOMIZATIONS = {
    "accepted": FLUX / "kustomization-accepted.yaml",
    "complete": FLUX / "kustomization-rollout-complete.yaml",
}


def health_check_exprs(path: Path) -> dict[str, str]:
    """The AIDeployment entry of a Kustomization's healthCheckExprs."""
    (entry,) = [
        e
        for e in yaml.safe_load(path.read_text())["spec"]["healthCheckExprs"]
        if e["apiVersion"] == "aigate.dev/v1alpha1" and e["kind"] == "AIDeployment"
    ]
    return {k: v for k, v in entry.items() if k in ("current", "inProgress", "failed")}


def compute(
    bin_dir: Path, objects: list[dict[str, Any]], exprs: dict[str, dict[str, str]] | None = None
) -> list[dict[str, Any]]:
    """Per object: {"name", "generation", "status", "message"} from kstatus and, when
    `exprs` names expression sets, "exprs": {name: Flux's status or "Error: ..."}."""
    argv = [str(bin_dir / "kstatus")]
    if exprs:
        argv += ["-exprs", json.dumps(exprs)]
    result = subprocess.run(
        argv, input=json.dumps(objects), capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    computed = json.loads(result.stdout)
    assert len(computed) == len(objects)
    return computed
