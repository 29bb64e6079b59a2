"""The chart as `helm template` renders it (the cached helm binary; no cluster needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "aigate"


def render_chart(
    bin_dir: Path,
    *sets: str,
    release: str = "aigate",
    namespace: str = "aigate-system",
) -> list[dict]:
    """Every document `helm template` prints, with `--set` for each of `sets`."""
    result = subprocess.run(
        [str(bin_dir / "helm"), "template", release, str(CHART), "-n", namespace]
        + [arg for s in sets for arg in ("--set", s)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def bare_deployment(
    name: str, labels: dict[str, str], owner: dict | None = None, image: str = "model:1"
) -> dict:
    """A Deployment made by hand (not by aigate) carrying `labels` everywhere, with no
    replicas (nothing to schedule) and, if given, an ownerReference."""
    metadata: dict = {"name": name, "labels": labels}
    if owner:
        metadata["ownerReferences"] = [owner]
    return {
        "metadata": metadata,
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "server", "image": image}]},
            },
        },
    }
