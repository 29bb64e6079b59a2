"""The Gateway API CRDs (standard channel) and the Inference Extension's InferencePool CRD,
taken from the Go modules that publish them (sigs.k8s.io/gateway-api and
sigs.k8s.io/gateway-api-inference-extension at the versions pinned in hack/versions.env),
downloaded once through the Go module proxy into ~/.cache/aigate/gomod and never again.
No controller runs: the tests read the weights back from the HTTPRoute."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS = REPO_ROOT / "hack" / "versions.env"
MODULE_CACHE = Path(
    os.environ.get("AIGATE_GOMODCACHE", Path.home() / ".cache" / "aigate" / "gomod")
)

GATEWAY_MODULE = "sigs.k8s.io/gateway-api"
INFERENCE_MODULE = "sigs.k8s.io/gateway-api-inference-extension"
INFERENCE_POOL_CRD = "config/crd/bases/inference.networking.k8s.io_inferencepools.yaml"


def pinned_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for line in VERSIONS.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


def module_dir(module: str, version: str) -> Path:
    """The module's source directory in the cache, downloaded if it is not there yet."""
    cached = MODULE_CACHE / f"{module}@{version}"
    if cached.is_dir():
        return cached
    MODULE_CACHE.mkdir(parents=True, exist_ok=True)
    print(f"[localcluster] downloading {module}@{version} (Go module proxy)", file=sys.stderr)
    env = {**os.environ, "GOMODCACHE": str(MODULE_CACHE), "GOFLAGS": "-modcacherw"}
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        cwd=MODULE_CACHE,
        env=env,
        capture_output=True,
        text=True,
        check=False,  # the error is in the JSON (or stderr), reported below
    )
    info = json.loads(result.stdout or "{}")
    if result.returncode != 0 or "Dir" not in info:
        raise RuntimeError(
            f"go mod download {module}@{version} failed: {info.get('Error') or result.stderr}"
            f" (GOPROXY={env.get('GOPROXY', '')!r}, GOFLAGS={env['GOFLAGS']!r})"
        )
    return Path(info["Dir"])


def crd_files() -> list[Path]:
    """Every CustomResourceDefinition of the standard channel, and the InferencePool CRD."""
    versions = pinned_versions()
    gateway = module_dir(GATEWAY_MODULE, versions["GATEWAY_API_VERSION"])
    inference = module_dir(INFERENCE_MODULE, versions["INFERENCE_EXTENSION_VERSION"])
    standard = sorted((gateway / "config" / "crd" / "standard").glob("*.yaml"))
    files = [f for f in standard if _is_crd(f)]
    return [*files, inference / INFERENCE_POOL_CRD]


def _is_crd(path: Path) -> bool:
    return any(
        isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
        for doc in yaml.safe_load_all(path.read_text())
    )
