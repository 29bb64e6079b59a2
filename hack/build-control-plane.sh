#!/usr/bin/env bash
# Builds (once) the binaries of the local control plane used by tests, demo and benchmarks:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok, from Go
# modules through the Go module proxy (and helm for the chart tests, kstatus for the Flux
# health tests), plus Prometheus and promtool extracted from Debian's package.
# Everything lands in a cache outside the repository, keyed by version, and is never rebuilt
# once present. Prints the cache's bin directory on the last line of stdout.
# Progress (which binary, how long, the total) goes to stderr; the Go tool's own output
# ("go: downloading ..." and compiler messages) goes to $CACHE/build.log, whose tail is
# printed if a build fails.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/versions.env"

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/aigate"
CACHE="$CACHE_ROOT/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
BIN="$CACHE/bin"
mkdir -p "$BIN"
BUILD_LOG="$CACHE/build.log"
BUILT=0

START=$SECONDS
log() { printf '[build %4ds] %s\n' "$((SECONDS - START))" "$*" >&2; }
# AIGATE_BUILD_QUIET=1 (set by the harness, which runs this before every start) silences
# the lines that only say "already cached"; building always shows its progress.
quiet_log() { [[ -n "${AIGATE_BUILD_QUIET:-}" ]] || log "$@"; }

# Builds one binary unless it is already cached. The binary is written to a temporary name
# and renamed, so an interrupted build never leaves a half-written file that looks cached.
build() {
  local name="$1" module_dir="$2" package="$3" ldflags="$4"
  if [[ -x "$BIN/$name" ]]; then
    quiet_log "$name: cached"
    return
  fi
  local t0=$SECONDS
  if [[ $BUILT -eq 0 ]]; then
    log "building what is not cached (everything, cold: about 10 min on 2 cores); Go's output: $BUILD_LOG"
  fi
  log "$name: building $package"
  echo "=== $(date -u +%FT%TZ) $name: go build $package" >> "$BUILD_LOG"
  if ! (cd "$HERE/tools/$module_dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" \
      -o "$BIN/.$name.partial" "$package") >> "$BUILD_LOG" 2>&1; then
    log "$name: build FAILED after $((SECONDS - t0))s; last lines of $BUILD_LOG:"
    tail -n 30 "$BUILD_LOG" >&2
    exit 1
  fi
  mv "$BIN/.$name.partial" "$BIN/$name"
  BUILT=$((BUILT + 1))
  log "$name: built in $((SECONDS - t0))s"
}

# A binary stamped with the version it was built from (helm, kstatus): a changed version in
# versions.env rebuilds that binary alone.
unless_version() {
  local name="$1" version="$2"
  if [[ "$(cat "$BIN/$name.version" 2>/dev/null)" != "$version" ]]; then
    rm -f "$BIN/$name"
  fi
}

# Without these the Kubernetes binaries report v0.0.0-master and kubectl warns about skew.
KUBE_MINOR="${KUBERNETES_VERSION#v1.}"; KUBE_MINOR="${KUBE_MINOR%%.*}"
KUBE_LDFLAGS="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  KUBE_LDFLAGS="$KUBE_LDFLAGS -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1"
  KUBE_LDFLAGS="$KUBE_LDFLAGS -X $p.gitMinor=$KUBE_MINOR -X $p.gitTreeState=clean"
done

build etcd etcd go.etcd.io/etcd/server/v3 "-s -w"
build kwok kwok sigs.k8s.io/kwok/cmd/kwok "-s -w"
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  build "$cmd" kubernetes "k8s.io/kubernetes/cmd/$cmd" "$KUBE_LDFLAGS"
done

# helm, to render the chart in tests. Its version is stamped next to it, so changing
# HELM_VERSION rebuilds helm alone.
unless_version helm "$HELM_VERSION"
build helm helm helm.sh/helm/v4/cmd/helm \
  "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
echo "$HELM_VERSION" > "$BIN/helm.version"

# kstatus: the libraries Flux's health checks use (kstatus, and Flux's CEL evaluator for
# healthCheckExprs) in a tiny command (hack/tools/kstatus/main.go), so tests measure Flux's
# verdict on live objects. Keyed by the version and the module's own sources.
KSTATUS_STAMP="$KSTATUS_VERSION-$(cat "$HERE/tools/kstatus/go.sum" "$HERE/tools/kstatus/main.go" | sha256sum | cut -c1-12)"
unless_version kstatus "$KSTATUS_STAMP"
build kstatus kstatus local/aigate-kstatus-tools "-s -w"
echo "$KSTATUS_STAMP" > "$BIN/kstatus.version"

# kwok refuses to start without Stages; keep the stage files next to the binary, so the
# harness needs nothing from the Go module cache at run time.
STAGES="$CACHE/kwok-stages"
if [[ ! -d "$STAGES" ]]; then
  KWOK_DIR="$(cd "$HERE/tools/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok 2>>"$BUILD_LOG")"
  mkdir -p "$STAGES.partial"
  cp "$KWOK_DIR/kustomize/stage/node/fast/node-initialize.yaml" \
     "$KWOK_DIR/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
     "$KWOK_DIR/kustomize/stage/pod/fast/pod-ready.yaml" \
     "$KWOK_DIR/kustomize/stage/pod/fast/pod-complete.yaml" \
     "$KWOK_DIR/kustomize/stage/pod/fast/pod-delete.yaml" "$STAGES.partial/"
  chmod -R u+w "$STAGES.partial"
  mv "$STAGES.partial" "$STAGES"
  log "kwok stages: copied"
fi

# Prometheus and promtool (alert rule tests) from Debian's package, extracted rather than
# installed: installing it starts a system daemon on :9090, which the harness does not want.
if [[ ! -x "$BIN/prometheus" || ! -x "$BIN/promtool" ]]; then
  if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    ln -sf "$(command -v prometheus)" "$BIN/prometheus"
    ln -sf "$(command -v promtool)" "$BIN/promtool"
  else
    log "prometheus, promtool: extracting Debian's package"
    TMP="$(mktemp -d)"
    (cd "$TMP" && apt-get download prometheus >>"$BUILD_LOG" 2>&1 \
      || { apt-get update >>"$BUILD_LOG" 2>&1 && apt-get download prometheus >>"$BUILD_LOG" 2>&1; }) \
      || { log "apt-get download prometheus FAILED; last lines of $BUILD_LOG:"; tail -n 20 "$BUILD_LOG" >&2; exit 1; }
    dpkg -x "$TMP"/prometheus_*.deb "$TMP/root"
    for tool in prometheus promtool; do
      cp "$TMP/root/usr/bin/$tool" "$BIN/.$tool.partial"
      mv "$BIN/.$tool.partial" "$BIN/$tool"
    done
    rm -rf "$TMP"
  fi
  log "prometheus, promtool: ready"
fi

if [[ $BUILT -gt 0 ]]; then
  log "built $BUILT binaries in $((SECONDS - START))s total (Go's output: $BUILD_LOG)"
fi
quiet_log "all binaries ready in $BIN ($(du -sh "$CACHE" | cut -f1))"
echo "$BIN"
