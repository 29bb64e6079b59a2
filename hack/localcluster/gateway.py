"""The Gateway API CRDs (standard channel) and the Inference Extension's InferencePool CRD,
taken from the Go modules that publish them (sigs.k8s.io/gateway-api and
sigs.k8s.io/gateway-api-inference-extension at the versions pinned in hack/versions.env),
downloaded once through the Go module proxy into ~/.cache/aigate/gomod and never again.
No controller runs: the tests read the weights back from the HTTPRoute."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import zipfile
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


def module_dir(module: str, version: str, sum_h1: str) -> Path:
    """The module's source directory in the cache, downloaded if it is not there yet.

    The zip is fetched from the Go module proxy (`go env GOPROXY`) and checked against its
    pinned go.sum hash (h1, Go's dirhash), not with `go mod download`: that refuses a module
    whose go.mod asks for a newer Go than the one installed (gateway-api v1.7.0 asks for
    1.27), and switching toolchains would fetch 340 MB of Go for a few YAML files."""
    cached = MODULE_CACHE / f"{module}@{version}"
    if cached.is_dir():
        return cached
    print(f"[localcluster] downloading {module}@{version} (Go module proxy)", file=sys.stderr)
    url = f"{_go_proxy()}/{_escape(module)}/@v/{version}.zip"
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
    archive = zipfile.ZipFile(io.BytesIO(data))
    found = _dirhash_h1(archive)
    if found != sum_h1:
        raise RuntimeError(f"{url}: go.sum hash {found}, expected {sum_h1} (hack/versions.env)")
    prefix = f"{module}@{version}/"
    partial = cached.with_name(cached.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for info in archive.infolist():
        if not info.filename.startswith(prefix) or ".." in Path(info.filename).parts:
            raise RuntimeError(f"{url}: unexpected file {info.filename!r} in the module zip")
        target = partial / info.filename[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(archive.read(info))
    partial.rename(cached)
    return cached


def _go_proxy() -> str:
    """The first proxy `go env GOPROXY` names (GOPROXY from the environment wins)."""
    setting = (
        os.environ.get("GOPROXY")
        or subprocess.run(
            ["go", "env", "GOPROXY"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    for entry in re.split(r"[,|]", setting):
        if entry and entry not in ("direct", "off"):
            return entry.rstrip("/")
    raise RuntimeError(f"GOPROXY={setting!r} names no module proxy")


def _escape(module: str) -> str:
    """The proxy protocol's case encoding: an upper-case letter becomes '!' + lower case."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), module)


def _dirhash_h1(archive: zipfile.ZipFile) -> str:
    """Go's dirhash.Hash1 of a module zip, as go.sum records it."""
    names = sorted(info.filename for info in archive.infolist() if not info.is_dir())
    summary = "".join(f"{hashlib.sha256(archive.read(n)).hexdigest()}  {n}\n" for n in names)
    return "h1:" + base64.b64encode(hashlib.sha256(summary.encode()).digest()).decode()


def crd_files() -> list[Path]:
    """Every CustomResourceDefinition of the standard channel, and the InferencePool CRD."""
    versions = pinned_versions()
    gateway = module_dir(
        GATEWAY_MODULE, versions["GATEWAY_API_VERSION"], versions["GATEWAY_API_SUM"]
    )
    inference = module_dir(
        INFERENCE_MODULE,
        versions["INFERENCE_EXTENSION_VERSION"],
        versions["INFERENCE_EXTENSION_SUM"],
    )
    standard = sorted((gateway / "config" / "crd" / "standard").glob("*.yaml"))
    files = [f for f in standard if _is_crd(f)]
    return [*files, inference / INFERENCE_POOL_CRD]


def _is_crd(path: Path) -> bool:
    return any(
        isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
        for doc in yaml.safe_load_all(path.read_text())
    )
