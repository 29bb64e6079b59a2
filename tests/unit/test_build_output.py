"""hack/build-control-plane.sh's output contract, with a stand-in `go` on PATH (no real
build): progress names each binary with its time and a total, Go's own chatter goes to the
log in the cache, and a failed build prints the log's tail and fails."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "build-control-plane.sh"
STAGES = [
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
]

FAKE_GO = """#!/usr/bin/env bash
# Stands in for the Go tool: chatters like a cold module cache, writes the -o file.
if [[ "$1" == list ]]; then echo "go: downloading sigs.k8s.io/kwok v0.8.0" >&2; echo "$FAKE_KWOK_DIR"; exit 0; fi
out=""; pkg="${@: -1}"
while [[ $# -gt 0 ]]; do [[ "$1" == -o ]] && out="$2"; shift; done
for i in $(seq 1 50); do echo "go: downloading example.com/module$i v1.0.$i" >&2; done
if [[ -n "${FAKE_GO_FAIL:-}" && "$pkg" == *"$FAKE_GO_FAIL"* ]]; then
  echo "$pkg: undefined: somethingImportant" >&2; exit 1
fi
printf '#!/bin/sh\\n' > "$out"; chmod +x "$out"
"""


def run_build(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir(exist_ok=True)
    (fake_bin / "go").write_text(FAKE_GO)
    for tool in ("go", "prometheus", "promtool"):
        path = fake_bin / tool
        if tool != "go":
            path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    kwok = tmp_path / "kwok-module"
    for stage in STAGES:
        (kwok / stage).parent.mkdir(parents=True, exist_ok=True)
        (kwok / stage).write_text("kind: Stage\n")
    return subprocess.run(
        ["bash", str(SCRIPT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={
            **os.environ,
            "PATH": f"{fake_bin}:{os.environ['PATH']}",
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "FAKE_KWOK_DIR": str(kwok),
            **env,
        },
    )


def test_progress_shows_binary_time_and_total_and_no_go_chatter(tmp_path):
    result = run_build(tmp_path)
    assert result.returncode == 0, result.stderr
    progress = result.stderr
    for binary in ("etcd", "kwok", "kube-apiserver", "kubectl", "helm", "kstatus"):
        assert f"] {binary}: building" in progress
        assert f"] {binary}: built in " in progress
    assert "built 8 binaries in " in progress and "s total" in progress
    assert "go: downloading" not in progress + result.stdout
    (log,) = (tmp_path / "cache" / "aigate").glob("*/build.log")
    assert str(log) in progress  # the user is told where Go's output went
    assert log.read_text().count("go: downloading") >= 8 * 50
    assert result.stdout.strip().endswith("/bin")

    again = run_build(tmp_path)  # everything cached: nothing built, no total
    assert again.returncode == 0
    assert "building" not in again.stderr and "binaries in" not in again.stderr


def test_a_failed_build_prints_the_logs_tail_and_fails(tmp_path):
    result = run_build(tmp_path, FAKE_GO_FAIL="kube-apiserver")
    assert result.returncode != 0
    assert "kube-apiserver: build FAILED" in result.stderr
    assert "undefined: somethingImportant" in result.stderr  # the tail of the log
    (bin_dir,) = (tmp_path / "cache" / "aigate").glob("*/bin")
    assert not (bin_dir / "kube-apiserver").exists()  # nothing half-built looks cached
