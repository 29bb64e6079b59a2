"""The real kstatus library (what Flux's `wait: true` and health checks use), through the
small checker hack/build-control-plane.sh builds from hack/tools/kstatus."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def compute(bin_dir: Path, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """kstatus's verdict for each object: {"name", "generation", "status", "message"}."""
    result = subprocess.run(
        [str(bin_dir / "kstatus")],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    computed = json.loads(result.stdout)
    assert len(computed) == len(objects)
    return computed
